"""Contrastive pretraining (SupCon, or SimCLR when labels are ignored) with a kNN monitor on val."""

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from pipeline import dist, recipe
from pipeline.augment import MultiView
from pipeline.data import Split
from pipeline.evaluate import knn_neighbours, knn_vote
from pipeline.device import memory_format
from pipeline.losses import supcon_loss
from pipeline.methods.parts import MethodInputs, MethodParts
from pipeline.models import build_supcon_model
from pipeline.preprocess import predict, predict_in_shares, rows_of

# Without a val split the monitor scores this many train images (a fixed sample) leave-one-out.
LOO_SAMPLE = 10_000


def contrastive(inputs: MethodInputs) -> MethodParts:
    """Encoder + projection head trained on V augmented views per image (section `supcon`)."""
    config, data = inputs.config, inputs.data
    spec = recipe.model_spec(inputs.model_config, channels=data.channels, image_size=data.image_size)
    spec.update(head=inputs.model_config.head, feat_dim=inputs.model_config.feat_dim)
    model = build_supcon_model(**spec)
    views = MultiView(inputs.augment, config.views).to(inputs.run.device)
    memory = key_memory(model, config, dim=spec["feat_dim"], num_items=len(inputs.train.labels), device=inputs.run.device)
    monitor = knn_monitor(
        model.encoder, inputs.train, data.val, preprocess=inputs.preprocess, device=inputs.run.device,
        num_classes=data.num_classes, k=config.knn_k, every=config.knn_every, epochs=config.epochs,
    )  # fmt: skip
    return MethodParts(
        name=config.method,
        model=model,
        loss=contrastive_loss(views, inputs.normalize, config, memory),
        inputs=inputs.train.images,
        spec={"kind": "supcon", **spec},
        evaluate=monitor,
        views=config.views,
        after_step=None if memory is None else partial(memory.after_step, model),
        state=memory,
    )


def key_memory(model: nn.Module, config, *, dim: int, num_items: int, device: torch.device):
    """supcon.memory's queue and key encoder on the device (a KeyMemory), or None when size is 0."""
    if config.memory.size == 0:
        return None
    from pipeline.methods.key_memory import KeyMemory, queue_size  # imported only when on (the run key's code digests)

    size = queue_size(config.memory.size, num_items)
    if size < config.memory.size and dist.is_main_process():
        print(f"supcon.memory.size {config.memory.size} is more than the {num_items} training images: the queue holds {size} keys")
    memory = KeyMemory(model, size=size, momentum=config.memory.momentum, dim=dim)
    return memory.to(device, memory_format=memory_format(device))


def contrastive_loss(views: nn.Module, normalize: nn.Module, config, memory=None) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]:
    """(model, uint8 images [B, C, H, W], labels [B]) -> scalar loss over V augmented views per
    image; with a KeyMemory, contrasted with its queue too (and the batch's keys enqueued)."""
    use_labels = config.method == "supcon"
    # across_ranks: under DDP this rank's anchors contrast against every rank's features
    options = {"temperature": config.temperature, "base_temperature": config.base_temperature, "variant": config.variant, "across_ranks": True}

    def loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        batch = views(images)  # [B, V, C, S, S] floats in [0, 1]
        size, count = batch.shape[:2]
        inputs = normalize(batch.flatten(0, 1))
        features = model(inputs).view(size, count, -1)  # [B, V, D], unit norm
        if memory is None:
            return supcon_loss(features, labels if use_labels else None, **options)
        return memory.loss(features, labels if use_labels else None, inputs, **options)

    return loss


def knn_monitor(
    encoder: nn.Module, train: Split, val: Split, *, preprocess: nn.Module, device: torch.device, num_classes: int, k: int, every: int, epochs: int
) -> Callable[[int], dict[str, float]]:
    """Every `every` epochs (and after the last), kNN top-1 of val against the train features.

    Without a val split: train/knn_top1_loo, a fixed sample of train images each against the rest
    of the train split. Under torchrun every rank embeds its share of the train images and keeps
    only that share of the bank on its device (ImageNet's whole bank is 10 GB in float32); the
    queries are embedded in shares and gathered, each rank finds their k nearest rows in its share,
    and the candidates are merged (sharded_knn). Every rank returns the same number, and no rank
    waits minutes on a barrier for another.
    """
    embed = partial(predict, encoder, preprocess=preprocess, device=device)
    sample = loo_sample(len(train)) if len(val) == 0 else None
    told = False

    def evaluate(epoch: int) -> dict[str, float]:
        nonlocal told
        if not (every > 0 and (epoch % every == 0 or epoch == epochs)):
            return {}
        share = dist.share(len(train))
        bank = embed(rows_of(train.images, share)).to(device)  # [N / W, D]: this rank's rows of the bank
        knn = partial(sharded_knn, bank, offset=int(share[0]) if len(share) else 0, labels=train.labels.to(device), num_classes=num_classes, k=k)
        if sample is None:
            queries = predict_in_shares(encoder, val.images, preprocess=preprocess, device=device).to(device)  # [Q, D] on every rank
            return {"val/knn_top1": top1(knn(queries), val.labels)}
        own = sample.to(device)
        # one process holds every row: the sample's features are rows of the bank
        queries = bank[own] if dist.world_size() == 1 else predict_in_shares(encoder, rows_of(train.images, sample), preprocess=preprocess, device=device).to(device)
        if not told and dist.is_main_process():
            print(
                f"no val split (data.val_fraction 0): the kNN monitor reports train/knn_top1_loo, the kNN top-1 of {len(sample)} "
                "fixed train images each against the rest of the train split (how well training data is fitted, not held-out accuracy)"
            )
        told = True
        return {"train/knn_top1_loo": top1(knn(queries, exclude=own), train.labels[sample])}

    return evaluate


def sharded_knn(
    bank: torch.Tensor, queries: torch.Tensor, *, offset: int, labels: torch.Tensor, num_classes: int, k: int, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """Class scores [Q, C] of every query against the whole bank, which each rank holds a share of.

    bank: [n, D], this rank's rows offset..offset+n of the bank; labels: [N] of the whole bank;
    queries: [Q, D], the same on every rank; exclude: [Q] whole-bank rows that may not vote
    (leave-one-out). Each rank's k nearest candidates are gathered and the k best kept, so the
    neighbours, and the votes, are those of one process holding the whole bank.
    """
    local = None
    if exclude is not None:
        local = exclude - offset
        local[(local < 0) | (local >= len(bank))] = -1  # another rank's row
    sims, rows = knn_neighbours(bank, queries, k=k, exclude=local)
    rows = rows + offset
    if dist.world_size() > 1:
        sims, rows = _merge_candidates(*_padded(sims, rows, k), k=k)
    return knn_vote(sims, labels[rows], num_classes=num_classes)


def _padded(sims: torch.Tensor, rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[Q, k'] -> [Q, k] with k' <= k (a share with fewer rows): padding never wins or votes."""
    missing = k - sims.shape[1]
    if missing <= 0:
        return sims, rows
    return F.pad(sims, (0, missing), value=-float("inf")), F.pad(rows, (0, missing), value=0)


def _merge_candidates(sims: torch.Tensor, rows: torch.Tensor, *, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's [Q, k] candidates -> the k most similar of all, most similar first."""
    every_sims = dist.gather_no_grad(sims.unsqueeze(0)).to(sims.device)  # [W, Q, k]
    every_rows = dist.gather_no_grad(rows.unsqueeze(0)).to(rows.device)
    sims, rows = every_sims.permute(1, 0, 2).flatten(1), every_rows.permute(1, 0, 2).flatten(1)  # [Q, W * k]
    best, index = sims.topk(k, dim=1)
    return best, rows.gather(1, index)


def top1(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """kNN top-1 from class scores [Q, C] and labels [Q]: correct / Q (as a mean of the 0/1 hits)."""
    return ((scores.argmax(1) == labels.to(scores.device)).sum().float() / len(labels)).item()


def loo_sample(num_items: int) -> torch.Tensor:
    """The train rows leave-one-out kNN scores: at most LOO_SAMPLE, fixed (its own generator, not the global RNG)."""
    return torch.randperm(num_items, generator=torch.Generator().manual_seed(0))[:LOO_SAMPLE]
