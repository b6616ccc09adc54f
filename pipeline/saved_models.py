"""Trained models rebuilt from their checkpoints (the spec each one carries), placed on a device."""

from pathlib import Path

import torch
from torch import nn

from pipeline import checkpoint, provenance
from pipeline.augment import eval_transform
from pipeline.data import PreparedDataset
from pipeline.device import place_model
from pipeline.errors import UserError
from pipeline.methods.linear_probe import FrozenFeatures, probe_predictor
from pipeline.models import LinearClassifier, build_ce_model, build_supcon_model
from pipeline.preprocess import Normalize, eval_preprocess


def _finished(path: Path, kind: str) -> dict:
    state = checkpoint.load(path)
    if state is None or state["spec"].get("kind") != kind:
        raise UserError(f"{path}: no {kind} checkpoint there; run the stage that trains it first")
    return state


def finished_checkpoint(path: Path, kind: str, *, epochs: int, rerun: str) -> dict:
    """The `kind` checkpoint at `path`, if its run trained all `epochs` epochs (<kind>.epochs);
    otherwise one line naming the file and `rerun`, the command that writes it again."""
    state = checkpoint.load(path)
    if state is None or state["spec"].get("kind") != kind:
        raise UserError(f"{path}: no {kind} checkpoint there; run {rerun} first")
    if state["epoch"] != epochs:
        raise UserError(f"{path}: at epoch {state['epoch']}, but {kind}.epochs = {epochs} (an unfinished or stale run); rerun {rerun}")
    return state


def check_probe_encoder(probe: dict, probe_path: Path, encoder_path: Path, rerun: str) -> None:
    """The probe's run was keyed on the digest of the encoder checkpoint it was fitted on
    (linear_eval's inputs["encoder"]): another digest means the encoder was trained again since,
    and the probe's weights read features it never saw."""
    fitted_on = (probe.get("config") or {}).get("inputs", {}).get("encoder")
    if fitted_on != provenance.file_digest(encoder_path):
        raise UserError(f"{probe_path}: the linear probe was fitted on another encoder than {encoder_path}; rerun {rerun}")


def _rebuild(state: dict, build) -> nn.Module:
    model = build(**{k: v for k, v in state["spec"].items() if k != "kind"})
    model.load_state_dict(state["model"])
    return model


def load_encoder(path: Path, device: torch.device) -> nn.Module:
    """The encoder of a SupCon/SimCLR checkpoint, rebuilt from the config it carries."""
    return place_model(_rebuild(_finished(path, "supcon"), build_supcon_model).encoder, device)


def load_ce_classifier(model_dir: Path, data: PreparedDataset, device: torch.device) -> nn.Module:
    """The CE model selected on val (model_dir/best.pt, built from last.pt's spec) as uint8 images -> logits."""
    state = {**_finished(model_dir / checkpoint.LAST, "ce"), "model": _best(model_dir)["model"]}
    model = place_model(_rebuild(state, build_ce_model), device)
    return nn.Sequential(eval_preprocess(data.image_size, data.channels, data.mean, data.std).to(device), model).eval()


def _best(model_dir: Path) -> dict:
    best = checkpoint.best_so_far(model_dir / checkpoint.BEST)
    if best is None:
        raise UserError(f"{model_dir / checkpoint.BEST}: missing or unreadable; run the stage that trains {model_dir} first")
    return best


def load_probe_classifier(encoder_path: Path, probe_dir: Path, data: PreparedDataset, device: torch.device) -> nn.Module:
    """The SupCon encoder with the linear probe's best-on-val weights as uint8 images -> logits."""
    spec = _finished(probe_dir / checkpoint.LAST, "linear")["spec"]
    classifier = LinearClassifier(spec["in_dim"], spec["num_classes"])
    classifier.load_state_dict(_best(probe_dir)["model"])
    features = FrozenFeatures(load_encoder(encoder_path, device), Normalize(data.mean, data.std).to(device))
    to_float = eval_transform(data.image_size, data.channels).to(device)
    return probe_predictor(to_float, features, classifier.to(device))
