"""Stage `reduced_data`: one cell of the fraction x method x seed matrix in dvc.yaml.

    python -m stages.reduced_data --fraction 0.01 --method supcon --seed 0

The cell trains on its labelled fraction of the train split only (pipeline/reduced.py): SupCon
pretraining and then its linear probe both see just that subset (the paper's reduced-data
setting); CE likewise. Every training run of a cell follows the budget rule in
`reduced.steps` / `reduced.min_epochs`; model selection is on the full val split (the best val
epoch, as in the main stages) and the full test split is scored once. Writes
models/reduced/<cell>/ and metrics/reduced/<cell>.json; one MLflow run per cell.
"""

import argparse
import sys
from dataclasses import replace

from pipeline import dist, provenance
from pipeline.config import Params
from pipeline.errors import ConfigError
from pipeline.reduced import budgeted, images_seen, labelled_subset
from stages import common, paths
from stages.cli import run_stage

STAGE = "reduced_data"


def run_cell(params: Params, cell: common.Cell) -> None:
    _check(params, cell)
    if cell.method == "ce":
        _cross_entropy(params, cell)
    else:
        _supcon_and_probe(params, cell)


def _check(params: Params, cell: common.Cell) -> None:
    """The cell's values must be in params (dvc.yaml's matrix renders them from there)."""
    for key, value, allowed in (("reduced.fractions", cell.fraction, params.reduced.fractions), ("reduced.methods", cell.method, params.reduced.methods), ("run.seeds", cell.seed, params.run.seeds)):
        if value not in allowed:
            raise ConfigError(key, value, f"one of {list(allowed)} (the values params.yaml lists)")


def _budget(params: Params, section, num_items: int):
    # Not reduced.fractions or run.seeds in the key: adding a fraction must not retrain other cells.
    return budgeted(section, num_items=num_items, steps=params.reduced.steps, min_epochs=params.reduced.min_epochs, world_size=dist.world_size())


def _subset_size(params: Params, cell: common.Cell) -> int:
    """How many labelled images the cell trains on (the budget rule needs it before the run starts)."""
    return len(labelled_subset(common.load_data(params), cell.fraction, params.run.seed).labels)


def _cross_entropy(params: Params, cell: common.Cell) -> None:
    config = _budget(params, params.ce, _subset_size(params, cell))
    budget = {"budget": {"epochs": config.epochs, "batch_size": config.batch_size}}
    with common.training_stage(params, stage=STAGE, trains="ce", method="ce", model_dir="ce", sections=("data", "model", "ce"), epochs=config.epochs, seed=cell.seed, cell=cell, key=budget) as job:
        trained = job.train(config=config, model_config=params.model)
        if dist.is_main_process():
            n = len(job.train_split.labels)
            spent = {"steps": params.reduced.steps, "epochs": config.epochs, "batch_size": config.batch_size, "images_seen": images_seen(config, num_items=n)}
            job.finish(_cell_fields(cell, spent) | job.selected_epoch(), trained.history, test=job.score_test(trained.predictor))


def _supcon_and_probe(params: Params, cell: common.Cell) -> None:
    n = _subset_size(params, cell)
    # No kNN monitor in cells: at 1% a cell runs many short epochs, and the monitor is not a result.
    pretrain = replace(_budget(params, params.supcon, n), knn_every=0)
    # The probe is evaluation, not a method being compared: at least linear.epochs, as in linear_eval
    # (on precomputed features it costs seconds), and at least the budget rule's steps.
    probe = _budget(params, params.linear, n)
    probe = replace(probe, epochs=max(probe.epochs, params.linear.epochs))
    sections = ("data", "model", "supcon")
    key = {"budget": {"epochs": pretrain.epochs, "batch_size": pretrain.batch_size}}
    with common.training_stage(params, stage=STAGE, trains="supcon", method=params.supcon.method, model_dir="supcon", sections=sections, epochs=pretrain.epochs, seed=cell.seed, cell=cell, key=key) as job:
        encoder = job.train(config=pretrain, model_config=params.model).model.encoder
        encoder_digest = provenance.file_digest(job.context.checkpoint_path) if job.context.checkpoint_path.exists() else ""
        probe_job = job.then("linear", model_dir="linear", sections=("data", "linear"), epochs=probe.epochs, inputs={"encoder": encoder_digest}, key={"budget": {"epochs": probe.epochs}})
        trained = probe_job.train(config=probe, encoder=encoder)
        if dist.is_main_process():
            spent = {
                "steps": params.reduced.steps, "epochs": pretrain.epochs, "batch_size": pretrain.batch_size, "probe_epochs": probe.epochs,
                "images_seen": images_seen(pretrain, num_items=n, views=params.supcon.views),
            }  # fmt: skip
            metrics = _cell_fields(cell, spent) | {"method": params.supcon.method} | probe_job.selected_epoch()
            probe_job.finish(metrics, trained.history, test=probe_job.score_test(trained.predictor))
            job.run.log_artifact(job.context.checkpoint_path, "checkpoint")


def _cell_fields(cell: common.Cell, budget: dict) -> dict:
    return {"cell": cell.name, "fraction": cell.fraction, "method": cell.method, "seed": cell.seed, "budget": budget}


def _parse(argv: list[str]) -> common.Cell:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
