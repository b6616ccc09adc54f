"""Stage `train_ce`: the cross-entropy baseline (same encoder, augmentation and epoch budget).

The epoch with the best val top-1 (the same rule as the linear probe's) is scored once on the
test split; checkpoints (run.checkpoint_every_*) to models/seeds/<seed>/ce/ and resumes. One run per
training seed: `python -m stages.train_ce [--seed S]` (dvc.yaml: train_ce@<seed>).
"""

from pipeline import dist
from pipeline.config import Params
from stages import common
from stages.cli import run_seeded_stage

STAGE = "train_ce"


def train_baseline(params: Params, seed: int) -> None:
    sections = ("data", "model", "ce")
    with common.training_stage(params, stage=STAGE, trains="ce", method="ce", model_dir="ce", sections=sections, epochs=params.ce.epochs, seed=seed) as job:
        trained = job.train(config=params.ce, model_config=params.model)
        if dist.is_main_process():
            job.finish({"method": "ce", **job.selected_epoch()}, trained.history, test=job.score_test(trained.predictor))
            job.log_model(trained.predictor)
            job.run.log_artifact(job.context.checkpoint_path, "checkpoint")


def main() -> None:
    run_seeded_stage(train_baseline, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main()
