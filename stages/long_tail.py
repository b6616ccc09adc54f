"""Stage `long_tail`: one cell of the imbalance factor x method x seed matrix in dvc.yaml.

    python -m stages.long_tail --factor 100 --method supcon --seed 0

A cell trains on the split the main stages would with data.imbalance.factor = <factor>
(data.train_fraction's subset, made long-tailed with data.imbalance's profile and class order;
pipeline/long_tail.py): SupCon pretraining and its linear probe both see the long tail, CE
likewise. Val (model selection) and test stay balanced. Training is reduced_data's: the same
budget rule (reduced.steps / reduced.min_epochs), the same code (stages.reduced_data.train_cell).
Writes models/long_tail/<cell>/ and metrics/long_tail/<cell>.json, whose per-class test top-1 and
train images per class let the report group classes into head, middle and tail.
"""

import argparse
import sys
from dataclasses import replace

from pipeline.config import Params
from stages import common
from stages.cli import require_listed, run_stage
from stages.reduced_data import train_cell

STAGE = "long_tail"


def run_cell(params: Params, requested: common.LongTailCell) -> None:
    cell = _listed(params, requested)
    # The cell's factor is data.imbalance.factor for this run: in its key and logged params, so
    # its MLflow run reads as what it trained on; params.yaml's own factor is the main stages'.
    imbalance = replace(params.data.imbalance, factor=cell.factor)
    train_cell(replace(params, data=replace(params.data, imbalance=imbalance)), cell, stage=STAGE)


def _listed(params: Params, cell: common.LongTailCell) -> common.LongTailCell:
    """The cell as params.yaml lists it (dvc.yaml's matrix names its outputs with those values):
    --factor 10.0 for a listed 10 is the cell named with 10."""
    require_listed(("long_tail.factors", cell.factor, params.long_tail.factors), ("long_tail.methods", cell.method, params.long_tail.methods), ("run.seeds", cell.seed, params.run.seeds))
    return replace(cell, factor=next(f for f in params.long_tail.factors if f == cell.factor))


def _parse(argv: list[str]) -> common.LongTailCell:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # A number, matched by value to params.yaml's list, whose spelling names the cell (_listed).
    parser.add_argument("--factor", type=float, required=True)
    parser.add_argument("--method", choices=["supcon", "ce"], required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args(argv)
    return common.LongTailCell(factor=args.factor, method=args.method, seed=args.seed)


def main(argv: list[str] | None = None) -> None:
    cell = _parse(sys.argv[1:] if argv is None else argv)
    run_stage(lambda params: run_cell(params, cell))


if __name__ == "__main__":
    main()
