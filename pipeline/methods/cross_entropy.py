"""The cross-entropy baseline: the same encoder and augmentation, trained end to end with CE.

Selected on val like the linear probe (methods/selection.py): the reported model is the epoch
with the best val top-1, not simply the last one.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pipeline import recipe
from pipeline.data import Split
from pipeline.evaluate import topk_accuracy
from pipeline.methods.parts import MethodInputs, MethodParts
from pipeline.methods.selection import BestOnVal
from pipeline.models import build_ce_model
from pipeline.preprocess import predict_in_shares


def cross_entropy(inputs: MethodInputs) -> MethodParts:
    """Encoder + linear layer trained with CE on one augmented view per image (section `ce`)."""
    data = inputs.data
    spec = recipe.model_spec(inputs.model_config, channels=data.channels, image_size=data.image_size)
    spec.update(num_classes=data.num_classes)
    model = build_ce_model(**spec)
    on_val = val_top1(model, data.val, preprocess=inputs.preprocess, device=inputs.run.device) if len(data.val) else None
    selection = BestOnVal(model, on_val, inputs.run.checkpoint_path, fresh=inputs.run.resume is None)
    return MethodParts(
        name="ce",
        model=model,
        loss=cross_entropy_loss(inputs.augment, inputs.normalize, inputs.config.label_smoothing),
        inputs=inputs.train.images,
        spec={"kind": "ce", **spec},
        evaluate=selection,
        on_save=selection.save,
        predictor=lambda: nn.Sequential(inputs.preprocess, selection.load_best()).eval(),
    )


def cross_entropy_loss(augment: nn.Module, normalize: nn.Module, label_smoothing: float) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]:
    """(model, uint8 images [B, C, H, W], labels [B]) -> mean CE of one augmented view per image."""

    def loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = model(normalize(augment(images)))
        return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)

    return loss


def val_top1(model: nn.Module, val: Split, *, preprocess: nn.Module, device: torch.device) -> Callable[[], float]:
    """The model's val top-1 now (cheap: one forward pass over the val split; under torchrun each
    rank runs its share, and every rank scores all the logits, so all get the same number)."""
    return lambda: topk_accuracy(predict_in_shares(model, val.images, preprocess=preprocess, device=device), val.labels)
