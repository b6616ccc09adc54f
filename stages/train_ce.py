"""Stage `train_ce`: the cross-entropy baseline (same encoder, augmentation and epoch budget).

The final model is scored once on the test split; checkpoints every epoch and resumes.
"""

from pipeline import checkpoint, dist
from pipeline.config import Params
from pipeline.data import load_prepared
from pipeline.evaluate import classification_metrics, confusion_matrix
from pipeline.preprocess import eval_preprocess, predict
from pipeline.supervised import train_cross_entropy
from stages import common, paths
from stages.cli import run_stage

STAGE = "train_ce"


def train(params: Params) -> None:
    device = common.runtime(params)
    data = load_prepared(paths.prepared(params.data.dataset))
    train_split = data.subset(params.data.train_fraction)
    checkpoint_path = paths.model_dir("ce") / checkpoint.LAST
    config = common.run_config(params, "data", "model", "ce", inputs={"prepared": common.prepared_digest(params)})
    resume = common.resume_state(checkpoint_path, config, epochs=params.ce.epochs)
    with common.tracked_run(params, device, stage=STAGE, method="ce", resume=resume) as run:
        context = common.run_context(params, device, run, checkpoint_path=checkpoint_path, config=config, resume=resume)
        model, history = train_cross_entropy(data, train_split, model_config=params.model, config=params.ce, run=context)
        if not dist.is_main_process():
            return
        preprocess = eval_preprocess(data.image_size, data.channels, data.mean, data.std).to(device)
        logits = predict(model, data.test.images, preprocess=preprocess, device=device)
        test = classification_metrics(logits, data.test.labels, "test")
        common.log_confusion(run, confusion_matrix(logits, data.test.labels), data.class_names, STAGE)
        common.finish(run, STAGE, {"method": "ce", "train_images": len(train_split.labels), **common.summarize(history), **test}, history, device)
        run.log_artifact(checkpoint_path, "checkpoint")


def main() -> None:
    run_stage(train)


if __name__ == "__main__":
    main()
