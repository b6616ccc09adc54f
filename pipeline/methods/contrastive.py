"""Contrastive pretraining (SupCon, or SimCLR when labels are ignored) with a kNN monitor on val."""

from collections.abc import Callable

import torch
from torch import nn

from pipeline import dist, recipe
from pipeline.augment import MultiView
from pipeline.data import Split
from pipeline.evaluate import knn_top1
from pipeline.losses import supcon_loss
from pipeline.methods.parts import MethodInputs, MethodParts
from pipeline.models import build_supcon_model
from pipeline.preprocess import predict


def contrastive(inputs: MethodInputs) -> MethodParts:
    """Encoder + projection head trained on V augmented views per image (section `supcon`)."""
    config, data = inputs.config, inputs.data
    spec = recipe.model_spec(inputs.model_config, channels=data.channels, image_size=data.image_size)
    spec.update(head=inputs.model_config.head, feat_dim=inputs.model_config.feat_dim)
    model = build_supcon_model(**spec)
    views = MultiView(inputs.augment, config.views).to(inputs.run.device)
    monitor = knn_monitor(
        model.encoder, inputs.train, data.val, preprocess=inputs.preprocess, device=inputs.run.device,
        num_classes=data.num_classes, k=config.knn_k, every=config.knn_every, epochs=config.epochs,
    )  # fmt: skip
    return MethodParts(
        name=config.method,
        model=model,
        loss=contrastive_loss(views, inputs.normalize, config),
        inputs=inputs.train.images,
        spec={"kind": "supcon", **spec},
        evaluate=monitor,
    )


def contrastive_loss(views: nn.Module, normalize: nn.Module, config) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]:
    """(model, uint8 images [B, C, H, W], labels [B]) -> scalar loss over V augmented views per image."""
    use_labels = config.method == "supcon"

    def loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        batch = views(images)  # [B, V, C, S, S] floats in [0, 1]
        size, count = batch.shape[:2]
        z = model(normalize(batch.flatten(0, 1)))  # [B*V, D], unit norm, b-major
        features = z.view(size, count, -1)
        return supcon_loss(
            features,
            labels if use_labels else None,
            temperature=config.temperature,
            base_temperature=config.base_temperature,
            variant=config.variant,
            across_ranks=True,  # under DDP this rank's anchors contrast against every rank's features
        )

    return loss


def knn_monitor(
    encoder: nn.Module, train: Split, val: Split, *, preprocess: nn.Module, device: torch.device, num_classes: int, k: int, every: int, epochs: int
) -> Callable[[int], dict[str, float]]:
    """Every `every` epochs (and after the last), kNN top-1 of val against the train features."""

    def evaluate(epoch: int) -> dict[str, float]:
        due = every > 0 and (epoch % every == 0 or epoch == epochs)
        if not due or not dist.is_main_process():
            return {}
        bank = predict(encoder, train.images, preprocess=preprocess, device=device)
        queries = predict(encoder, val.images, preprocess=preprocess, device=device)
        return {"val/knn_top1": knn_top1(bank, train.labels, queries, val.labels, num_classes=num_classes, k=k)}

    return evaluate
