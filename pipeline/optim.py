"""Optimizers by name (sgd, lars, rmsprop, adamw), the linear lr scaling rule, warmup + decay.

Weight decay applies to weights only: biases and normalisation parameters (every parameter with
ndim <= 1) get none, and LARS does not adapt their learning rate either (as SimCLR / SupCon's
TF LARS excludes batch norm), since their norms say nothing about a layer's scale.
"""

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

from pipeline.registry import Registry

OptimizerFactory = Callable[..., torch.optim.Optimizer]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")

SCHEDULES = ("cosine", "constant", "exponential")

# "exponential" decays smoothly to this fraction of the peak lr at the last step. The paper's
# linear stage (RMSProp, x0.97 every half epoch for 90 epochs) ends near 0.4%; tying the end
# point to total_steps instead keeps the shape the same for any epoch count.
EXPONENTIAL_FINAL = 0.01


def param_groups(model: nn.Module, weight_decay: float, **weight_options: Any) -> list[dict[str, Any]]:
    """Trainable parameters in two groups: weights (ndim > 1) with `weight_decay` and
    `weight_options`; biases and norm parameters (ndim <= 1) with no decay. Empty groups are dropped.
    """
    weights = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    others = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [
        {"params": weights, "weight_decay": weight_decay, **weight_options},
        {"params": others, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


@OPTIMIZERS.register("sgd")
def _sgd(
    model: nn.Module, *, lr: float, weight_decay: float, momentum: float, nesterov: bool
) -> torch.optim.Optimizer:
    return torch.optim.SGD(param_groups(model, weight_decay), lr=lr, momentum=momentum, nesterov=nesterov)


@OPTIMIZERS.register("lars")
def _lars(
    model: nn.Module, *, lr: float, weight_decay: float, momentum: float, nesterov: bool
) -> torch.optim.Optimizer:
    from timm.optim import Lars  # imported here: importing timm costs most of a second

    # timm adapts a group only if its weight_decay != 0 or always_adapt: force it on for weights
    # (so weight_decay=0 still gets LARS) and leave it off for the no-decay group.
    groups = param_groups(model, weight_decay, always_adapt=True)
    return Lars(groups, lr=lr, momentum=momentum, nesterov=nesterov, trust_coeff=0.001)


@OPTIMIZERS.register("rmsprop")
def _rmsprop(
    model: nn.Module, *, lr: float, weight_decay: float, momentum: float, nesterov: bool
) -> torch.optim.Optimizer:
    # The SupCon TF code's RMSProp: decay 0.9, momentum 0.9, epsilon 1.0. TF adds epsilon inside
    # the sqrt and torch outside; with epsilon 1.0 both damp steps where gradients are small.
    return torch.optim.RMSprop(param_groups(model, weight_decay), lr=lr, alpha=0.9, eps=1.0, momentum=momentum)


@OPTIMIZERS.register("adamw")
def _adamw(
    model: nn.Module, *, lr: float, weight_decay: float, momentum: float, nesterov: bool
) -> torch.optim.Optimizer:
    # Adam's own betas (0.9, 0.999) replace `momentum`, which is therefore not used here.
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr)


def build_optimizer(
    model: nn.Module,
    name: str,
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """Optimizer `name` over `model`'s trainable parameters, no decay on biases and norm parameters.

    `momentum` is used by sgd, lars and rmsprop (adamw has its betas); `nesterov` only by sgd and
    lars. Unknown names raise KeyError listing the registered optimizers.
    """
    factory = OPTIMIZERS.get(name)
    if lr <= 0:
        raise ValueError(f"lr = {lr!r} is not allowed: expected a number > 0")
    if weight_decay < 0:
        raise ValueError(f"weight_decay = {weight_decay!r} is not allowed: expected a number >= 0")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum = {momentum!r} is not allowed: expected a number in [0, 1)")
    if nesterov and (name not in ("sgd", "lars") or momentum == 0):
        raise ValueError(
            f"nesterov = True is not allowed with optimizer {name!r} and momentum {momentum}: "
            "expected sgd or lars with momentum > 0"
        )
    return factory(model, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov)


def scaled_lr(base_lr: float, batch_size: int, reference: int = 256) -> float:
    """Linear scaling rule (Goyal et al.): the paper quotes lr per 256 images."""
    return base_lr * batch_size / reference


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, schedule: str = "cosine") -> float:
    """Factor on the peak lr at optimizer step `step` (0-based), in [0, 1].

    Linear warmup over the first `warmup_steps` steps ((step + 1) / (warmup_steps + 1), so the
    first step already moves), then over the remaining steps:
      cosine       0.5 * (1 + cos(pi * progress)), 1 -> 0 at step total_steps
      constant     1
      exponential  EXPONENTIAL_FINAL ** progress, 1 -> 1% at step total_steps
    where progress = (step - warmup_steps) / (total_steps - warmup_steps), clipped to [0, 1].
    """
    _check_schedule(total_steps, warmup_steps, schedule)
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "exponential":
        return EXPONENTIAL_FINAL**progress
    return 1.0


def _check_schedule(total_steps: int, warmup_steps: int, schedule: str) -> None:
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule = {schedule!r} is not allowed: expected one of {', '.join(SCHEDULES)}")
    if total_steps < 1:
        raise ValueError(f"total_steps = {total_steps!r} is not allowed: expected an integer >= 1")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"warmup_steps = {warmup_steps!r} is not allowed: expected 0 <= warmup_steps <= {total_steps}"
        )


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int, schedule: str = "cosine"
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step scheduler: call `.step()` after every optimizer step. lr = peak * lr_multiplier."""
    _check_schedule(total_steps, warmup_steps, schedule)
    fn = partial(lr_multiplier, total_steps=total_steps, warmup_steps=warmup_steps, schedule=schedule)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
