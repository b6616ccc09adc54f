"""The cross-entropy baseline: the same encoder and augmentation, trained end to end with CE."""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pipeline import dist, recipe
from pipeline.data import Split
from pipeline.evaluate import topk_accuracy
from pipeline.methods.parts import MethodInputs, MethodParts
from pipeline.models import build_ce_model
from pipeline.preprocess import predict


def cross_entropy(inputs: MethodInputs) -> MethodParts:
    """Encoder + linear layer trained with CE on one augmented view per image (section `ce`)."""
    data = inputs.data
    spec = recipe.model_spec(inputs.model_config, channels=data.channels, image_size=data.image_size)
    spec.update(num_classes=data.num_classes)
    model = build_ce_model(**spec)
    return MethodParts(
        name="ce",
        model=model,
        loss=cross_entropy_loss(inputs.augment, inputs.normalize, inputs.config.label_smoothing),
        inputs=inputs.train.images,
        spec={"kind": "ce", **spec},
        evaluate=val_monitor(model, data.val, preprocess=inputs.preprocess, device=inputs.run.device),
        predictor=lambda: nn.Sequential(inputs.preprocess, model).eval(),
    )


def cross_entropy_loss(augment: nn.Module, normalize: nn.Module, label_smoothing: float) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]:
    """(model, uint8 images [B, C, H, W], labels [B]) -> mean CE of one augmented view per image."""

    def loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = model(normalize(augment(images)))
        return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)

    return loss


def val_monitor(model: nn.Module, val: Split, *, preprocess: nn.Module, device: torch.device) -> Callable[[int], dict[str, float]]:
    """val top-1 after every epoch (cheap: one forward pass over the val split)."""

    def evaluate(epoch: int) -> dict[str, float]:
        if not dist.is_main_process():
            return {}
        logits = predict(model, val.images, preprocess=preprocess, device=device)
        return {"val/top1": topk_accuracy(logits, val.labels)}

    return evaluate
