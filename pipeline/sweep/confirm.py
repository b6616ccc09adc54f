"""`python -m pipeline.sweep --space temperature --confirm K`: settle "temperature 0.1 is best".

A temperature sweep ranks temperatures after a few epochs on one training seed (kNN top-1 on
val), and ASHA stops some trials early: it can rank, not settle the paper's claim. The
confirmation retrains the top K temperatures other than 0.1 among the sweep's FINISHED trials
(a trial stopped early trained fewer epochs, so it never ranks here; it is listed under
`stopped`), and the paper's 0.1, once per training seed of run.seeds (3 or more: the
report compares temperatures with a paired t-interval over seeds), at full length
(confirm_train.py: the stages' SupCon, then their linear probe), and scores each run by the
probe's best val top-1. The test split is never read: judging on test would select on test.
At params.yaml's own temperature the main comparison's runs (pretrain_supcon@<seed>,
linear_eval@<seed>) are taken instead of retrained when DVC says they are up to date
(confirm_reuse.py): run the confirmation after `dvc repro` and it trains a third less.

Runs one after another in this process (no Ray). The result goes into the sweep's summary.json
(the report's input) under "confirmation", written atomically once every run has ended, so an
interrupted confirmation leaves the old summary whole; each ended run is kept in confirm.json
(confirm_ledger.py), so running `--confirm K` again continues instead of retraining. MLflow: one
parent run (tags sweep.space, confirm.k) with a child run per (temperature, seed).
"""

import json
import math
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from pipeline import atomic
from pipeline.config import Params
from pipeline.config_schema import as_dict
from pipeline.data import PreparedDataset, Split
from pipeline.errors import ConfigError, UserError
from pipeline.sweep import confirm_ledger
from pipeline.sweep.confirm_ledger import ConfirmLedger, RunRecord, temperature_key
from pipeline.sweep.confirm_reuse import main_stage_run  # at the top: every run's code key holds it (a key lists the modules imported so far)
from pipeline.sweep.ledger import FINISHED, STOPPED
from pipeline.sweep.mlflow_runs import SweepRuns
from pipeline.sweep.results import SUMMARY_FILE

PAPER_TEMPERATURE = 0.1
"""The claim under test (the paper's best temperature): always confirmed."""
SWEPT = "supcon.temperature"
MIN_SEEDS = 3
"""Training seeds the report's paired t-interval needs at the least."""
RUNS_DIR = "confirm"
"""<sweep>/confirm/T<T>/seed<seed>: the checkpoints of a run in progress, deleted once it is recorded."""
METRIC_IS = "the linear probe's best val top-1 (linear section) on the frozen encoder of a full-length SupCon run (supcon section)"
RESULT_METRIC = "val/top1_best"
"""The child run's result, named as linear_eval's metrics name it."""


@dataclass(frozen=True)
class ConfirmSpec:
    """Where the sweep is and where the confirmation logs; the CLI fills it (absolute paths)."""

    folder: Path
    """sweeps/temperature: the sweep's summary.json, and confirm.json beside it."""
    prepared: Path
    tracking_uri: str
    experiment: str
    k: int
    files_root: Path | None = None
    """Absolute data.root, where a file store's images are read (data.storage files)."""
    commit: str = "unknown"
    project: Path | None = None
    """The project folder (DVC, metrics/): its main-comparison runs of params' own temperature
    are taken when DVC says they are up to date (confirm_reuse.py); None: train every run."""

    @property
    def summary_path(self) -> Path:
        return self.folder / SUMMARY_FILE


@dataclass(frozen=True)
class Choice:
    ranked: list[dict]
    """The top K finished trials other than T = 0.1, best first: temperature, objective, trial."""
    temperatures: list[float]
    """What is confirmed: the ranked temperatures, then 0.1 when it is not among them."""
    stopped: list[float]
    """Temperatures of trials an early-stopping scheduler stopped (never ranked here)."""


@dataclass
class Confirmed:
    block: dict | None
    """The "confirmation" written into summary.json; None when interrupted before the end."""
    ledger: ConfirmLedger
    trained: list[tuple[float, int]] = field(default_factory=list)
    """(temperature, seed) runs this process trained (the others were reported again)."""

    @property
    def interrupted(self) -> bool:
        return self.block is None


def check_params(params: Params) -> None:
    """What a confirmation needs of params.yaml, before anything is read or trained."""
    seeds = list(params.run.seeds)
    if len(seeds) < MIN_SEEDS:
        raise ConfigError("run.seeds", seeds, f"at least {MIN_SEEDS} training seeds for --confirm (the report compares temperatures with a paired t-interval over seeds)")
    if params.data.val_fraction <= 0:
        raise ConfigError("data.val_fraction", params.data.val_fraction, "> 0 for --confirm: it selects a temperature on val, and judging on test would select on test")


def read_sweep(path: Path) -> dict:
    """The finished temperature sweep's summary.json (every sample ended with a result)."""
    run_first = "run the sweep first: python -m pipeline.sweep --space temperature"
    if not path.is_file():
        raise UserError(f"{path}: no sweep results to confirm; {run_first}")
    try:
        summary = json.loads(path.read_text())
        ended = sum(trial["state"] in (FINISHED, STOPPED) for trial in summary["trials"])
        samples = int(summary["settings"]["num_samples"])
    except (json.JSONDecodeError, TypeError, KeyError, ValueError) as err:
        raise UserError(f"{path}: not a sweep summary this code reads ({err}); {run_first}") from None
    if (summary.get("space"), summary.get("method")) != ("temperature", "supcon"):
        raise UserError(f"{path}: holds a {summary.get('space')} sweep of {summary.get('method')}, not the SupCon temperature sweep; {run_first}")
    if ended < samples:
        raise UserError(f"{path}: the sweep is unfinished ({ended} of {samples} trials ended); finish it first: python -m pipeline.sweep --space temperature --resume")
    return summary


def choose(summary: dict, k: int, *, where: Path) -> Choice:
    """The top `k` distinct temperatures other than 0.1 among the finished trials, by objective
    (ties: the earlier trial), then 0.1: k challengers of the paper's value. When 0.1 itself
    ranked first (the sweep tries params' 0.1 first), "the top k plus 0.1" would confirm 0.1
    against nothing at k = 1."""
    trials = summary["trials"]
    finished = sorted((t for t in trials if t["state"] == FINISHED), key=lambda t: (-t["objective"], t.get("trial", 0)))
    stopped = sorted({float(t["params"][SWEPT]) for t in trials if t["state"] == STOPPED})
    if not finished:
        raise UserError(f"{where}: no trial of the sweep trained every epoch ({len(stopped)} stopped early), so there is no ranking to confirm; run the sweep again with more --samples")
    ranked: list[dict] = []
    for trial in finished:
        temperature = float(trial["params"][SWEPT])
        if len(ranked) < k and not _same(temperature, PAPER_TEMPERATURE) and not any(_same(temperature, r["temperature"]) for r in ranked):
            ranked.append({"temperature": temperature, "objective": trial["objective"], "trial": trial.get("trial")})
    return Choice(ranked, [r["temperature"] for r in ranked] + [PAPER_TEMPERATURE], stopped)


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9)


def run_confirmation(params: Params, spec: ConfirmSpec, *, echo: Callable[[str], None] = print) -> Confirmed:
    """Train every (temperature, seed) not yet in the ledger, then write the confirmation."""
    check_params(params)
    summary = read_sweep(spec.summary_path)
    choice = choose(summary, spec.k, where=spec.summary_path)
    ledger = confirm_ledger.load(spec.folder)
    session = _Session.open(params, spec, echo)
    echo(_announcement(choice, params, spec))
    runs = SweepRuns(spec.tracking_uri, spec.experiment)
    plan = {"k": spec.k, "temperatures": [temperature_key(t) for t in choice.temperatures], "seeds": list(params.run.seeds), "epochs": params.supcon.epochs}
    tags = {"stage": "sweep-confirm", "sweep.space": "temperature", "confirm.k": str(spec.k), "method": params.supcon.method, "dataset": params.data.dataset, "git_commit": spec.commit}
    resume_id = ledger.begin(plan)
    ledger.mlflow_run_id = runs.start_parent(f"{spec.folder.name}-confirm", tags=tags, params={"confirm": plan, **as_dict(params)}, resume_id=resume_id)
    if ledger.mlflow_run_id != resume_id:  # a new parent (or the old one is gone): it has no child runs yet
        ledger.logged = []
    ledger.save()
    outcome, status = Confirmed(None, ledger), "FAILED"
    try:
        records = {(t, seed): session.confirm(t, seed, ledger, runs, outcome) for t in choice.temperatures for seed in params.run.seeds}
        outcome.block = confirmation_block(choice, records, params, spec, val_images=len(session.data.val.labels), mlflow_run_id=ledger.mlflow_run_id)
        write_summary(spec.summary_path, outcome.block, chosen_from=summary["trials"])
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
    finally:
        best = best_mean(outcome.block) if outcome.block else None
        artifacts = [spec.summary_path, ledger.path] if outcome.block else [ledger.path]
        runs.finish(best={SWEPT: best[0]} if best else None, objective=best[1] if best else None, artifacts=artifacts, status=status)
    return outcome


@dataclass
class _Session:
    """What every run of one confirmation shares: params, data, device, the prepared data's digest."""

    params: Params
    spec: ConfirmSpec
    data: PreparedDataset
    train_split: Split
    device: torch.device
    digest: str
    echo: Callable[[str], None]

    @classmethod
    def open(cls, params: Params, spec: ConfirmSpec, echo: Callable[[str], None]) -> "_Session":
        from pipeline import methods, provenance
        from pipeline.data import load_prepared
        from stages import common

        data = load_prepared(spec.prepared, files_root=spec.files_root, workers=params.data.loader_workers)
        if len(data.val) == 0:
            raise UserError(f"{spec.prepared}: has no val split (prepared with data.val_fraction 0); --confirm selects on val: prepare one with data.val_fraction > 0")
        for section in ("supcon", "linear"):
            methods.method(section)  # imported before any run's key is taken, as a stage does: the key holds their code
        device = common.runtime(params)
        return cls(params, spec, data, data.subset(params.data.train_fraction), device, provenance.directory_digest(spec.prepared), echo)

    def confirm(self, temperature: float, seed: int, ledger: ConfirmLedger, runs: SweepRuns, outcome: Confirmed) -> RunRecord:
        """The run's record: from the ledger when its key still matches, else trained now."""
        from pipeline.sweep.confirm_train import result_key, with_temperature

        params = with_temperature(self.params, temperature)
        key = result_key(params, seed, self.digest)
        record = ledger.ended(temperature, seed, key)
        changed = ledger.outdated(temperature, seed, key)
        if changed:
            self.echo(f"T={temperature:.4g} seed {seed}: trained earlier with other {changed}; training again")
        if record is not None:
            if not ledger.has_child(temperature, seed):  # trained under another confirmation's parent run
                _log_kept(runs, temperature, seed, record)
                ledger.mark_logged(temperature, seed)
            self.echo(_line(temperature, seed, record) + " (trained earlier; not rerun)")
            return record
        reused = self._main_stage_record(temperature, seed, key, runs)
        if reused is not None:
            ledger.record(temperature, seed, reused)
            self.echo(_line(temperature, seed, reused) + f" (linear_eval@{seed}'s run: up to date in DVC, not trained twice)")
            return reused
        record = self._train(params, temperature, seed, key, runs)
        ledger.record(temperature, seed, record)
        self._remove_checkpoints(temperature, seed)
        outcome.trained.append((temperature, seed))
        self.echo(_line(temperature, seed, record))
        return record

    def _main_stage_record(self, temperature: float, seed: int, key: dict, runs: SweepRuns) -> RunRecord | None:
        """At params' own temperature, the main comparison's run of `seed` when DVC says it is up to date."""
        if not _same(temperature, self.params.supcon.temperature):
            return None
        found = main_stage_run(self.spec.project, seed)
        if found is None:
            return None
        record = RunRecord(key, found.val_top1, found.best_epoch, found.seconds, found.mlflow_run_id, _now())
        _log_kept(runs, temperature, seed, record)  # a child run tagged confirm.reused_from = linear_eval's run
        return record

    def _train(self, params: Params, temperature: float, seed: int, key: dict, runs: SweepRuns) -> RunRecord:
        from pipeline.engine import TrainingDiverged
        from pipeline.sweep.confirm_train import train_at_full_length

        run_id = runs.start_child(f"T{temperature_key(temperature)}-seed{seed}", {SWEPT: temperature, "seed": seed}, tags=_child_tags(temperature, seed))
        started = time.perf_counter()
        try:
            done = train_at_full_length(
                params, seed, data=self.data, train_split=self.train_split, device=self.device, folder=self._folder(temperature, seed),
                prepared_digest=self.digest, log_rows=lambda rows: runs.log_history(run_id, rows),
            )  # fmt: skip
        except TrainingDiverged as err:  # this temperature cannot train here: a result, not retried
            runs.end_trial(run_id, "failed", str(err))
            return RunRecord(key, None, None, time.perf_counter() - started, run_id, _now(), error=str(err))
        except KeyboardInterrupt:
            runs.end_trial(run_id, "interrupted")
            raise
        except BaseException as err:
            runs.end_trial(run_id, "failed", f"{type(err).__name__}: {err}")
            raise
        runs.log_epoch(run_id, 0, {RESULT_METRIC: done.val_top1, "best_epoch": done.best_epoch, "confirm/seconds": done.seconds})
        runs.end_trial(run_id, "finished")
        return RunRecord(key, done.val_top1, done.best_epoch, done.seconds, run_id, _now())

    def _folder(self, temperature: float, seed: int) -> Path:
        return self.spec.folder / RUNS_DIR / f"T{temperature_key(temperature)}" / f"seed{seed}"

    def _remove_checkpoints(self, temperature: float, seed: int) -> None:
        """A recorded run's checkpoints are not needed again (a full-size model's can be gigabytes),
        nor are the folders they leave empty."""
        folder = self._folder(temperature, seed)
        shutil.rmtree(folder, ignore_errors=True)
        for parent in (folder.parent, folder.parent.parent):
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()


def _child_tags(temperature: float, seed: int) -> dict[str, str]:
    return {"sweep.space": "temperature", "confirm.temperature": temperature_key(temperature), "confirm.seed": str(seed)}


def _log_kept(runs: SweepRuns, temperature: float, seed: int, record: RunRecord) -> None:
    """A child run under this confirmation's parent for a run trained under another one."""
    tags = {**_child_tags(temperature, seed), "confirm.reused_from": record.mlflow_run_id}
    run_id = runs.start_child(f"T{temperature_key(temperature)}-seed{seed}", {SWEPT: temperature, "seed": seed}, tags=tags)
    if record.error:
        runs.end_trial(run_id, "failed", record.error)
        return
    runs.log_epoch(run_id, 0, {RESULT_METRIC: record.val_top1, "best_epoch": record.best_epoch, "confirm/seconds": record.seconds})
    runs.end_trial(run_id, "finished")


def confirmation_block(choice: Choice, records: dict[tuple[float, int], RunRecord], params: Params, spec: ConfirmSpec, *, val_images: int, mlflow_run_id: str) -> dict:
    """summary.json's "confirmation": val_top1 <T> -> <seed> -> value (string keys, as JSON
    forces), the runs that diverged under `failed`, and what the numbers were measured on."""
    val_top1: dict[str, dict[str, float]] = {}
    failed: dict[str, dict[str, str]] = {}
    for (temperature, seed), record in records.items():
        if record.error:
            failed.setdefault(temperature_key(temperature), {})[str(seed)] = record.error
        else:
            val_top1.setdefault(temperature_key(temperature), {})[str(seed)] = record.val_top1
    return {
        "val_top1": val_top1,
        "failed": failed,
        "stopped": choice.stopped,
        "epochs": params.supcon.epochs,
        "linear_epochs": params.linear.epochs,
        "seeds": list(params.run.seeds),
        "chosen_from": _shown(spec.summary_path),
        "k": spec.k,
        "ranked": choice.ranked,
        "reference": PAPER_TEMPERATURE,
        "metric": METRIC_IS,
        "val_images": val_images,
        "mlflow_run_id": mlflow_run_id,
        "date": _now(),
        "commit": spec.commit,
    }


def write_summary(path: Path, block: dict, *, chosen_from: list[dict]) -> None:
    """summary.json with `block` under "confirmation", atomically (an interruption leaves the old
    file whole); refused when the sweep's trials changed since they were ranked."""
    current = json.loads(path.read_text()) if path.is_file() else {}
    if current.get("trials") != chosen_from:
        raise UserError(f"{path}: the sweep changed while confirming; run --confirm again (the ended runs are kept in {confirm_ledger.LEDGER_FILE})")
    atomic.write_json(path, {**current, "confirmation": block})


def best_mean(block: dict) -> tuple[float, float] | None:
    """(temperature, mean val top-1 over seeds) of the highest mean, or None when every run failed."""
    means = {float(t): statistics.fmean(by_seed.values()) for t, by_seed in block["val_top1"].items() if by_seed}
    return max(means.items(), key=lambda item: item[1]) if means else None


def table(block: dict) -> str:
    """Temperature -> mean val top-1 over seeds (sd, n, per seed), best mean first."""
    rows = []
    for key, by_seed in block["val_top1"].items():
        values = [by_seed[str(s)] for s in block["seeds"] if str(s) in by_seed]
        sd = statistics.stdev(values) if len(values) > 1 else math.nan
        note = "  (the paper's)" if _same(float(key), PAPER_TEMPERATURE) else ""
        rows.append((statistics.fmean(values), f"{float(key):>9.4g}  {statistics.fmean(values):.4f}  {sd:.4f}  {len(values)}  " + " ".join(f"{v:.4f}" for v in values) + note))
    lines = [f"mean val top-1 over seeds {block['seeds']} ({block['epochs']} SupCon epochs, {block['linear_epochs']} probe epochs):", "        T  mean    sd      n  per seed"]
    lines += [text for _, text in sorted(rows, key=lambda row: -row[0])]
    lines += [f"{float(t):>9.4g}  diverged with seed(s) {', '.join(seeds)}" for t, seeds in block["failed"].items()]
    return "\n".join(lines)


def _announcement(choice: Choice, params: Params, spec: ConfirmSpec) -> str:
    ranked = ", ".join(f"{r['temperature']:.4g} (objective {r['objective']:.4f})" for r in choice.ranked)
    short = f" (only {len(choice.ranked)} distinct finished)" if len(choice.ranked) < spec.k else ""
    extra = f", plus the paper's {PAPER_TEMPERATURE}" if choice.ranked else f"only the paper's {PAPER_TEMPERATURE} (no other temperature finished)"
    stopped = ", ".join(f"{t:.4g}" for t in choice.stopped) or "none"
    return (
        f"confirming the top {spec.k}{short} besides 0.1 of {_shown(spec.summary_path)}: {ranked}{extra}; stopped early (not ranked): {stopped}; "
        f"seeds {list(params.run.seeds)}, {params.supcon.epochs} SupCon + {params.linear.epochs} probe epochs each, one run at a time in this process"
    )


def _line(temperature: float, seed: int, record: RunRecord) -> str:
    result = f"diverged ({record.error.splitlines()[0]})" if record.error else f"val top-1 {record.val_top1:.4f}"
    return f"T={temperature:.4g} seed {seed}: {result}, {record.seconds:.1f} s"


def _shown(path: Path) -> str:
    """A path as the project names it: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
