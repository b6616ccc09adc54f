"""What a sweep leaves in sweeps/<name>/: results.csv (one row per ended trial), summary.json (the
report stage's input: pipeline/report/inputs.py), and the best config as a `dvc exp run` line.

A trial's objective is the value it reported at its last epoch (a trial ASHA or the pruner
stopped early: at the epoch it was stopped). The best trial is the finished one with the highest
objective (stopped trials trained fewer epochs, so they are not compared with finished ones),
or the best stopped one when none finished; a configuration a grid sweep ran as several
replicates (grid.py) ranks by the mean of its replicates.
"""

import csv
import dataclasses
import io
from datetime import datetime, timezone
from pathlib import Path

import yaml

from pipeline import atomic
from pipeline.sweep.grid import config_of
from pipeline.sweep.ledger import FAILED, FINISHED, Ledger, TrialRecord

RESULTS_FILE, SUMMARY_FILE, FIGURE_FILE = "results.csv", "summary.json", "objective.png"
OBJECTIVE_IS = "the value at the trial's last reported epoch (stopped early: where it was stopped)"


def best_trial(trials: list[TrialRecord]) -> TrialRecord | None:
    """The best configuration's trial; for a configuration run as several replicates (a grid
    sweep), its first trial with the mean objective of its replicates and no replicate number."""
    scored = [t for t in trials if t.objective is not None and t.state != FAILED]
    finished = [t for t in scored if t.state == FINISHED]
    pool = finished or scored
    if not pool:
        return None
    groups: dict[str, list[TrialRecord]] = {}
    for trial in sorted(pool, key=lambda t: t.number):
        groups.setdefault(repr(sorted(config_of(trial.params).items())), []).append(trial)
    best = max(groups.values(), key=lambda group: (_mean(group), -group[0].number))
    if len(best) == 1:
        return best[0]
    return dataclasses.replace(best[0], params=config_of(best[0].params), objective=_mean(best))


def runs_of_best(trials: list[TrialRecord], best: TrialRecord) -> int:
    """How many trials the best objective averages (1 unless its configuration was replicated)."""
    scored = [t for t in trials if t.objective is not None and t.state == best.state]
    return sum(config_of(t.params) == config_of(best.params) for t in scored)


def _mean(group: list[TrialRecord]) -> float:
    return sum(t.objective for t in group) / len(group)


def results_csv(trials: list[TrialRecord]) -> str:
    keys = list(dict.fromkeys(k for t in trials for k in t.params))
    extra = sorted({k for t in trials for k in t.metrics if k.startswith("val/")})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    nodes = ["node"] if any(t.node for t in trials) else []
    writer.writerow(["trial", *keys, "state", "epochs", "objective", *extra, *nodes, "mlflow_run_id", "error"])
    for t in sorted(trials, key=lambda t: t.number):
        row = [t.number, *(t.params.get(k, "") for k in keys), t.state, t.epochs, "" if t.objective is None else t.objective]
        row += [t.metrics.get(k, "") for k in extra] + ([t.node] if nodes else [])
        writer.writerow([*row, t.mlflow_run_id, t.error.splitlines()[-1] if t.error else ""])
    return buffer.getvalue()


def summary(ledger: Ledger, *, commit: str, settings: dict) -> dict:
    """summary.json: trials with an objective (failed ones without any are under `failed`)."""
    best = best_trial(ledger.trials)
    ordered = sorted(ledger.trials, key=lambda t: t.number)
    return {
        "space": ledger.space,
        "method": ledger.method,
        "backend": ledger.backend,
        "mlflow_run_id": ledger.mlflow_run_id,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "objective": ledger.objective,
        "objective_is": OBJECTIVE_IS,
        "settings": settings,
        "trials": [
            {"params": t.params, "objective": t.objective, "state": t.state, "epochs": t.epochs, "trial": t.number, "node": t.node}
            for t in ordered if t.objective is not None
        ],
        "failed": [{"params": t.params, "trial": t.number, "error": t.error.splitlines()[-1] if t.error else ""} for t in ordered if t.objective is None],
        "best": {"params": best.params, "objective": best.objective, "trial": best.number, "runs": runs_of_best(ledger.trials, best)} if best else None,
    }  # fmt: skip


def dvc_line(params: dict) -> str:
    """`dvc exp run -S key=value ...`: the best config trained by the full pipeline."""
    shown = config_of(params).items()  # a replicate number is a seed choice, not a params key
    flags = " ".join(f"-S '{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}'" for key, value in shown)
    return f"dvc exp run {flags}"


def write(ledger: Ledger, *, commit: str, settings: dict) -> dict[str, Path]:
    """results.csv, summary.json and the figure, atomically; returns their paths by kind."""
    from pipeline.sweep.plot import objective_figure, save

    folder = ledger.folder
    written = {"results": folder / RESULTS_FILE, "summary": folder / SUMMARY_FILE}
    atomic.write_text(written["results"], results_csv(ledger.trials))
    atomic.write_json(written["summary"], summary(ledger, commit=commit, settings=settings))
    scored = [t for t in ledger.trials if t.objective is not None]
    if scored:
        written["figure"] = folder / FIGURE_FILE
        save(objective_figure(scored, objective=ledger.objective, title=f"sweep {folder.name}", best=best_trial(ledger.trials)), written["figure"])
    return written
