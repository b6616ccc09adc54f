"""Resize so the shorter side is `size`, then center-crop to size x size (torchvision's
Resize(size) + CenterCrop(size), bilinear with antialiasing) for arrays and for PIL images.
"""

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

_CHUNK = 4096  # images per interpolate call: bounds the float32 temporary to a few hundred MB


def _short_side_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) after scaling the shorter side to `size`, as torchvision rounds it (truncation)."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def _crop_box(height: int, width: int, size: int) -> tuple[int, int]:
    """Top-left corner of the centered size x size crop, rounded like torchvision."""
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """PIL image of any size -> size x size PIL image."""
    height, width = _short_side_shape(image.height, image.width, size)
    if (height, width) != (image.height, image.width):
        image = image.resize((width, height), Image.BILINEAR)
    top, left = _crop_box(height, width, size)
    return image.crop((left, top, left + size, top + size))


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, C, H, W] -> uint8 [N, C, size, size]; unchanged (no copy) if already that size."""
    n, _, height, width = images.shape
    if (height, width) == (size, size):
        return images
    new_h, new_w = _short_side_shape(height, width, size)
    top, left = _crop_box(new_h, new_w, size)
    out = np.empty((n, images.shape[1], size, size), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        batch = torch.from_numpy(images[start : start + _CHUNK].astype(np.float32))
        scaled = F.interpolate(batch, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
        scaled = scaled[:, :, top : top + size, left : left + size]
        out[start : start + _CHUNK] = scaled.round().clamp(0, 255).to(torch.uint8).numpy()
    return out
