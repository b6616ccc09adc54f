"""The one way to train: `train(section, ...)` runs a method from its config section.

Stages, reduced-data cells, sweep trials, tests and benchmarks all call it. It builds what every
method shares (seeded start, normalisation, the section's augmentation, placement, optimizer
and schedule, a batch source) and asks the method (pipeline/methods) only for what differs:
its model, its loss and its evaluation hook.
"""

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from pipeline import recipe
from pipeline.batches import BatchSource, TensorBatches
from pipeline.config import ModelConfig
from pipeline.data import PreparedDataset, Split
from pipeline.data.image_files import ImageFiles
from pipeline.device import place_model
from pipeline.engine import Loop, fit
from pipeline.methods import MethodInputs, MethodParts, method
from pipeline.errors import ConfigError
from pipeline.preprocess import Normalize, eval_preprocess, loader_workers
from pipeline.run_context import RunContext


@dataclass
class Trained:
    model: nn.Module
    """What trained, unwrapped (SupConModel, CE model, or the probe's linear layer)."""
    predictor: nn.Module
    """uint8 images [B, C, H, W] -> outputs: logits for CE and the probe, projections for SupCon."""
    history: list[dict[str, float]]


def train(
    section: str,
    data: PreparedDataset,
    train_split: Split,
    *,
    config,
    run: RunContext,
    model_config: ModelConfig | None = None,
    encoder: nn.Module | None = None,
) -> Trained:
    """Train method `section` (supcon, ce, linear) configured by `config` (that section) on train_split.

    The test split is never read: callers score it once with the returned predictor.
    """
    setup = method(section)
    torch.manual_seed(run.seed)  # the model's initialisation is the first draw
    device = run.device
    shape = {"image_size": data.image_size, "channels": data.channels}
    from_files = isinstance(train_split.images, ImageFiles)  # the loader cuts the random crops
    parts = setup(
        MethodInputs(
            data=data, train=train_split, config=config, run=run, model_config=model_config, encoder=encoder,
            augment=recipe.augmentation(config.augmentation, **shape, crop=not from_files).to(device),
            normalize=Normalize(data.mean, data.std).to(device),
            preprocess=eval_preprocess(data.image_size, data.channels, data.mean, data.std).to(device),
        )
    )  # fmt: skip
    placed = run.wrap(parts.model) if run.wrap is not None else place_model(parts.model, device)
    optimizer, scheduler = recipe.optimizer_and_schedule(
        parts.model, config.optimizer, num_items=len(train_split.labels), batch_size=config.batch_size, epochs=config.epochs, section=section
    )
    loop = Loop(
        name=parts.name,
        model=placed,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=partial(parts.loss, placed),
        batches=batch_source(parts, train_split.labels, config, section=section, seed=run.seed, device=device),
        epochs=config.epochs,
        spec=parts.spec,
        evaluate=parts.evaluate,
        on_save=parts.on_save,
        after_step=parts.after_step,
        state=parts.state,
    )
    history = fit(loop, run)
    predictor = parts.predictor() if parts.predictor is not None else parts.model.eval()
    return Trained(model=parts.model, predictor=predictor, history=history)


def batch_source(parts: MethodParts, labels: torch.Tensor, config, *, section: str, seed: int, device: torch.device) -> BatchSource:
    """In-memory tensors (images or features) in shuffled batches, or image files decoded by a
    loader that cuts `parts.views` random resized crops of each full image (one without views)."""
    if not isinstance(parts.inputs, ImageFiles):
        return TensorBatches(parts.inputs, labels, batch_size=config.batch_size, seed=seed)
    from pipeline.data.jpeg_batches import JpegBatches, default_decoder

    policy = config.augmentation.policy
    if policy == "none":
        raise ConfigError(f"{section}.augmentation.policy", policy, "a policy with a random resized crop when images are read from files (data.storage files)")
    return JpegBatches(
        parts.inputs, labels, batch_size=config.batch_size, seed=seed, views=parts.views, crop_scale=tuple(config.augmentation.crop_scale),
        workers=loader_workers(parts.inputs.workers), pin_memory=device.type == "cuda", decoder=default_decoder(device), device=device,
    )  # fmt: skip
