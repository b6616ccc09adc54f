"""Turn config sections into the objects a training run needs (optimizer+schedule, augmentation, model).

Shared by SupCon pretraining, the CE baseline and the linear probe so all three read the same
config the same way.
"""

import torch
from torch import nn

from pipeline import dist
from pipeline.augment import build_augmentation
from pipeline.config import AugmentConfig, ModelConfig, OptimizerConfig
from pipeline.engine import total_steps, warmup_steps
from pipeline.errors import ConfigError
from pipeline.optim import build_optimizer, build_scheduler, scaled_lr


def optimizer_and_schedule(
    model: nn.Module, config: OptimizerConfig, *, num_items: int, batch_size: int, epochs: int, section: str = ""
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimizer over model's parameters, and a per-step warm-up + decay schedule.

    `section` (supcon, ce, linear) names the keys of a warm-up longer than the run."""
    check_warmup(config, epochs=epochs, section=section)
    global_batch = batch_size * dist.world_size()
    lr = scaled_lr(config.lr, global_batch) if config.scale_lr else config.lr
    optimizer = build_optimizer(model, config.name, lr=lr, weight_decay=config.weight_decay, momentum=config.momentum, nesterov=config.nesterov)
    scheduler = build_scheduler(
        optimizer,
        total_steps=total_steps(num_items, batch_size, epochs),
        warmup_steps=warmup_steps(num_items, batch_size, config.warmup_epochs),
        schedule=config.schedule,
    )
    return optimizer, scheduler


def check_warmup(config: OptimizerConfig, *, epochs: int, section: str, epochs_from: str = "") -> None:
    """A warm-up must end within the run (the schedule is undefined past its last step): one line
    naming <section>.optimizer.warmup_epochs and where the run's `epochs` come from (`epochs_from`,
    by default <section>.epochs)."""
    if config.warmup_epochs <= epochs:  # then warm-up steps <= total steps at any steps per epoch
        return
    prefix = f"{section}." if section else ""
    origin = epochs_from or f"{prefix}epochs"
    raise ConfigError(f"{prefix}optimizer.warmup_epochs", config.warmup_epochs, f"at most the {epochs} epochs the run trains ({origin}): shorten the warm-up or lengthen the run")


def augmentation(config: AugmentConfig, *, image_size: int, channels: int, crop: bool = True) -> nn.Module:
    """The section's policy; crop False when the loader already cut the random resized crop."""
    return build_augmentation(
        config.policy,
        image_size=image_size,
        channels=channels,
        strength=config.strength,
        crop_scale=tuple(config.crop_scale),
        blur=config.blur,
        randaugment_n=config.randaugment_n,
        randaugment_m=config.randaugment_m,
        crop=crop,
    )


def model_spec(config: ModelConfig, *, channels: int, image_size: int) -> dict:
    """Keyword arguments that rebuild the encoder (stored in checkpoints)."""
    return {
        "encoder_name": config.encoder,
        "in_channels": channels,
        "image_size": image_size,
        "width": config.width,
        "depth": config.depth,
        "blocks": config.blocks,
    }
