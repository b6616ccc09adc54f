"""Contrastive pretraining (SupCon, or SimCLR when labels are ignored) with a kNN monitor on val."""

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from pipeline import dist, recipe
from pipeline.augment import MultiView
from pipeline.data import Split
from pipeline.evaluate import knn_predict
from pipeline.losses import supcon_loss
from pipeline.methods.parts import MethodInputs, MethodParts
from pipeline.models import build_supcon_model
from pipeline.preprocess import predict, rows_of

# Without a val split the monitor scores this many train images (a fixed sample) leave-one-out.
LOO_SAMPLE = 10_000


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
        views=config.views,
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
    """Every `every` epochs (and after the last), kNN top-1 of val against the train features.

    Without a val split: train/knn_top1_loo, a fixed sample of train images each against the rest
    of the train split. Under torchrun every rank embeds its share of the images and scores its
    share of the queries (one rank alone would keep the others waiting for minutes at ImageNet
    scale); every rank returns the same number.
    """
    embed = partial(predict, encoder, preprocess=preprocess, device=device)
    sample = loo_sample(len(train)) if len(val) == 0 else None
    told = False

    def evaluate(epoch: int) -> dict[str, float]:
        nonlocal told
        if not (every > 0 and (epoch % every == 0 or epoch == epochs)):
            return {}
        bank = dist.map_shares(embed, train.images, rows_of)  # [N, D] on every rank, each embedded its share
        labels = train.labels.to(bank.device)
        if sample is None:

            def val_hits(rows: torch.Tensor) -> torch.Tensor:
                queries = embed(rows_of(val.images, rows)).to(bank.device)
                return _hits(knn_predict(bank, labels, queries, num_classes=num_classes, k=k), val.labels[rows])

            return {"val/knn_top1": shared_top1(val_hits, len(val))}

        def loo_hits(rows: torch.Tensor) -> torch.Tensor:
            own = sample[rows].to(bank.device)
            scores = knn_predict(bank, labels, bank[own], num_classes=num_classes, k=k, exclude=own)
            return _hits(scores, train.labels[sample[rows]])

        if not told and dist.is_main_process():
            print(
                f"no val split (data.val_fraction 0): the kNN monitor reports train/knn_top1_loo, the kNN top-1 of {len(sample)} "
                "fixed train images each against the rest of the train split (how well training data is fitted, not held-out accuracy)"
            )
        told = True
        return {"train/knn_top1_loo": shared_top1(loo_hits, len(sample))}

    return evaluate


def _hits(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Correct top-1 predictions: scores [Q, C], labels [Q] -> a count."""
    return (scores.argmax(1) == labels.to(scores.device)).sum()


def shared_top1(correct: Callable[[torch.Tensor], torch.Tensor], num_queries: int) -> float:
    """Top-1 over num_queries queries; each rank counts its share: correct(rows) -> correct predictions among rows.

    Counts are summed over ranks, so every rank gets the same number (count / num_queries, which
    is bit for bit the mean of the 0/1 hits a single process took).
    """
    rows = dist.share(num_queries)
    hits = correct(rows) if len(rows) else torch.zeros((), dtype=torch.long)
    return (dist.sum_across_ranks(hits).float() / num_queries).item()


def loo_sample(num_items: int) -> torch.Tensor:
    """The train rows leave-one-out kNN scores: at most LOO_SAMPLE, fixed (its own generator, not the global RNG)."""
    return torch.randperm(num_items, generator=torch.Generator().manual_seed(0))[:LOO_SAMPLE]
