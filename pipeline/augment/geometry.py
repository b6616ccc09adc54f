"""Crop, flip, resize and the uint8 -> float conversion, batched with per-sample random boxes."""

import math

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as tvf

from pipeline.augment.sampling import coin, uniform

_RATIO = (3.0 / 4.0, 4.0 / 3.0)  # torchvision RandomResizedCrop's aspect-ratio range


class ToFloat(nn.Module):
    """Check the input and scale it: uint8 [B, C, H, W] -> float32 [B, C, H, W] in [0, 1]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, images: Tensor) -> Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != self.channels:
            raise ValueError(
                f"expected uint8 images [B, {self.channels}, H, W], got {images.dtype} {tuple(images.shape)}"
            )
        return images.float().div_(255.0)


class ResizeCenterCrop(nn.Module):
    """Deterministic resize of the shorter side to S plus centre crop; identity when already S x S."""

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.image_size = image_size

    def forward(self, x: Tensor) -> Tensor:
        """x: float [B, C, H, W] -> [B, C, S, S]."""
        if x.shape[-2:] == (self.image_size, self.image_size):
            return x
        x = tvf.resize(x, [self.image_size], antialias=True)
        return tvf.center_crop(x, [self.image_size, self.image_size]).clamp_(0.0, 1.0)



def sample_crop_boxes(n: int, height: int, width: int, scale: tuple[float, float], attempts: int = 10) -> Tensor:
    """torchvision's RandomResizedCrop.get_params for n samples at once: [n, 4] (top, left, h, w).

    Each sample takes its first of `attempts` draws that fits (area fraction in `scale`, log-uniform
    aspect ratio in (3/4, 4/3)); samples with none fall back to the central crop, clamped in ratio.
    """
    area = height * width * uniform(n * attempts, *scale).view(n, attempts)
    log_lo, log_hi = math.log(_RATIO[0]), math.log(_RATIO[1])
    ratio = torch.exp(uniform(n * attempts, log_lo, log_hi).view(n, attempts))
    w = torch.sqrt(area * ratio).round()
    h = torch.sqrt(area / ratio).round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.float().argmax(dim=1, keepdim=True)  # argmax picks the first maximum
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    fall_h, fall_w = _fallback_size(height, width)
    found = fits.any(dim=1)
    h, w = torch.where(found, h, fall_h), torch.where(found, w, fall_w)
    top = torch.where(found, (torch.rand(n) * (height - h + 1)).floor(), (height - h) // 2)
    left = torch.where(found, (torch.rand(n) * (width - w + 1)).floor(), (width - w) // 2)
    return torch.stack([top, left, h, w], dim=1)


def _fallback_size(height: int, width: int) -> tuple[float, float]:
    """(h, w) of torchvision's central fallback crop: the whole image, clamped to the ratio range."""
    in_ratio = width / height
    if in_ratio < _RATIO[0]:
        return float(round(width / _RATIO[0])), float(width)
    if in_ratio > _RATIO[1]:
        return float(height), float(round(height * _RATIO[1]))
    return float(height), float(width)


def _source_coords(start: Tensor, length: Tensor, extent: int, size: int) -> Tensor:
    """Normalised sampling coordinates [n, S] along one axis for resizing the span [start, start + length).

    Same source positions as `interpolate(bilinear, align_corners=False)` on the cropped image,
    clamped to the crop's first and last pixel as interpolate clamps to the input's.
    """
    pixel = start[:, None] + (torch.arange(size) + 0.5) * (length[:, None] / size) - 0.5
    pixel = torch.minimum(torch.maximum(pixel, start[:, None]), (start + length - 1)[:, None])
    return (2 * pixel + 1) / extent - 1


def crop_flip_grid(boxes: Tensor, flip: Tensor, height: int, width: int, size: int) -> Tensor:
    """`grid_sample` grid [n, S, S, 2] that crops each box, resizes it to S x S and flips it where `flip`.

    boxes: [n, 4] (top, left, h, w) in pixels; flip: [n] bool.
    """
    top, left, h, w = boxes.unbind(1)
    gx = _source_coords(left, w, width, size)
    gx = torch.where(flip[:, None], gx.flip(1), gx)
    gy = _source_coords(top, h, height, size)
    n = len(boxes)
    return torch.stack([gx[:, None, :].expand(n, size, size), gy[:, :, None].expand(n, size, size)], dim=-1)


def resized_crop_flip(x: Tensor, grid: Tensor) -> Tensor:
    """Bilinear crop-resize-flip of every sample in one `grid_sample`: [N, C, H, W] -> [N, C, S, S].

    Matches torchvision's resized_crop(antialias=False) + hflip per sample. No antialiasing: crops
    are usually upscaled; shrinking a crop several-fold may alias.
    """
    return nnf.grid_sample(x, grid.to(x.device), mode="bilinear", padding_mode="border", align_corners=False)


class RandomResizedCropFlip(nn.Module):
    """RandomResizedCrop(S, scale) then RandomHorizontalFlip(0.5), per sample: [N, C, H, W] -> [N, C, S, S]."""

    def __init__(self, image_size: int, crop_scale: tuple[float, float]) -> None:
        super().__init__()
        self.image_size, self.crop_scale = image_size, crop_scale

    def forward(self, x: Tensor) -> Tensor:
        n, _, height, width = x.shape
        boxes = sample_crop_boxes(n, height, width, self.crop_scale)
        grid = crop_flip_grid(boxes, coin(n, 0.5), height, width, self.image_size)
        return resized_crop_flip(x, grid)



class RandomFlip(nn.Module):
    """RandomHorizontalFlip(0.5) per sample, for batches the loader already cropped: [N, C, S, S]."""

    def forward(self, x: Tensor) -> Tensor:
        flip = coin(x.shape[0], 0.5).to(x.device)
        return torch.where(flip[:, None, None, None], x.flip(-1), x)
