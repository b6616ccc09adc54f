"""One confirmation run: SupCon at full length with one temperature and one training seed, then
the linear probe on its frozen encoder, scored by the probe's best val top-1.

The same pieces as the DVC stages pretrain_supcon and linear_eval (stages/common.py): params'
supcon section (epochs, batch, optimizer; only supcon.temperature differs), then its linear
section, both through `pipeline.training.train`, on data.train_fraction of the train split, with
the stages' run keys, device placement and checkpoints, so an interrupted run resumes from its
last checkpoint. Model selection is linear_eval's: the probe epoch with the best val top-1 (its
BEST file). The test split is never read: the confirmation selects a temperature.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline import checkpoint, provenance
from pipeline.config import Params, parse_params
from pipeline.config_schema import as_dict
from pipeline.data import PreparedDataset, Split
from pipeline.errors import UserError
from pipeline.run_context import RunContext

LogRows = Callable[[list[dict[str, float]]], None]
"""Receives history rows (each with its epoch) to log: the pretraining's, then the probe's."""


@dataclass(frozen=True)
class FullRun:
    val_top1: float
    """The linear probe's best val top-1 (the epoch linear_eval would select)."""
    best_epoch: int
    seconds: float
    """Wall-clock seconds this process spent on the run (a resumed run counts only what it redid)."""


def with_temperature(base: Params, temperature: float) -> Params:
    """params.yaml with supcon.temperature = `temperature` and nothing else changed (validated)."""
    raw = as_dict(base)
    raw["supcon"]["temperature"] = temperature
    return parse_params(raw)


def pretrain_key(params: Params, seed: int, prepared_digest: str) -> dict:
    """The key pretrain_supcon gives its result: params' data, model and supcon sections, the
    training seed, the code imported so far and the prepared data."""
    from stages import common

    return common.run_config(params, "data", "model", "supcon", inputs={"prepared": prepared_digest}, seed=seed)


def result_key(params: Params, seed: int, prepared_digest: str) -> dict:
    """What decides a run's val top-1: the data, model, supcon and linear sections, the seed, the
    code imported so far and the prepared data (a finished run whose key still matches is
    reported again, not retrained)."""
    from stages import common

    return common.run_config(params, "data", "model", "supcon", "linear", inputs={"prepared": prepared_digest}, seed=seed)


def train_at_full_length(
    params: Params, seed: int, *, data: PreparedDataset, train_split: Split, device: torch.device, folder: Path, prepared_digest: str, log_rows: LogRows
) -> FullRun:
    """Pretrain and probe in `folder` (absolute: <folder>/supcon, <folder>/linear hold the checkpoints)."""
    from pipeline.training import train

    started = time.perf_counter()
    supcon_path = folder / "supcon" / checkpoint.LAST
    pretrain = _context(params, seed, device, supcon_path, pretrain_key(params, seed, prepared_digest), params.supcon.epochs, log_rows)
    pretrained = train("supcon", data, train_split, config=params.supcon, run=pretrain, model_config=params.model)
    probe_path = folder / "linear" / checkpoint.LAST
    probe_key = _probe_key(params, seed, prepared_digest, encoder=supcon_path)
    probe = _context(params, seed, device, probe_path, probe_key, params.linear.epochs, _prefixed(log_rows, "probe/"))
    train("linear", data, train_split, config=params.linear, run=probe, encoder=pretrained.model.encoder)
    best = checkpoint.best_so_far(probe_path.with_name(checkpoint.BEST))
    if best is None or best["val_top1"] is None:  # gone beside a finished last.pt (val is checked for before any run)
        best_path = probe_path.with_name(checkpoint.BEST)
        raise UserError(f"{best_path}: missing or unreadable, so the probe's selected epoch is unknown; delete {probe_path} too and rerun to train the probe again")
    return FullRun(val_top1=float(best["val_top1"]), best_epoch=int(best["epoch"]), seconds=time.perf_counter() - started)


def _probe_key(params: Params, seed: int, prepared_digest: str, *, encoder: Path) -> dict:
    """linear_eval's key: data and linear sections, the seed, and the encoder checkpoint's bytes."""
    from stages import common

    inputs = {"prepared": prepared_digest, "encoder": provenance.file_digest(encoder)}
    return common.run_config(params, "data", "linear", inputs=inputs, seed=seed)


def _context(params: Params, seed: int, device: torch.device, path: Path, key: dict, epochs: int, log_rows: LogRows) -> RunContext:
    """A stage's RunContext: resumes this run's own checkpoint (a finished one is not retrained)."""
    from stages import common

    return RunContext(
        seed=seed, device=device, checkpoint_path=path, config=key, resume=common.resume_state(path, key, epochs=epochs),
        log_epochs=log_rows, wrap=common.placer(params, device),
        checkpoint_every_steps=params.run.checkpoint_every_steps, checkpoint_every_minutes=params.run.checkpoint_every_minutes,
    )  # fmt: skip


def _prefixed(log_rows: LogRows, prefix: str) -> LogRows:
    """The probe's curves beside the pretraining's in one MLflow run, as a reduced-data cell logs them."""
    return lambda rows: log_rows([{key if key == "epoch" else prefix + key: value for key, value in row.items()} for row in rows])
