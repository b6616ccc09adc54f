"""Stage `pretrain_supcon`: encoder + projection head trained with SupCon (or SimCLR).

    python -m stages.pretrain_supcon [--seed S]

One run per training seed (dvc.yaml: pretrain_supcon@<seed>). Checkpoints (run.checkpoint_every_*) to
models/seeds/<seed>/supcon/last.pt and resumes from it; runs under
`torchrun --nproc_per_node=N -m stages.pretrain_supcon` as well (DDP, gathered loss).
"""

from pipeline import dist
from pipeline.config import Params
from stages import common
from stages.cli import run_seeded_stage

STAGE = "pretrain_supcon"


def pretrain(params: Params, seed: int) -> None:
    method = params.supcon.method
    sections = ("data", "model", "supcon")
    with common.training_stage(params, stage=STAGE, trains="supcon", method=method, model_dir="supcon", sections=sections, epochs=params.supcon.epochs, seed=seed) as job:
        trained = job.train(config=params.supcon, model_config=params.model)
        # batch per process, views and queue: what the report sets a small-batch cell beside
        spend = {"batch_size": params.supcon.batch_size, "views": params.supcon.views, "queue": params.supcon.memory.size}
        job.finish({"method": method, **spend}, trained.history)
        if dist.is_main_process():
            job.run.log_artifact(job.context.checkpoint_path, "checkpoint")


def main() -> None:
    run_seeded_stage(pretrain, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main()
