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


def metrics_file(stage: str) -> Path:
    return METRICS / f"{stage}.json"


def plot_file(stage: str) -> Path:
    return PLOTS / f"{stage}.csv"


def mlflow_db() -> Path:
    # Absolute: MLflow needs an absolute sqlite path, and Ray trials change the working directory.
    return (Path.cwd() / "mlflow.db").resolve()
