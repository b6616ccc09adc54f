"""Stage `compare`: SupCon linear-eval top-1 next to the CE baseline's, per training seed and as
mean ± std over run.seeds, printed and written to metrics/compare.json."""

import json
import statistics

from pipeline import atomic
from pipeline.config import Params
from pipeline.errors import UserError
from stages import paths
from stages.cli import run_stage

STAGE = "compare"
KEYS = ("test/top1", "test/top5", "test/ece")


def _read(stage: str, seed: int) -> dict:
    path = paths.metrics_file(paths.seeded(stage, seed))
    if not path.is_file():
        raise UserError(f"{path}: missing; run `dvc repro {stage}@{seed}` first")
    return json.loads(path.read_text())


def _spread(values: list[float]) -> dict[str, float | None]:
    # ddof=1, as the report: the spread of a sample of training runs; none for one seed (null in
    # the JSON: NaN is not JSON, and 0 would claim a spread that was never measured).
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None, "n": len(values)}


def compare(params: Params) -> None:
    seeds = list(params.run.seeds)
    runs = {seed: (_read("linear_eval", seed), _read("train_ce", seed)) for seed in seeds}
    keys = [k for k in KEYS if all(k in supcon and k in ce for supcon, ce in runs.values())]
    method = runs[seeds[0]][0].get("method", "supcon")
    result: dict = {"method": method, "seeds": seeds}
    for key in keys:
        columns = {"supcon": [runs[s][0][key] for s in seeds], "ce": [runs[s][1][key] for s in seeds]}
        columns["difference"] = [a - b for a, b in zip(columns["supcon"], columns["ce"], strict=True)]
        for column, values in columns.items():
            result.update({f"{key}/{column}/{stat}": v for stat, v in _spread(values).items()})
            result[f"{key}/{column}/per_seed"] = dict(zip(map(str, seeds), values, strict=True))
    _print(params, method, keys, result)
    atomic.write_json(paths.metrics_file(STAGE), result)


def _print(params: Params, method: str, keys: list[str], result: dict) -> None:
    n = len(result["seeds"])
    print(f"\n{params.data.dataset}, {params.model.encoder}: {method} (linear eval) vs cross-entropy, test split, mean ± std over {n} seed(s)")
    print(f"{'metric':<12}{method:>18}{'ce':>18}{'diff':>18}")
    for key in keys:
        cells = [_shown(result, f"{key}/{column}") for column in ("supcon", "ce", "difference")]
        print(f"{key:<12}" + "".join(f"{cell:>18}" for cell in cells))


def _shown(result: dict, key: str) -> str:
    std = result[f"{key}/std"]
    return f"{result[f'{key}/mean']:.4f}" + (f" ± {std:.4f}" if std is not None else f" (n={result[f'{key}/n']})")


def main() -> None:
    run_stage(compare)


if __name__ == "__main__":
    main()
