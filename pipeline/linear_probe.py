"""Linear evaluation: a linear classifier on the frozen encoder, selected on val, scored on test once.

With augmentation `none` the encoder's features are computed once per split and the classifier
trains on them (seconds, not minutes); with any other policy each batch is augmented and encoded
on the fly. The paper L2-normalises the representation r, so the classifier sees unit vectors.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline import checkpoint, dist, recipe
from pipeline.augment import eval_transform
from pipeline.config import LinearConfig
from pipeline.data import PreparedDataset, Split
from pipeline.device import place_model
from pipeline.engine import FitSpec, fit
from pipeline.evaluate import topk_accuracy
from pipeline.models import LinearClassifier, build_supcon_model
from pipeline.preprocess import Normalize, predict


class FrozenFeatures(nn.Module):
    """Unit-norm encoder features r of normalised images, with no gradient into the encoder."""

    def __init__(self, encoder: nn.Module, normalize: nn.Module) -> None:
        super().__init__()
        self.encoder, self.normalize = encoder.eval().requires_grad_(False), normalize

    def train(self, mode: bool = True) -> "FrozenFeatures":
        return super().train(False)  # BatchNorm statistics stay frozen

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encoder(self.normalize(images)).float(), dim=1)


def load_encoder(path: Path, device: torch.device) -> nn.Module:
    """The encoder of a SupCon/SimCLR checkpoint, rebuilt from the config it carries."""
    state = checkpoint.load(path)
    kwargs = {k: v for k, v in state["spec"].items() if k != "kind"}
    model = build_supcon_model(**kwargs)
    model.load_state_dict(state["model"])
    return place_model(model.encoder, device)


def best_keeper(classifier: nn.Module, evaluate: Callable[[], float], path: Path) -> Callable[[int], dict[str, float]]:
    """Evaluate on val after each epoch and keep the best classifier's weights at `path`."""

    def on_epoch_end(epoch: int) -> dict[str, float]:
        if not dist.is_main_process():
            return {}
        accuracy = evaluate()
        best = checkpoint.best_so_far(path)
        if best is None or accuracy > best["val_top1"]:
            checkpoint.save_best(path, model=classifier, epoch=epoch, val_top1=accuracy)
        return {"val/top1": accuracy}

    return on_epoch_end


def linear_evaluation(
    data: PreparedDataset,
    train: Split,
    *,
    encoder: nn.Module,
    config: LinearConfig,
    seed: int,
    device: torch.device,
    out_dir: Path,
    run_config: dict,
    resume: dict[str, Any] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    run_id: str = "",
    machine: str = "",
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train the probe; returns (uint8 images -> logits with the best val weights, history).

    The test split is never touched here: the caller scores it once with the returned probe.
    """
    torch.manual_seed(seed)
    normalize = Normalize(data.mean, data.std).to(device)
    features = FrozenFeatures(encoder, normalize).to(device)
    to_float = eval_transform(data.image_size, data.channels).to(device)
    precompute = config.augmentation.policy == "none"
    augment = to_float if precompute else recipe.augmentation(config.augmentation, image_size=data.image_size, channels=data.channels).to(device)
    if precompute:
        train_inputs = predict(features, train.images, preprocess=to_float, device=device)
        val_inputs = predict(features, data.val.images, preprocess=to_float, device=device)
    else:
        train_inputs, val_inputs = train.images, data.val.images
    torch.manual_seed(seed)
    feature_dim = int(predict(features, train.images[:2], preprocess=to_float, device=device).shape[1])
    classifier = LinearClassifier(feature_dim, data.num_classes).to(device)
    head = classifier if precompute else nn.Sequential(features, classifier)
    optimizer, scheduler = recipe.optimizer_and_schedule(
        classifier, config.optimizer, num_items=len(train.labels), batch_size=config.batch_size, epochs=config.epochs
    )

    def loss_fn(inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(head(inputs if precompute else augment(inputs)).float(), labels)

    def val_top1() -> float:
        logits = predict(head, val_inputs, preprocess=(lambda x: x) if precompute else to_float, device=device)
        return topk_accuracy(logits, data.val.labels)

    best_path = out_dir / checkpoint.BEST
    if resume is None:
        best_path.unlink(missing_ok=True)  # a stale best from another run must not win
    history = fit(
        FitSpec(
            name="linear",
            model=classifier,
            optimizer=optimizer,
            scheduler=scheduler,
            loss_fn=loss_fn,
            inputs=train_inputs,
            labels=train.labels,
            batch_size=config.batch_size,
            epochs=config.epochs,
            seed=seed,
            device=device,
            checkpoint_path=out_dir / checkpoint.LAST,
            spec={"kind": "linear", "in_dim": feature_dim, "num_classes": data.num_classes},
            config=run_config,
            evaluate=best_keeper(classifier, val_top1, best_path),
            on_epoch=on_epoch,
            run_id=run_id,
            machine=machine,
        ),
        resume=resume,
    )
    classifier.load_state_dict(checkpoint.load(best_path)["model"])
    return nn.Sequential(to_float, features, classifier).eval(), history
