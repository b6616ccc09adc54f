"""Per-channel normalisation and batched inference over uint8 images (a tensor, or ImageFiles
read from their files)."""

from collections.abc import Callable, Iterator, Sequence
from functools import partial

import torch
from torch import nn

from pipeline import dist
from pipeline.batches import sequential_batches
from pipeline.data.image_files import loader_workers, rows_of  # noqa: F401  (rows_of: re-exported)
from pipeline.device import autocast, to_input


class Normalize(nn.Module):
    """(x - mean) / std per channel, for float images in [0, 1]. x: [..., C, H, W]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _batches(inputs, batch_size: int) -> Iterator[torch.Tensor]:
    """inputs in order, batch by batch: slices of a tensor, or ImageFiles decoded by its loader."""
    if not isinstance(inputs, torch.Tensor):
        # workers decode the files in parallel: data.loader_workers, as training uses
        yield from inputs.eval_batches(batch_size, workers=loader_workers(inputs.workers), pin_memory=torch.cuda.is_available())
        return
    for batch in sequential_batches(inputs.shape[0], batch_size):
        yield inputs[batch]


@torch.no_grad()
def predict(
    model: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    *,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    batch_size: int = 512,
) -> torch.Tensor:
    """model(preprocess(batch)) over all inputs in order, as float32 on the CPU. inputs: [N, ...]
    (a tensor, or ImageFiles: uint8 eval views decoded from the files)."""
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    outputs = []
    for batch in _batches(inputs, batch_size):
        with autocast(device):
            outputs.append(model(preprocess(to_input(batch, device))).float().cpu())
    if isinstance(model, nn.Module):
        model.train(was_training)
    return torch.cat(outputs)


def predict_in_shares(model: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, **predict_kwargs) -> torch.Tensor:
    """predict(model, inputs, **predict_kwargs) over every row, on the CPU of every process: under
    torchrun each rank computes its contiguous share and the shares are gathered, so no rank waits
    minutes for another to run the whole split. One process: predict() itself."""
    return dist.map_shares(partial(predict, model, **predict_kwargs), inputs, rows_of).cpu()


def eval_preprocess(image_size: int, channels: int, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    """uint8 [B, C, H, W] -> normalised float [B, C, S, S] without augmentation (evaluation)."""
    from pipeline.augment import eval_transform  # augment imports this module's neighbours

    return nn.Sequential(eval_transform(image_size, channels), Normalize(mean, std))
