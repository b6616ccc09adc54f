"""Stage `small_batch`: one cell of the queue x equal x seed matrix in dvc.yaml.

    python -m stages.small_batch --queue 4096 --equal steps --seed 0

A cell pretrains SupCon at small_batch.batch_size on the main stages' train split, with a
momentum-key queue of `--queue` keys (0: none; supcon.memory's momentum), for as many optimizer
steps (`--equal steps`) or epochs (`--equal epochs`) as pretrain_supcon (pipeline/small_batch.py),
then its linear probe exactly as linear_eval trains it (params' linear section). Every other
setting is supcon's. Writes models/small_batch/<cell>/ and metrics/small_batch/<cell>.json, which
the report sets beside the main run of the same seed (the default batch).
"""

import argparse
import sys
from dataclasses import replace

from pipeline.config import Params
from pipeline.small_batch import small_batch_config
from stages import common
from stages.cli import require_listed, run_stage
from stages.reduced_data import supcon_and_probe

STAGE = "small_batch"


def run_cell(params: Params, requested: common.SmallBatchCell) -> None:
    cell = _listed(params, requested)
    # The cell's config is params' supcon section as the cell trains it, so its run's key, logged
    # params and MLflow run read as what it trained (batch, queue, epochs, warm-up).
    supcon = small_batch_config(params.supcon, batch_size=cell.batch_size, queue=cell.queue, equal=cell.equal)
    cell_params = replace(params, supcon=supcon)
    common.runtime(cell_params)  # the process group before the data: the same order as every stage
    data = common.load_data(cell_params)
    supcon_and_probe(cell_params, cell, data, STAGE, pretrain=supcon, probe=params.linear)


def _listed(params: Params, cell: common.SmallBatchCell) -> common.SmallBatchCell:
    """The cell must be one params.yaml lists (dvc.yaml's matrix names its outputs from there)."""
    require_listed(("small_batch.queues", cell.queue, params.small_batch.queues), ("small_batch.equal", cell.equal, params.small_batch.equal), ("run.seeds", cell.seed, params.run.seeds))
    return replace(cell, batch_size=params.small_batch.batch_size)


def _parse(argv: list[str]) -> common.SmallBatchCell:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", type=int, required=True, help="keys in the queue, one of small_batch.queues (0: none)")
    parser.add_argument("--equal", choices=["steps", "epochs"], required=True, help="what the cell keeps equal to pretrain_supcon")
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args(argv)
    return common.SmallBatchCell(batch_size=0, queue=args.queue, equal=args.equal, seed=args.seed)  # batch: params'


def main(argv: list[str] | None = None) -> None:
    cell = _parse(sys.argv[1:] if argv is None else argv)
    run_stage(lambda params: run_cell(params, cell))


if __name__ == "__main__":
    main()
