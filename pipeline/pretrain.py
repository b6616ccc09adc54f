"""Contrastive pretraining (SupCon, or SimCLR when labels are ignored) with a kNN monitor on val."""

from collections.abc import Callable

import torch
from torch import nn

from pipeline import dist, recipe
from pipeline.augment import MultiView
from pipeline.config import ModelConfig, SupConConfig
from pipeline.data import PreparedDataset, Split
from pipeline.engine import FitSpec, RunContext, fit
from pipeline.evaluate import knn_top1
from pipeline.losses import supcon_loss
from pipeline.models import build_supcon_model
from pipeline.preprocess import Normalize, eval_preprocess, predict


def contrastive_loss_fn(
    model: nn.Module, views: nn.Module, normalize: nn.Module, config: SupConConfig
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """images uint8 [B, C, H, W], labels [B] -> scalar loss over V augmented views per image."""
    use_labels = config.method == "supcon"

    def loss_fn(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
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

    return loss_fn


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


def pretrain_contrastive(
    data: PreparedDataset,
    train: Split,
    *,
    model_config: ModelConfig,
    config: SupConConfig,
    run: RunContext,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train encoder + projection head on `train`; returns the (unwrapped) model and the history."""
    torch.manual_seed(run.seed)
    device = run.device
    spec = recipe.model_spec(model_config, channels=data.channels, image_size=data.image_size)
    spec.update(head=model_config.head, feat_dim=model_config.feat_dim)
    model = build_supcon_model(**spec)
    placed = run.wrap(model)
    normalize = Normalize(data.mean, data.std).to(device)
    augment = recipe.augmentation(config.augmentation, image_size=data.image_size, channels=data.channels)
    views = MultiView(augment, config.views).to(device)
    optimizer, scheduler = recipe.optimizer_and_schedule(
        model, config.optimizer, num_items=len(train.labels), batch_size=config.batch_size, epochs=config.epochs
    )
    preprocess = eval_preprocess(data.image_size, data.channels, data.mean, data.std).to(device)
    monitor = knn_monitor(
        model.encoder, train, data.val, preprocess=preprocess, device=device,
        num_classes=data.num_classes, k=config.knn_k, every=config.knn_every, epochs=config.epochs,
    )  # fmt: skip
    history = fit(
        FitSpec(
            name=config.method,
            model=placed,
            optimizer=optimizer,
            scheduler=scheduler,
            loss_fn=contrastive_loss_fn(placed, views, normalize, config),
            inputs=train.images,
            labels=train.labels,
            batch_size=config.batch_size,
            epochs=config.epochs,
            seed=run.seed,
            device=device,
            checkpoint_path=run.checkpoint_path,
            spec={"kind": "supcon", **spec},
            config=run.config,
            evaluate=monitor,
            on_epoch=run.on_epoch,
            run_id=run.run_id,
            machine=run.machine,
        ),
        resume=run.resume,
    )
    return model, history
