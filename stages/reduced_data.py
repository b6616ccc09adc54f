"""Stage `reduced_data`: one cell of the fraction x method x seed matrix in dvc.yaml.

    python -m stages.reduced_data --fraction 0.01 --method supcon --seed 0

The cell trains on its labelled fraction of the train split only (pipeline/reduced.py): SupCon
pretraining and then its linear probe both see just that subset (the paper's reduced-data
setting); CE likewise. Every training run of a cell follows the budget rule in
`reduced.steps` / `reduced.min_epochs`; model selection is on the full val split (the best val
epoch, as in the main stages) and the full test split is scored once. Writes
models/reduced/<cell>/ and metrics/reduced/<cell>.json; one MLflow run per cell.

A fraction is of the balanced split: data.imbalance is the long_tail matrix's concern
(stages/long_tail.py, which trains its cells through `train_cell` here), not a reduced cell's.
"""

import argparse
import sys
from dataclasses import replace

from pipeline import dist, provenance, recipe
from pipeline.config import ImbalanceConfig, LinearConfig, Params, SupConConfig
from pipeline.data import PreparedDataset
from pipeline.reduced import budgeted, spent
from stages import common
from stages.cli import require_listed, run_stage

STAGE = "reduced_data"
BUDGET_KEYS = "reduced.steps and reduced.min_epochs"
"""Where a cell's epochs come from (the budget rule), for errors that name them."""


def run_cell(params: Params, requested: common.Cell) -> None:
    cell = _listed(params, requested)
    # Balanced: data.imbalance then neither keys a cell nor reruns it (dvc.yaml lists none of it).
    train_cell(replace(params, data=replace(params.data, imbalance=ImbalanceConfig())), cell, stage=STAGE)


def train_cell(params: Params, cell: common.MatrixCell, *, stage: str) -> None:
    """Train one matrix cell (a reduced-data or long-tailed one) on its train split, under the
    budget rule, and write its metrics; `stage` names its MLflow run."""
    # The process group first: the budget is per process, so it needs the real world size.
    common.runtime(params)
    data = common.load_data(params)
    num_items = len(cell.train_split(data, params).labels)
    if cell.method == "ce":
        _cross_entropy(params, cell, data, num_items, stage)
    else:
        _supcon_and_probe(params, cell, data, num_items, stage)


def _listed(params: Params, cell: common.Cell) -> common.Cell:
    """The cell as params.yaml lists it (dvc.yaml's matrix renders its values from there, and
    names its outputs with them): --fraction 1.0 for a listed 1 is the cell named with 1."""
    require_listed(("reduced.fractions", cell.fraction, params.reduced.fractions), ("reduced.methods", cell.method, params.reduced.methods), ("run.seeds", cell.seed, params.run.seeds))
    return replace(cell, fraction=next(f for f in params.reduced.fractions if f == cell.fraction))


def _budget(params: Params, section: str, num_items: int, *, at_least: int = 0, epochs_from: str = BUDGET_KEYS):
    """Section `section` under the budget rule on this world size (at least `at_least` epochs);
    a warm-up longer than the budgeted epochs is one line naming where they come from."""
    # Not reduced.fractions or run.seeds in the key: adding a fraction must not retrain other cells.
    config = budgeted(getattr(params, section), num_items=num_items, steps=params.reduced.steps, min_epochs=params.reduced.min_epochs, world_size=dist.world_size())
    config = replace(config, epochs=max(config.epochs, at_least))
    recipe.check_warmup(config.optimizer, epochs=config.epochs, section=section, epochs_from=f"the cell's budget: {epochs_from}")
    return config


def _cross_entropy(params: Params, cell: common.MatrixCell, data: PreparedDataset, num_items: int, stage: str) -> None:
    config = _budget(params, "ce", num_items)
    budget = {"budget": {"epochs": config.epochs, "batch_size": config.batch_size}}
    with common.training_stage(params, stage=stage, trains="ce", method="ce", model_dir="ce", sections=("data", "model", "ce"), epochs=config.epochs, seed=cell.seed, cell=cell, key=budget, data=data) as job:
        trained = job.train(config=config, model_config=params.model)
        if dist.is_main_process():
            done = spent(trained.history, batch_size=config.batch_size, world_size=dist.world_size())
            done["time_s"] = _training_seconds(trained.history)
            job.finish(_cell_fields(cell, done) | job.selected_epoch(), trained.history, test=job.score_test(trained.predictor, per_class=cell.per_class))


def _supcon_and_probe(params: Params, cell: common.MatrixCell, data: PreparedDataset, num_items: int, stage: str) -> None:
    pretrain = _budget(params, "supcon", num_items)
    # The probe is evaluation, not a method being compared: at least linear.epochs, as in linear_eval
    # (on precomputed features it costs seconds), and at least the budget rule's steps.
    probe = _budget(params, "linear", num_items, at_least=params.linear.epochs, epochs_from=f"{BUDGET_KEYS}, at least linear.epochs")
    supcon_and_probe(params, cell, data, stage, pretrain=pretrain, probe=probe)


def supcon_and_probe(params: Params, cell: common.MatrixCell, data: PreparedDataset, stage: str, *, pretrain: SupConConfig, probe: LinearConfig) -> None:
    """Pretrain `pretrain` (params' supcon section, as the cell trains it: that is what keys the
    run) on the cell's split, then its linear probe `probe`; score test once, write the metrics."""
    # No kNN monitor in cells: at 1% a cell runs many short epochs, and the monitor is not a result.
    pretrain = replace(pretrain, knn_every=0)
    sections = ("data", "model", "supcon")
    key = {"budget": {"epochs": pretrain.epochs, "batch_size": pretrain.batch_size}}
    with common.training_stage(params, stage=stage, trains="supcon", method=params.supcon.method, model_dir="supcon", sections=sections, epochs=pretrain.epochs, seed=cell.seed, cell=cell, key=key, data=data) as job:
        pretrained = job.train(config=pretrain, model_config=params.model)
        encoder_digest = provenance.file_digest(job.context.checkpoint_path) if job.context.checkpoint_path.exists() else ""
        probe_job = job.then("linear", model_dir="linear", sections=("data", "linear"), epochs=probe.epochs, inputs={"encoder": encoder_digest}, key={"budget": {"epochs": probe.epochs}})
        trained = probe_job.train(config=probe, encoder=pretrained.model.encoder)
        if dist.is_main_process():
            done = spent(pretrained.history, batch_size=pretrain.batch_size, world_size=dist.world_size(), views=params.supcon.views)
            probe_done = spent(trained.history, batch_size=probe.batch_size, world_size=dist.world_size())
            done |= {"probe_steps": probe_done["steps"], "probe_epochs": probe_done["epochs"], "probe_batch_size": probe.batch_size}
            # The metrics' train/time_s is the probe's (its history is the one finished); the cell's compute is both.
            pretrain_s, probe_s = _training_seconds(pretrained.history), _training_seconds(trained.history)
            done |= {"time_s": pretrain_s + probe_s, "pretrain_time_s": pretrain_s, "probe_time_s": probe_s}
            metrics = _cell_fields(cell, done) | {"method": params.supcon.method} | probe_job.selected_epoch()
            probe_job.finish(metrics, trained.history, test=probe_job.score_test(trained.predictor, per_class=cell.per_class))
            job.run.log_artifact(job.context.checkpoint_path, "checkpoint")


def _training_seconds(history: list[dict[str, float]]) -> float:
    """Seconds the run's epochs took (resumed epochs included: the history holds every epoch)."""
    return sum(row["train/epoch_time_s"] for row in history)


def _cell_fields(cell: common.MatrixCell, budget: dict) -> dict:
    return cell.fields | {"budget": budget}


def _parse(argv: list[str]) -> common.Cell:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # A number, matched by value to params.yaml's list, whose spelling names the cell (_listed).
    parser.add_argument("--fraction", type=float, required=True)
    parser.add_argument("--method", choices=["supcon", "ce"], required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args(argv)
    return common.Cell(fraction=args.fraction, method=args.method, seed=args.seed)


def main(argv: list[str] | None = None) -> None:
    cell = _parse(sys.argv[1:] if argv is None else argv)
    run_stage(lambda params: run_cell(params, cell))


if __name__ == "__main__":
    main()
