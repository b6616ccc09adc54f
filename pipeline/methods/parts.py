"""The contract between the training entry (pipeline/training.py) and a method.

The entry builds what every method shares from its config section (normalisation, the
augmentation policy, the evaluation transform) and hands it over as `MethodInputs`; the method
answers with `MethodParts`: only what differs (its model, its loss, its evaluation hook).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pipeline.config import ModelConfig
from pipeline.data import PreparedDataset, Split
from pipeline.run_context import RunContext


@dataclass
class MethodInputs:
    data: PreparedDataset
    train: Split
    config: Any
    """The method's config section (SupConConfig, CrossEntropyConfig, LinearConfig)."""
    run: RunContext
    augment: nn.Module
    """The section's augmentation policy, on the device: uint8 [B, C, H, W] -> float [B, C, S, S]."""
    normalize: nn.Module
    preprocess: nn.Module
    """Evaluation transform, on the device: uint8 images -> normalised float, no augmentation."""
    model_config: ModelConfig | None = None
    encoder: nn.Module | None = None
    """A trained encoder the method builds on (the linear probe's frozen one)."""


@dataclass
class MethodParts:
    name: str
    model: nn.Module
    """What trains: the optimizer steps its parameters and the checkpoint stores it (unplaced)."""
    loss: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    """(placed model, inputs, labels) -> scalar loss; inputs come from `inputs` in batches."""
    inputs: Any
    """The training inputs [N, ...] on the CPU, in train's label order: uint8 images (a tensor, or
    ImageFiles read from their files) or features."""
    spec: dict
    """How to rebuild `model` (stored in the checkpoint)."""
    evaluate: Callable[[int], dict[str, float]] | None = None
    """After epoch e (1-based): val metrics, or {}."""
    on_save: Callable[[int], None] | None = None
    """At each checkpoint after epoch e, just before last.pt is written (engine.Loop.on_save)."""
    predictor: Callable[[], nn.Module] | None = None
    """After training: uint8 images -> outputs (logits for classifiers); None: the model itself."""
    after_step: Callable[[], None] | None = None
    """After each optimizer step (the momentum-key queue's EMA update of its key encoder)."""
    state: nn.Module | None = None
    """Training state beside the model (the key queue and encoder): stored in the checkpoint and
    restored on resume; never part of the trained model."""
    views: int | None = None
    """Augmented views the loss takes per image (SupCon); a loader reading image files cuts that
    many random crops of each image. None: one."""
