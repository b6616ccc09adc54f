"""Stage `pretrain_supcon`: encoder + projection head trained with SupCon (or SimCLR).

Checkpoints every epoch to models/supcon/last.pt and resumes from it; runs under
`torchrun --nproc_per_node=N -m stages.pretrain_supcon` as well (DDP, gathered loss).
"""

from pipeline import checkpoint, dist
from pipeline.config import Params
from pipeline.data import load_prepared
from pipeline.pretrain import pretrain_contrastive
from stages import common, paths
from stages.cli import run_stage

STAGE = "pretrain_supcon"


def pretrain(params: Params) -> None:
    device = common.runtime(params)
    data = load_prepared(paths.prepared(params.data.dataset))
    train = data.subset(params.data.train_fraction)
    checkpoint_path = paths.model_dir("supcon") / checkpoint.LAST
    config = common.run_config(params, "data", "model", "supcon", inputs={"prepared": common.prepared_digest(params)})
    resume = common.resume_state(checkpoint_path, config, epochs=params.supcon.epochs)
    with common.tracked_run(params, device, stage=STAGE, method=params.supcon.method, resume=resume) as run:
        context = common.run_context(params, device, run, checkpoint_path=checkpoint_path, config=config, resume=resume)
        _, history = pretrain_contrastive(data, train, model_config=params.model, config=params.supcon, run=context)
        common.finish(run, STAGE, {"method": params.supcon.method, "train_images": len(train.labels), **common.summarize(history)}, history, device)
        if dist.is_main_process():
            run.log_artifact(checkpoint_path, "checkpoint")


def main() -> None:
    run_stage(pretrain)


if __name__ == "__main__":
    main()
