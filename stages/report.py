"""Stage `report`: reports/summary.md and reports/figures/*.png from the metrics files on disk,
with a verdict per paper claim (pipeline.report), logged as one MLflow run.

Required: metrics/seeds/<seed>/linear_eval.json and train_ce.json for each of run.seeds.
Everything else is optional; a missing input gives a section that names the stage to run.
"""

from pathlib import Path

import torch
from matplotlib.figure import Figure

from pipeline import atomic, environment
from pipeline.config import Params
from pipeline.mlflow_compare import recorded_comparison
from pipeline.report import Folders, build, read_inputs
from pipeline.report.figures import save_png
from stages import common, paths
from stages.common import Cell, LongTailCell, SmallBatchCell
from stages.cli import run_stage

STAGE = "report"
MLFLOW_UI = "http://127.0.0.1:5000"
"""Where `make mlflow-ui` serves the store (stages/mlflow_ui.py's defaults): the report's compare link."""
SUMMARY = paths.SUMMARY
FIGURES = paths.REPORT_FIGURES
FOLDERS = Folders(seeds=paths.SEEDS_METRICS, seed_plots=paths.SEEDS_PLOTS, reduced=paths.REDUCED_METRICS, sweeps=paths.SWEEPS, long_tail=paths.LONG_TAIL_METRICS, small_batch=paths.SMALL_BATCH_METRICS)


def write(text: str, drawn: dict[str, Figure]) -> list[Path]:
    """summary.md and the PNGs, atomically; PNGs of inputs that are gone are removed, so no
    figure outlives the metrics it was drawn from."""
    written = []
    for name, figure in drawn.items():
        written.append(FIGURES / f"{name}.png")
        save_png(figure, written[-1])
    for stale in set(FIGURES.glob("*.png")) - set(written):
        stale.unlink()
    atomic.write_text(SUMMARY, text)
    return written


def report(params: Params) -> None:
    # Only this params' seeds and cells: results of ones since removed may still lie on disk.
    cells = {Cell(fraction, method, seed).name for fraction in params.reduced.fractions for method in params.reduced.methods for seed in params.run.seeds}
    tails = {LongTailCell(factor, method, seed).name for factor in params.long_tail.factors for method in params.long_tail.methods for seed in params.run.seeds}
    batch = params.small_batch.batch_size
    small = {SmallBatchCell(batch, queue, equal, seed).name for queue in params.small_batch.queues for equal in params.small_batch.equal for seed in params.run.seeds}
    inputs = read_inputs(FOLDERS, list(params.run.seeds), cells, tails, small)  # before the MLflow run: a missing input opens no run
    text, drawn, rows = build(inputs, dataset=params.data.dataset, encoder=params.model.encoder, views=params.supcon.views, compare_url=recorded_comparison(MLFLOW_UI, inputs.supcon, inputs.ce))
    env = environment.run_environment(torch.device("cpu"))
    verdicts = {f"claim/{row.key}": row.verdict for row in rows}
    with common.tracked_run(params, env, stage=STAGE, method=f"{inputs.method}-vs-ce", seed=None, resume=None, extra_tags=verdicts) as run:
        pngs = write(text, drawn)
        run.log_artifact(SUMMARY, "report")
        for png in pngs:
            run.log_artifact(png, "report/figures")
    print(f"{STAGE}: {SUMMARY} and {len(pngs)} figure(s); " + ", ".join(f"{row.key} {row.verdict}" for row in rows))


def main() -> None:
    run_stage(report)


if __name__ == "__main__":
    main()
