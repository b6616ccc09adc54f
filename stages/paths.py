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


def model_dir(method: str) -> Path:
    return MODELS / method


def reduced_dir(cell: str) -> Path:
    """models/reduced/<cell>: one folder per reduced-data cell (its DVC output)."""
    return MODELS / "reduced" / cell


def metrics_file(stage: str) -> Path:
    return METRICS / f"{stage}.json"


def plot_file(stage: str) -> Path:
    return PLOTS / f"{stage}.csv"


def mlflow_db() -> Path:
    # Absolute: MLflow needs an absolute sqlite path, and Ray trials change the working directory.
    return (Path.cwd() / "mlflow.db").resolve()


# --- the report stage ---------------------------------------------------------------------------

SEEDS_METRICS = METRICS / "seeds"
"""metrics/seeds/<seed>/<stage>.json: values per seed; the report prefers them to metrics/<stage>.json."""
REDUCED_METRICS = METRICS / "reduced"
"""metrics/reduced/<cell>.json: one file per reduced-data cell."""
SWEEPS = Path("sweeps")
"""sweeps/<name>/summary.json: one file per sweep."""
SUMMARY = Path("reports/summary.md")
REPORT_FIGURES = Path("reports/figures")
