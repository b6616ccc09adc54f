"""Image files to uint8 tensors, and the two views taken of one decoded image: eval and random crop.

JPEG goes through torchvision.io.decode_jpeg (libjpeg-turbo on the CPU, nvjpeg on CUDA); other
formats through decode_image (PNG, WebP, GIF) or PIL (BMP, TIFF, PPM, ...). The format is told by
the file's first bytes, not its name: ImageNet's train set holds a PNG named .JPEG. EXIF orientation
is not applied, as neither PIL's Image.open nor torchvision's ImageFolder applies it.
"""

import io
import math
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms.v2 import functional as tvf

from pipeline.errors import UserError

_READ_MODES = {1: ImageReadMode.GRAY, 3: ImageReadMode.RGB}
_PIL_MODES = {1: "L", 3: "RGB"}
_JPEG_MAGIC = b"\xff\xd8\xff"
_ATTEMPTS = 10  # RandomResizedCrop's draws before its central fallback
_RATIO = (3.0 / 4.0, 4.0 / 3.0)
_LOG_RATIO = torch.log(torch.tensor(_RATIO))  # float32, as torchvision computes it: same draws to the bit
_CPU = torch.device("cpu")


def _reason(err: Exception) -> str:
    """One line of an error: torchvision's 'fn, file.cpp:123, message' shortened to the message."""
    if isinstance(err, UnidentifiedImageError):  # its text names an anonymous BytesIO, not the file
        return "not a format that torchvision or PIL reads"
    text = " ".join(str(err).split()) or type(err).__name__
    return re.sub(r"^\w+, \S+:\d+, ", "", text)


def read_encoded(path: Path) -> Tensor:
    """The file's bytes as uint8 [n], what decode_jpeg takes; a missing or empty file -> UserError."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot decode image ({_reason(err)})") from err
    if not data:
        raise UserError(f"{path}: cannot decode image (empty file)")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def is_jpeg(data: Tensor) -> bool:
    """Whether encoded bytes uint8 [n] start with a JPEG marker."""
    return data.numel() >= 3 and bytes(data[:3].tolist()) == _JPEG_MAGIC


def _decode_pil(data: Tensor, channels: int) -> Tensor:
    """Formats torchvision does not read: encoded uint8 [n] -> uint8 [C, H, W]."""
    with Image.open(io.BytesIO(data.numpy())) as image:
        pixels = torch.from_numpy(np.array(image.convert(_PIL_MODES[channels])))
    return pixels[None] if channels == 1 else pixels.permute(2, 0, 1).contiguous()


def _decode_cpu(data: Tensor, path: Path, channels: int) -> Tensor:
    mode = _READ_MODES[channels]
    try:
        if is_jpeg(data):
            return decode_jpeg(data, mode=mode)
        try:
            image = decode_image(data, mode=mode)
            return image[0] if image.ndim == 4 else image  # an animated GIF: its first frame
        except RuntimeError:
            return _decode_pil(data, channels)
    except (RuntimeError, ValueError, OSError, UnidentifiedImageError) as err:
        raise UserError(f"{path}: cannot decode image ({_reason(err)})") from err


def decode_bytes(data: Tensor, path: Path, channels: int, device: torch.device = _CPU) -> Tensor:
    """Encoded uint8 [n] -> uint8 [C, H, W] on `device`; `path` names the file in errors.

    On CUDA, JPEGs go through nvjpeg; those it refuses (CMYK, some progressive files) are decoded
    on the CPU and moved, as are other formats.
    """
    if device.type == "cuda" and is_jpeg(data):
        try:
            return decode_jpeg(data, mode=_READ_MODES[channels], device=device)
        except RuntimeError:
            pass  # libjpeg-turbo below either reads it or names the file
    return _decode_cpu(data, path, channels).to(device)


def decode_batch(data: list[Tensor], paths: list[str], channels: int, device: torch.device) -> list[Tensor]:
    """Encoded uint8 [n_i] each -> uint8 [C, H_i, W_i] each on `device`, JPEGs in one decode_jpeg call.

    On CUDA the one call is nvjpeg's batched decode; `paths` name the files in errors.
    """
    jpegs = [i for i, d in enumerate(data) if is_jpeg(d)]
    images: list[Tensor | None] = [None] * len(data)
    try:
        decoded = decode_jpeg([data[i] for i in jpegs], mode=_READ_MODES[channels], device=device) if jpegs else []
        for i, image in zip(jpegs, decoded):
            images[i] = image
    except RuntimeError:
        pass  # one file spoils the batched call: the loop below decodes one by one and names it
    return [decode_bytes(d, Path(p), channels, device) if im is None else im for d, p, im in zip(data, paths, images)]


def decode_file(path: Path, channels: int) -> Tensor:
    """The full image: uint8 [C, H, W], C = channels (1: grayscale, 3: RGB, converting gray and CMYK)."""
    return _decode_cpu(read_encoded(path), path, channels)


def size_of_encoded(data: Tensor, path: Path) -> tuple[int, int]:
    """(H, W) of encoded bytes uint8 [n], from the header alone (PIL opens lazily)."""
    try:
        with Image.open(io.BytesIO(data.numpy())) as image:
            return image.height, image.width
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise UserError(f"{path}: cannot decode image ({_reason(err)})") from err


def image_size_of(path: Path) -> tuple[int, int]:
    """(H, W) of an image file, from its header alone: no pixels are decoded."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise UserError(f"{path}: cannot decode image ({_reason(err)})") from err


def eval_view(image: Tensor, size: int, resize: int) -> Tensor:
    """uint8 [C, H, W] -> [C, size, size]: shorter side to `resize` (bilinear, antialiased), centre crop.

    The same calls as torchvision.transforms.v2 Resize(resize) + CenterCrop(size) on the tensor.
    """
    image = tvf.resize(image, [resize], antialias=True)
    return tvf.center_crop(image, [size, size])


def _one_box(generator: torch.Generator, height: int, width: int, scale: tuple[float, float]) -> list[int]:
    """torchvision RandomResizedCrop.get_params, line for line, drawing from `generator`."""
    area = height * width
    for _ in range(_ATTEMPTS):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        log_ratio = torch.empty(1).uniform_(_LOG_RATIO[0].item(), _LOG_RATIO[1].item(), generator=generator)
        aspect_ratio = torch.exp(log_ratio).item()
        w = round(math.sqrt(target_area * aspect_ratio))
        h = round(math.sqrt(target_area / aspect_ratio))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
            return [top, left, h, w]
    return _central_box(height, width)


def _central_box(height: int, width: int) -> list[int]:
    """The fallback: the whole image, trimmed to the aspect-ratio range, centred."""
    in_ratio = width / height
    h, w = height, width
    if in_ratio < _RATIO[0]:
        h = round(width / _RATIO[0])
    elif in_ratio > _RATIO[1]:
        w = round(height * _RATIO[1])
    return [(height - h) // 2, (width - w) // 2, h, w]


def crop_boxes(generator: torch.Generator, height: int, width: int, count: int, scale: tuple[float, float]) -> Tensor:
    """`count` independent RandomResizedCrop boxes in an H x W image: int64 [count, 4] (top, left, h, w).

    Area fraction uniform in `scale`, aspect ratio log-uniform in (3/4, 4/3), first of 10 draws that
    fits, else the central fallback. With the global RNG seeded like `generator`, the boxes equal
    successive RandomResizedCrop.get_params calls.
    """
    boxes = [_one_box(generator, height, width, scale) for _ in range(count)]
    return torch.tensor(boxes, dtype=torch.int64).view(count, 4)


def resized_crop(image: Tensor, box, size: int) -> Tensor:
    """uint8 [C, H, W] -> uint8 [C, size, size]: the box (top, left, h, w) resized, bilinear antialiased."""
    top, left, h, w = (int(v) for v in box)
    return tvf.resized_crop(image, top, left, h, w, [size, size], antialias=True)
