"""Stage `linear_eval`: linear classifier on the frozen SupCon encoder; val selects, test scores once.

One run per training seed, on that seed's encoder: `python -m stages.linear_eval [--seed S]`
(dvc.yaml: linear_eval@<seed>). Under `torchrun --nproc_per_node=N -m stages.linear_eval` it is one
classifier trained on all the data (DDP, each process a shard of every epoch), selected on the
val top-1 every process computes alike; rank zero scores test and writes the results.
"""

from pipeline import checkpoint, dist, provenance
from pipeline.config import Params
from pipeline.errors import UserError
from pipeline.saved_models import load_encoder
from stages import common, paths
from stages.cli import run_seeded_stage

STAGE = "linear_eval"


def evaluate(params: Params, seed: int) -> None:
    encoder_path = paths.model_dir("supcon", seed) / checkpoint.LAST
    pretrained = checkpoint.load(encoder_path)
    if pretrained is None or pretrained["epoch"] < params.supcon.epochs:
        raise UserError(f"{encoder_path}: no finished SupCon checkpoint; run `dvc repro pretrain_supcon@{seed}` first")
    # Keyed on the encoder checkpoint's bytes: a retrained encoder is a new input, whatever its params.
    inputs = {"encoder": provenance.file_digest(encoder_path)}
    method = params.supcon.method
    with common.training_stage(
        params, stage=STAGE, trains="linear", method=method, model_dir="linear", sections=("data", "linear"), epochs=params.linear.epochs, seed=seed, inputs=inputs
    ) as job:
        trained = job.train(config=params.linear, encoder=load_encoder(encoder_path, job.device))
        if dist.is_main_process():
            job.finish({"method": method, **job.selected_epoch()}, trained.history, test=job.score_test(trained.predictor))
            job.log_model(trained.predictor)  # encoder + linear classifier


def main() -> None:
    run_seeded_stage(evaluate, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main()
