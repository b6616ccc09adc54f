"""Stage `compare`: SupCon linear-eval top-1 next to the CE baseline's, printed and written as JSON."""

import json

from pipeline import atomic
from pipeline.config import Params
from pipeline.errors import UserError
from stages import paths
from stages.cli import run_stage

STAGE = "compare"


def _read(stage: str) -> dict:
    path = paths.metrics_file(stage)
    if not path.is_file():
        raise UserError(f"{path}: missing; run `dvc repro {stage}` first")
    return json.loads(path.read_text())


def compare(params: Params) -> None:
    supcon, ce = _read("linear_eval"), _read("train_ce")
    keys = [k for k in ("test/top1", "test/top5", "test/ece") if k in supcon and k in ce]
    rows = {k: {"supcon": supcon[k], "ce": ce[k], "difference": supcon[k] - ce[k]} for k in keys}
    method = supcon.get("method", "supcon")
    print(f"\n{params.data.dataset}, {params.model.encoder}: {method} (linear eval) vs cross-entropy, test split")
    print(f"{'metric':<12}{method:>10}{'ce':>10}{'diff':>10}")
    for key, row in rows.items():
        print(f"{key:<12}{row['supcon']:>10.4f}{row['ce']:>10.4f}{row['difference']:>+10.4f}")
    atomic.write_json(paths.metrics_file(STAGE), {"method": method, **{f"{k}/{col}": v for k, row in rows.items() for col, v in row.items()}})


def main() -> None:
    run_stage(compare)


if __name__ == "__main__":
    main()
