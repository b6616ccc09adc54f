"""Linear evaluation: a linear classifier on the frozen encoder, selected on val, scored on test once.

With augmentation `none` the encoder's features are computed once per split and the classifier
trains on them (seconds, not minutes); with any other policy each batch is augmented and encoded
on the fly. The paper L2-normalises the representation r, so the classifier sees unit vectors.
The test split is never touched here: the caller scores it once with the returned predictor.
"""

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.augment import eval_transform
from pipeline.evaluate import topk_accuracy
from pipeline.methods.parts import MethodInputs, MethodParts
from pipeline.methods.selection import BestOnVal
from pipeline.models import LinearClassifier
from pipeline.preprocess import predict, predict_in_shares, rows_of


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


def linear_probe(inputs: MethodInputs) -> MethodParts:
    """A linear classifier on inputs.encoder's frozen features (section `linear`).

    The best-on-val weights are kept (methods/selection.py); the predictor carries them:
    uint8 images -> logits. Under torchrun it is one classifier trained on all the data (DDP:
    each rank a shard of every epoch, gradients averaged), selected on the same val top-1 on
    every rank, and every rank's predictor holds the same weights.
    """
    if inputs.encoder is None:
        raise ValueError("the linear probe needs a trained encoder")
    data, device = inputs.data, inputs.run.device
    features = FrozenFeatures(inputs.encoder, inputs.normalize).to(device)
    # `none` is the deterministic evaluation transform: features can be computed once.
    precompute = inputs.config.augmentation.policy == "none"
    to_float = inputs.augment if precompute else _deterministic(inputs)
    has_val = len(data.val) > 0
    if precompute:
        train_inputs = predict_in_shares(features, inputs.train.images, preprocess=to_float, device=device)
        val_inputs = predict_in_shares(features, data.val.images, preprocess=to_float, device=device) if has_val else None
    else:
        train_inputs, val_inputs = inputs.train.images, data.val.images
    feature_dim = int(predict(features, rows_of(inputs.train.images, torch.arange(2)), preprocess=to_float, device=device).shape[1])
    classifier = LinearClassifier(feature_dim, data.num_classes).to(device)
    head = classifier if precompute else nn.Sequential(features, classifier)

    def val_top1() -> float:
        logits = predict_in_shares(head, val_inputs, preprocess=(lambda x: x) if precompute else to_float, device=device)
        return topk_accuracy(logits, data.val.labels)

    def loss(placed: nn.Module, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(placed(batch if precompute else features(inputs.augment(batch))).float(), labels)

    selection = BestOnVal(classifier, val_top1 if has_val else None, inputs.run.checkpoint_path, fresh=inputs.run.resume is None)

    return MethodParts(
        name="linear",
        model=classifier,
        loss=loss,
        inputs=train_inputs,
        spec={"kind": "linear", "in_dim": feature_dim, "num_classes": data.num_classes},
        evaluate=selection,
        on_save=selection.save,
        predictor=lambda: probe_predictor(to_float, features, selection.load_best()),
    )


def probe_predictor(to_float: nn.Module, features: FrozenFeatures, classifier: nn.Module) -> nn.Module:
    """uint8 images -> logits: the evaluation transform, the frozen features, the classifier."""
    return nn.Sequential(to_float, features, classifier).eval()


def _deterministic(inputs: MethodInputs) -> nn.Module:
    return eval_transform(inputs.data.image_size, inputs.data.channels).to(inputs.run.device)
