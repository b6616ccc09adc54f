"""The cross-entropy baseline: the same encoder and augmentation, trained end to end with CE."""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pipeline import dist, recipe
from pipeline.config import CrossEntropyConfig, ModelConfig
from pipeline.data import PreparedDataset, Split
from pipeline.engine import FitSpec, RunContext, fit
from pipeline.evaluate import topk_accuracy
from pipeline.models import build_ce_model
from pipeline.preprocess import Normalize, eval_preprocess, predict


def cross_entropy_loss_fn(
    model: nn.Module, augment: nn.Module, normalize: nn.Module, label_smoothing: float
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """images uint8 [B, C, H, W], labels [B] -> mean CE of one augmented view per image."""

    def loss_fn(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = model(normalize(augment(images)))
        return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)

    return loss_fn


def val_monitor(model: nn.Module, val: Split, *, preprocess: nn.Module, device: torch.device) -> Callable[[int], dict[str, float]]:
    """val top-1 after every epoch (cheap: one forward pass over the val split)."""

    def evaluate(epoch: int) -> dict[str, float]:
        if not dist.is_main_process():
            return {}
        logits = predict(model, val.images, preprocess=preprocess, device=device)
        return {"val/top1": topk_accuracy(logits, val.labels)}

    return evaluate


def train_cross_entropy(
    data: PreparedDataset,
    train: Split,
    *,
    model_config: ModelConfig,
    config: CrossEntropyConfig,
    run: RunContext,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train encoder + linear layer with CE on `train`; returns the (unwrapped) model and history."""
    torch.manual_seed(run.seed)
    device = run.device
    spec = recipe.model_spec(model_config, channels=data.channels, image_size=data.image_size)
    spec.update(num_classes=data.num_classes)
    model = build_ce_model(**spec)
    placed = run.wrap(model)
    normalize = Normalize(data.mean, data.std).to(device)
    augment = recipe.augmentation(config.augmentation, image_size=data.image_size, channels=data.channels).to(device)
    optimizer, scheduler = recipe.optimizer_and_schedule(
        model, config.optimizer, num_items=len(train.labels), batch_size=config.batch_size, epochs=config.epochs
    )
    preprocess = eval_preprocess(data.image_size, data.channels, data.mean, data.std).to(device)
    history = fit(
        FitSpec(
            name="ce",
            model=placed,
            optimizer=optimizer,
            scheduler=scheduler,
            loss_fn=cross_entropy_loss_fn(placed, augment, normalize, config.label_smoothing),
            inputs=train.images,
            labels=train.labels,
            batch_size=config.batch_size,
            epochs=config.epochs,
            seed=run.seed,
            device=device,
            checkpoint_path=run.checkpoint_path,
            spec={"kind": "ce", **spec},
            config=run.config,
            evaluate=val_monitor(model, data.val, preprocess=preprocess, device=device),
            on_epoch=run.on_epoch,
            run_id=run.run_id,
            machine=run.machine,
        ),
        resume=run.resume,
    )
    return model, history
