"""One trial: the base params with the trial's values, a short training through
`pipeline.training.train` (the DVC stages' code path) on train, selected on val, with the
objective reported after every epoch. The test split is never read.

SupCon's objective is the kNN top-1 on val (`val/knn_top1`, every epoch); a trial that trains to
the end then fits a short linear probe on its frozen encoder and reports the probe's val top-1
as `val/probe_top1` with its last epoch. CE's objective is its val top-1 (`val/top1`).
"""

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Params, parse_params
from pipeline.config_schema import as_dict

OBJECTIVES = {"supcon": "val/knn_top1", "ce": "val/top1"}
PROBE_METRIC = "val/probe_top1"
PROBE_EPOCHS = 10
"""At most this many epochs of linear probe after a SupCon trial (on precomputed features: seconds)."""

Report = Callable[[int, dict[str, float]], None]
"""(epoch, metrics) -> None; may raise to stop the trial (a pruner's verdict)."""


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a sweep shares; plain values, so Ray can ship it to a worker."""

    params: Params
    """The validated base params (params.yaml)."""
    section: str
    """supcon or ce."""
    prepared: Path
    """Absolute path of the prepared store (Ray trials run in another working directory)."""
    epochs: int
    threads: int = 0
    """torch threads per trial (0: torch's default)."""
    train_fraction: float | None = None
    """Share of the labelled train split a trial trains on; None: params' data.train_fraction."""
    files_root: Path | None = None
    """Absolute data.root, where a file store's images are read (data.storage files)."""

    @property
    def objective(self) -> str:
        return OBJECTIVES[self.section]


def trial_params(base: Params, values: Mapping[str, Any], *, section: str, epochs: int) -> Params:
    """`base` with the trial's dotted `values` and the sweep's budget, validated as params.yaml is
    (a value outside a key's rule is a ConfigError naming the key)."""
    from pipeline.sweep.grid import config_of

    raw = as_dict(base)
    for key, value in config_of(values).items():
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[leaf] = value
    raw[section]["epochs"] = epochs
    if section == "supcon":
        raw["supcon"]["knn_every"] = 1  # the objective every epoch, for ASHA and the pruner
    return parse_params(raw)


def train_images(data: Any, params: Params, fraction: float | None) -> Any:
    """The trial's train split: sweep.train_fraction of the labelled images (a nested stratified
    subset, pipeline/reduced.py), or the stages' data.train_fraction."""
    if fraction is None:
        return data.subset(params.data.train_fraction)
    from pipeline.reduced import labelled_subset

    return labelled_subset(data, fraction, params.run.seed, key="sweep.train_fraction")


def run_trial(setup: TrialSetup, values: Mapping[str, Any], report: Report) -> dict[str, float]:
    """Train one trial; `report(epoch, metrics)` after every epoch (the last one after the probe).
    Returns the last epoch's metrics."""
    import torch

    from pipeline.data import load_prepared
    from pipeline.device import resolve_device
    from pipeline.run_context import RunContext
    from pipeline.training import train

    params = trial_params(setup.params, values, section=setup.section, epochs=setup.epochs)
    if setup.threads:
        torch.set_num_threads(setup.threads)
    data = load_prepared(setup.prepared, files_root=setup.files_root, workers=params.data.loader_workers)
    train_split = train_images(data, params, setup.train_fraction)
    device = resolve_device(params.run.device)
    last: dict[str, float] = {}

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        if epoch < setup.epochs or setup.section != "supcon":
            report(epoch, metrics)
        else:
            last.update(metrics)  # reported once the probe has run

    from pipeline.sweep.grid import replicate_of

    # the training seed of the stages' first run (run.seed is the data seed); a grid sweep's
    # replicate r of a configuration trains with the r-th seed after it
    seed = params.run.seeds[0] + replicate_of(values)
    run = RunContext(seed=seed, device=device, on_epoch=on_epoch)
    trained = train(setup.section, data, train_split, config=getattr(params, setup.section), run=run, model_config=params.model)
    final = dict(trained.history[-1])
    final.pop("epoch", None)
    if setup.section == "supcon":
        probe = dataclasses.replace(params.linear, epochs=min(params.linear.epochs, PROBE_EPOCHS))
        probe_run = RunContext(seed=seed, device=device)
        history = train("linear", data, train_split, config=probe, run=probe_run, encoder=trained.model.encoder).history
        last[PROBE_METRIC] = max(row["val/top1"] for row in history)  # the probe's best val epoch, as linear_eval selects
        report(setup.epochs, last)
        final = last
    return final
