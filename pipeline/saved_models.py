"""Trained models rebuilt from their checkpoints (the spec each one carries), placed on a device."""

from pathlib import Path

import torch
from torch import nn

from pipeline import checkpoint
from pipeline.device import place_model
from pipeline.models import build_supcon_model


def load_encoder(path: Path, device: torch.device) -> nn.Module:
    """The encoder of a SupCon/SimCLR checkpoint, rebuilt from the config it carries."""
    state = checkpoint.load(path)
    kwargs = {k: v for k, v in state["spec"].items() if k != "kind"}
    model = build_supcon_model(**kwargs)
    model.load_state_dict(state["model"])
    return place_model(model.encoder, device)
