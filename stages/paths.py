"""Where each stage reads and writes, relative to the repository root (DVC runs stages there).

The one place that knows the repository layout; dvc.yaml mirrors these paths.
"""

from pathlib import Path

PARAMS = Path("params.yaml")
METRICS = Path("metrics")
MODELS = Path("models")
PLOTS = Path("plots")


def prepared(dataset: str) -> Path:
    return Path("data/prepared") / dataset


def corrupted(dataset: str) -> Path:
    return Path("data/corrupted") / dataset


def model_dir(method: str, seed: int) -> Path:
    """models/seeds/<seed>/<method>: one folder per training seed of the main comparison."""
    return MODELS / "seeds" / str(seed) / method


def seeded(stage: str, seed: int) -> str:
    """The output name of `stage` for training seed `seed`: metrics/seeds/<seed>/<stage>.json and
    plots/seeds/<seed>/<stage>.csv (see metrics_file and plot_file)."""
    return f"seeds/{seed}/{stage}"


def reduced_dir(cell: str) -> Path:
    """models/reduced/<cell>: one folder per reduced-data cell (its DVC output)."""
    return MODELS / "reduced" / cell


def long_tail_dir(cell: str) -> Path:
    """models/long_tail/<cell>: one folder per long-tailed-data cell (its DVC output)."""
    return MODELS / "long_tail" / cell


def small_batch_dir(cell: str) -> Path:
    """models/small_batch/<cell>: one folder per small-batch cell (its DVC output)."""
    return MODELS / "small_batch" / cell


def metrics_file(output: str) -> Path:
    """metrics/<output>.json; `output` is a stage name or a seeded/cell output name."""
    return METRICS / f"{output}.json"


def plot_file(output: str) -> Path:
    return PLOTS / f"{output}.csv"


def mlflow_db() -> Path:
    # Absolute: MLflow needs an absolute sqlite path, and Ray trials change the working directory.
    return (Path.cwd() / "mlflow.db").resolve()


# --- the report stage ---------------------------------------------------------------------------

SEEDS_METRICS = METRICS / "seeds"
"""metrics/seeds/<seed>/<stage>.json: the main comparison's values, one folder per training seed."""
SEEDS_PLOTS = PLOTS / "seeds"
"""plots/seeds/<seed>/<stage>.csv: the main comparison's curves per training seed."""
REDUCED_METRICS = METRICS / "reduced"
"""metrics/reduced/<cell>.json: one file per reduced-data cell."""
LONG_TAIL_METRICS = METRICS / "long_tail"
"""metrics/long_tail/<cell>.json: one file per long-tailed-data cell."""
SMALL_BATCH_METRICS = METRICS / "small_batch"
"""metrics/small_batch/<cell>.json: one file per small-batch cell."""
SWEEPS = Path("sweeps")
"""sweeps/<name>/summary.json: one file per sweep."""
SUMMARY = Path("reports/summary.md")
REPORT_FIGURES = Path("reports/figures")
