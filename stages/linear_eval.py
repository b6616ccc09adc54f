"""Stage `linear_eval`: linear classifier on the frozen SupCon encoder; val selects, test scores once."""

from pipeline import checkpoint, provenance
from pipeline.config import Params
from pipeline.data import load_prepared
from pipeline.errors import UserError
from pipeline.evaluate import classification_metrics, confusion_matrix
from pipeline.linear_probe import linear_evaluation, load_encoder
from pipeline.preprocess import predict
from stages import common, paths
from stages.cli import run_stage

STAGE = "linear_eval"


def evaluate(params: Params) -> None:
    device = common.runtime(params)
    data = load_prepared(paths.prepared(params.data.dataset))
    train = data.subset(params.data.train_fraction)
    encoder_path = paths.model_dir("supcon") / checkpoint.LAST
    pretrained = checkpoint.load(encoder_path)
    if pretrained is None or pretrained["epoch"] < params.supcon.epochs:
        raise UserError(f"{encoder_path}: no finished SupCon checkpoint; run `dvc repro pretrain_supcon` first")
    out_dir = paths.model_dir("linear")
    # Keyed on the encoder checkpoint's bytes: a retrained encoder is a new input, whatever its params.
    inputs = {"prepared": common.prepared_digest(params), "encoder": provenance.file_digest(encoder_path)}
    config = common.run_config(params, "data", "linear", inputs=inputs)
    resume = common.resume_state(out_dir / checkpoint.LAST, config, epochs=params.linear.epochs)
    with common.tracked_run(params, device, stage=STAGE, method=params.supcon.method, resume=resume) as run:
        probe, history = linear_evaluation(
            data, train,
            encoder=load_encoder(encoder_path, device), config=params.linear, seed=params.run.seed,
            device=device, out_dir=out_dir, run_config=config, resume=resume,
            on_epoch=common.epoch_logger(run), run_id=run.run_id, machine=common.machine(device),
        )  # fmt: skip
        logits = predict(probe, data.test.images, preprocess=lambda images: images, device=device)
        test = classification_metrics(logits, data.test.labels, "test")
        best = checkpoint.load(out_dir / checkpoint.BEST)
        common.log_confusion(run, confusion_matrix(logits, data.test.labels), data.class_names, STAGE)
        metrics = {"method": params.supcon.method, "best_epoch": best["epoch"], "val/top1_best": best["val_top1"], **common.summarize(history), **test}
        common.finish(run, STAGE, metrics, history, device)


def main() -> None:
    run_stage(evaluate)


if __name__ == "__main__":
    main()
