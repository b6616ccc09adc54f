"""Batched augmentation policies of the SupCon paper, with independent random parameters per sample.

Every policy is an `nn.Module` that takes a whole uint8 batch `[B, C, H, W]` (C = 1 or 3) on the
training device and returns float32 `[B, C, S, S]` in [0, 1]; normalisation happens elsewhere.
Random parameters are drawn from torch's global CPU generator (so `torch.manual_seed` fixes them,
and CPU and CUDA runs draw the same ones) and moved to the batch's device.

Policies (`AUGMENTATIONS`):
- `none`: uint8 -> float; resize the shorter side to S and centre-crop when the size differs.
- `basic`: random resized crop + horizontal flip. This is the reference SupContrast `main_ce.py`
  training transform, and unlike pad-and-crop it also serves inputs larger than S.
- `simaugment`: crop + flip, then SimCLR colour distortion: colour jitter of strength s with
  p = 0.8 (brightness, contrast, saturation 0.8 s, hue 0.2 s, in a random order per sample),
  random grayscale p = 0.2, optional Gaussian blur p = 0.5 (kernel 10% of S, sigma in [0.1, 2]).
- `autoaugment`: crop + flip, then the AutoAugment ImageNet policy, one sub-policy per sample.
- `randaugment`: crop + flip, then RandAugment (N ops drawn per sample, magnitude M of 30).
- `stacked_randaugment`: crop + flip, RandAugment, then SimAugment's colour distortion. This is
  our reading of the paper's "Stacked RandAugment": RandAugment stacked with SimCLR's colour
  distortion, as in the InfoMin augmentation (Tian et al., 2020).

Grayscale input (C = 1): colour jitter uses brightness and contrast only (saturation and hue are
undefined for one channel), random grayscale is a no-op, and the policy op `Color` (saturation) is
the identity, as in torchvision and PIL. Everything else works channel-wise, with no detour
through 3 channels.

Library code versus hand-written: kornia's AutoAugment and RandAugment draw one sub-policy per
batch and its ColorJitter one op order per batch, so those are written here with per-sample
choices; the policy ops themselves are torchvision's functional ops applied to groups of samples
that drew the same op. Crop, flip and jitter are batched tensor code (one `grid_sample` for crop
and flip), which `bench/bench_augment.py` measures against kornia and the PIL reference.
"""

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as tvf

from pipeline.errors import ConfigError
from pipeline.registry import Registry

AUGMENTATIONS: Registry[Callable[["AugmentSpec"], nn.Module]] = Registry("augmentation")

_RATIO = (3.0 / 4.0, 4.0 / 3.0)  # torchvision RandomResizedCrop's aspect-ratio range
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision rgb_to_grayscale (ITU-R 601-2 luma)


@dataclass(frozen=True)
class AugmentSpec:
    """What a policy constructor needs; `build_augmentation` validates it once."""

    image_size: int
    """Side S of the square output."""
    channels: int
    """Input and output channels, 1 or 3."""
    strength: float = 0.5
    """Colour-jitter strength s (SimCLR): 0.5 gives ColorJitter(0.4, 0.4, 0.4, 0.1)."""
    crop_scale: tuple[float, float] = (0.2, 1.0)
    """Area fraction range of the random resized crop."""
    blur: bool = False
    """Gaussian blur in the colour distortion (SimCLR uses it for ImageNet-sized images)."""
    randaugment_n: int = 2
    """RandAugment: ops applied per sample."""
    randaugment_m: int = 9
    """RandAugment: magnitude on torchvision's 0..30 scale."""


def _check_spec(spec: AugmentSpec) -> None:
    """Raise ConfigError naming the first invalid field."""
    lo, hi = spec.crop_scale
    checks = [
        ("image_size", spec.image_size, spec.image_size >= 1, "an integer >= 1"),
        ("channels", spec.channels, spec.channels in (1, 3), "1 or 3"),
        ("strength", spec.strength, spec.strength >= 0, "a number >= 0"),
        ("crop_scale", spec.crop_scale, 0 < lo <= hi <= 1, "(lo, hi) with 0 < lo <= hi <= 1"),
        ("randaugment_n", spec.randaugment_n, spec.randaugment_n >= 0, "an integer >= 0"),
        ("randaugment_m", spec.randaugment_m, 0 <= spec.randaugment_m <= 30, "an integer in [0, 30]"),
    ]
    for key, value, ok, allowed in checks:
        if not ok:
            raise ConfigError(key, value, allowed)


def build_augmentation(
    policy: str,
    *,
    image_size: int,
    channels: int,
    strength: float = 0.5,
    crop_scale: tuple[float, float] = (0.2, 1.0),
    blur: bool = False,
    randaugment_n: int = 2,
    randaugment_m: int = 9,
) -> nn.Module:
    """The named policy as a module: uint8 [B, C, H, W] -> float32 [B, C, S, S] in [0, 1].

    Raises KeyError listing the registered names for an unknown policy.
    """
    constructor = AUGMENTATIONS.get(policy)
    spec = AugmentSpec(image_size, channels, strength, tuple(crop_scale), blur, randaugment_n, randaugment_m)
    _check_spec(spec)
    return constructor(spec)


def eval_transform(image_size: int, channels: int) -> nn.Module:
    """The deterministic `none` policy: uint8 [B, C, H, W] -> float32 [B, C, S, S]."""
    return build_augmentation("none", image_size=image_size, channels=channels)


class MultiView(nn.Module):
    """Independently augmented views: uint8 [B, C, H, W] -> float32 [B, V, C, S, S]."""

    def __init__(self, transform: nn.Module, n_views: int) -> None:
        super().__init__()
        if n_views < 1:
            raise ConfigError("n_views", n_views, "an integer >= 1")
        self.transform, self.n_views = transform, n_views

    def forward(self, images: Tensor) -> Tensor:
        # One call on [B * V] rows: per-sample randomness makes the views independent, and one big
        # batch is cheaper than V small ones. repeat_interleave keeps an image's views adjacent.
        views = self.transform(images.repeat_interleave(self.n_views, dim=0))
        return views.view(images.shape[0], self.n_views, *views.shape[1:])


# --------------------------------------------------------------------------- random parameters


def _uniform(n: int, low: float, high: float) -> Tensor:
    """[n] floats uniform in [low, high), from the global CPU generator (reproducible on any device)."""
    return torch.rand(n) * (high - low) + low


def _coin(n: int, p: float) -> Tensor:
    """[n] bools, each True with probability p."""
    return torch.rand(n) < p


def _apply_by_code(
    images: Tensor, codes: Tensor, fn: Callable[[int, Tensor, Tensor], Tensor], *, inplace: bool = False
) -> Tensor:
    """Run `fn(code, images[rows], rows)` on each group of samples sharing a code; -1 means untouched.

    images: [N, ...]; codes: [N] int64 on CPU; `rows` passed to fn are CPU indices, for picking the
    group's per-sample parameters. Grouping keeps per-sample choices while each op runs once per
    group on a batch, which torchvision's functional ops (scalar parameters) need. `inplace` skips
    the copy of `images` for callers that own it (each copy costs as much as a cheap op).
    """
    out = images if inplace else images.clone()
    for code in codes.unique().tolist():
        if code < 0:
            continue
        rows_cpu = (codes == code).nonzero().squeeze(1)
        rows = rows_cpu.to(images.device)
        out[rows] = fn(code, images[rows], rows_cpu)
    return out


# --------------------------------------------------------------------------- conversions


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


# --------------------------------------------------------------------------- crop and flip


def sample_crop_boxes(n: int, height: int, width: int, scale: tuple[float, float], attempts: int = 10) -> Tensor:
    """torchvision's RandomResizedCrop.get_params for n samples at once: [n, 4] (top, left, h, w).

    Each sample takes its first of `attempts` draws that fits (area fraction in `scale`, log-uniform
    aspect ratio in (3/4, 4/3)); samples with none fall back to the central crop, clamped in ratio.
    """
    area = height * width * _uniform(n * attempts, *scale).view(n, attempts)
    log_lo, log_hi = math.log(_RATIO[0]), math.log(_RATIO[1])
    ratio = torch.exp(_uniform(n * attempts, log_lo, log_hi).view(n, attempts))
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
        grid = crop_flip_grid(boxes, _coin(n, 0.5), height, width, self.image_size)
        return resized_crop_flip(x, grid)


# --------------------------------------------------------------------------- colour distortion


def _gray(x: Tensor) -> Tensor:
    """Luma [N, 1, H, W] of RGB [N, 3, H, W] (a 1-channel input is returned as is)."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (r * _GRAY_WEIGHTS[0] + g * _GRAY_WEIGHTS[1] + b * _GRAY_WEIGHTS[2]).unsqueeze(1)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """factor * x + (1 - factor) * other, clamped to [0, 1]; factor [N] per sample."""
    f = factor.view(-1, 1, 1, 1)
    return (x * f + other * (1 - f)).clamp_(0.0, 1.0)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """Per-sample brightness (torchvision's blend with black, i.e. a scaling): x [N, C, H, W], factor [N] >= 0."""
    return (x * factor.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Per-sample contrast (blend with the mean luma of the image): x [N, C, H, W], factor [N]."""
    return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Per-sample saturation (blend with the luma image): x [N, 3, H, W], factor [N]."""
    return _blend(x, _gray(x), factor)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Per-sample hue rotation in HSV by `shift` turns: x [N, 3, H, W], shift [N] in [-0.5, 0.5].

    Same result as torchvision's adjust_hue (RGB -> HSV -> RGB) up to float rounding, in fewer
    passes: hue from the max channel's index, and the closed-form HSV -> RGB
    rgb_k = v - (v - min) * clamp(min(t_k, 4 - t_k), 0, 1), t_k = (k + 6 h) mod 6, k = 5, 3, 1.
    """
    maxc, argmax = x.max(dim=1, keepdim=True)  # [N, 1, H, W]; ties give the same hue either way
    delta = maxc - x.amin(dim=1, keepdim=True)
    diff = x.roll(-1, dims=1) - x.roll(-2, dims=1)  # (g - b, b - r, r - g)
    # 6 * hue: the max channel's difference over the chroma, plus 2 per sector; grays (delta 0)
    # have diff 0 and get hue 0.
    hue6 = diff.gather(1, argmax).div_(delta.clamp(min=1e-12)).add_(2 * argmax + 6 * shift.view(-1, 1, 1, 1))
    sector = torch.tensor([5.0, 3.0, 1.0], device=x.device).view(1, 3, 1, 1)
    t = (sector + hue6).remainder_(6.0)
    return maxc - delta * torch.minimum(t, 4 - t).clamp_(0.0, 1.0)


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def sample_jitter(n: int, strength: float, channels: int) -> tuple[Tensor, Tensor]:
    """SimCLR colour-jitter draws: factors [n, 4] (brightness, contrast, saturation, hue) and
    order [n, k], a random permutation per sample of the k ops that apply (2 for grayscale input).
    """
    b = c = s = 0.8 * strength
    h = 0.2 * strength
    factors = torch.stack(
        [_uniform(n, max(0.0, 1 - b), 1 + b), _uniform(n, max(0.0, 1 - c), 1 + c),
         _uniform(n, max(0.0, 1 - s), 1 + s), _uniform(n, -h, h)],
        dim=1,
    )
    k = 4 if channels == 3 else 2
    order = torch.rand(n, k).argsort(dim=1)  # torchvision ColorJitter draws randperm(4) per call
    return factors, order


def color_jitter(x: Tensor, factors: Tensor, order: Tensor) -> Tensor:
    """Apply the jitter ops in each sample's own order: x [N, C, H, W], factors [N, 4], order [N, k].

    Rows of `order` set to -1 are left untouched (jitter not applied to that sample).
    """

    def jitter(op: int, xs: Tensor, rows: Tensor) -> Tensor:
        return _JITTER_OPS[op](xs, factors[rows, op].to(xs.device))

    x = x.clone()
    for step in range(order.shape[1]):
        x = _apply_by_code(x, order[:, step], jitter, inplace=True)
    return x


def random_grayscale(x: Tensor, apply: Tensor) -> Tensor:
    """Replace RGB by its luma in the samples where `apply` [N] (CPU bool) is True; no-op for C = 1."""
    if x.shape[1] == 1:
        return x
    mask = apply.to(x.device).view(-1, 1, 1, 1)
    return torch.where(mask, _gray(x).expand_as(x), x)


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Per-sample separable Gaussian blur with reflect padding: x [N, C, H, W], sigma [N] on x's device."""
    n, c, height, width = x.shape
    half = kernel_size // 2
    t = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - half
    kernel = torch.exp(-0.5 * (t / sigma.view(-1, 1)) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # [N * C, k]
    # Grouped convolution: each (sample, channel) plane is its own group with its own kernel.
    y = nnf.pad(x.reshape(1, n * c, height, width), (half, half, half, half), mode="reflect")
    y = nnf.conv2d(y, kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    y = nnf.conv2d(y, kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    return y.view(n, c, height, width)


class ColorDistortion(nn.Module):
    """SimCLR colour distortion on float [N, C, S, S]: jitter (p=0.8), grayscale (p=0.2), blur (p=0.5)."""

    def __init__(self, channels: int, strength: float, blur_kernel: int | None) -> None:
        super().__init__()
        self.channels, self.strength, self.blur_kernel = channels, strength, blur_kernel

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        if self.strength > 0:
            factors, order = sample_jitter(n, self.strength, self.channels)
            order[~_coin(n, 0.8)] = -1
            x = color_jitter(x, factors, order)
        x = random_grayscale(x, _coin(n, 0.2))
        if self.blur_kernel is not None:
            x = self._blur(x)
        return x

    def _blur(self, x: Tensor) -> Tensor:
        """Gaussian blur with sigma ~ U(0.1, 2) on the samples whose p = 0.5 coin came up."""
        n = x.shape[0]
        sigma = _uniform(n, 0.1, 2.0)

        def blur(_: int, xs: Tensor, rows: Tensor) -> Tensor:
            return gaussian_blur(xs, sigma[rows].to(xs.device), self.blur_kernel)

        return _apply_by_code(x, _coin(n, 0.5).long() - 1, blur)


def _blur_kernel(image_size: int) -> int:
    """SimCLR's kernel: 10% of the image side, odd, at least 3."""
    return max(3, int(0.1 * image_size) // 2 * 2 + 1)


# --------------------------------------------------------------------------- AutoAugment / RandAugment ops

# (op, probability, magnitude bin) pairs of the AutoAugment ImageNet policy (Cubuk et al., 2019),
# as in torchvision's AutoAugmentPolicy.IMAGENET.
IMAGENET_POLICY = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)), (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, None)), (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)), (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)), (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
    (("Equalize", 0.0, None), ("Equalize", 0.8, None)), (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)), (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)), (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, None)), (("Color", 0.4, 0), ("Equalize", 0.6, None)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)), (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
)  # fmt: skip

RANDAUGMENT_OPS = (
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
    "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
)  # fmt: skip

SIGNED_OPS = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness"}


def op_magnitude(name: str, level: int, bins: int, height: int, width: int) -> float:
    """torchvision's magnitude for `name` at bin `level` of `bins` (10 for AutoAugment, 31 for RandAugment)."""
    frac = level / (bins - 1)
    if name in ("ShearX", "ShearY"):
        return 0.3 * frac
    if name in ("TranslateX", "TranslateY"):
        return 150.0 / 331.0 * (width if name == "TranslateX" else height) * frac
    if name == "Rotate":
        return 30.0 * frac
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return 0.9 * frac
    if name == "Posterize":
        return float(round(8 - 4 * frac))
    if name == "Solarize":
        return 1.0 - frac
    return 0.0


def apply_op(images: Tensor, name: str, magnitude: float) -> Tensor:
    """One AutoAugment/RandAugment op on uint8 [N, C, H, W], as torchvision applies it (nearest, fill 0)."""
    nearest = InterpolationMode.NEAREST
    if name in ("ShearX", "ShearY"):
        degrees = math.degrees(math.atan(magnitude))
        shear = [degrees, 0.0] if name == "ShearX" else [0.0, degrees]
        return tvf.affine(images, angle=0.0, translate=[0, 0], scale=1.0, shear=shear,
                          interpolation=nearest, fill=None, center=[0, 0])  # fmt: skip
    if name in ("TranslateX", "TranslateY"):
        shift = [int(magnitude), 0] if name == "TranslateX" else [0, int(magnitude)]
        return tvf.affine(images, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0],
                          interpolation=nearest, fill=None)  # fmt: skip
    simple = {
        "Identity": lambda: images,
        "Rotate": lambda: tvf.rotate(images, angle=magnitude, interpolation=nearest, fill=None),
        "Brightness": lambda: tvf.adjust_brightness(images, 1.0 + magnitude),
        "Color": lambda: tvf.adjust_saturation(images, 1.0 + magnitude),  # identity for C = 1
        "Contrast": lambda: tvf.adjust_contrast(images, 1.0 + magnitude),
        "Sharpness": lambda: tvf.adjust_sharpness(images, 1.0 + magnitude),
        "Posterize": lambda: tvf.posterize(images, int(magnitude)),
        "Solarize": lambda: tvf.solarize(images, 255.0 * magnitude),
        "AutoContrast": lambda: tvf.autocontrast(images),
        "Equalize": lambda: tvf.equalize(images),
        "Invert": lambda: tvf.invert(images),
    }
    return simple[name]()


@functools.lru_cache(maxsize=16)
def _op_table(names_levels: tuple[tuple[str, int | None], ...], bins: int, height: int, width: int):
    """Distinct signed ops and a code table: ops [(name, magnitude)], codes [len(names_levels), 2].

    codes[i, sign] indexes `ops` for entry i with a positive (0) or negated (1) magnitude;
    `Identity` gets -1 so that it costs nothing.
    """
    ops: list[tuple[str, float]] = []
    codes = torch.full((len(names_levels), 2), -1, dtype=torch.long)
    for i, (name, level) in enumerate(names_levels):
        magnitude = 0.0 if level is None else op_magnitude(name, level, bins, height, width)
        for sign in (0, 1):
            signed = -magnitude if (sign and name in SIGNED_OPS) else magnitude
            if name != "Identity":
                if (name, signed) not in ops:
                    ops.append((name, signed))
                codes[i, sign] = ops.index((name, signed))
    return tuple(ops), codes


Plan = tuple[tuple[tuple[str, float], ...], list[Tensor]]
"""(ops [(name, magnitude)], per-step codes [n] indexing ops, -1 = skip) for a batch of n."""


def sample_autoaugment(n: int, height: int, width: int) -> Plan:
    """AutoAugment ImageNet policy: a sub-policy, application coins and signs drawn per sample."""
    entries = tuple((name, level) for sub in IMAGENET_POLICY for name, _, level in sub)
    ops, table = _op_table(entries, 10, height, width)
    table = table.view(len(IMAGENET_POLICY), 2, 2)  # [sub-policy, step, sign]
    probs = torch.tensor([[p for _, p, _ in sub] for sub in IMAGENET_POLICY])
    sub = torch.randint(len(IMAGENET_POLICY), (n,))
    steps = []
    for step in range(2):
        applied = torch.rand(n) <= probs[sub, step]
        codes = table[sub, step, (torch.rand(n) <= 0.5).long()]
        steps.append(torch.where(applied, codes, -1))
    return ops, steps


def sample_randaugment(n: int, height: int, width: int, *, n_ops: int, magnitude: int) -> Plan:
    """RandAugment: `n_ops` ops drawn uniformly with replacement per sample, magnitude bin `magnitude` of 30."""
    entries = tuple((name, magnitude) for name in RANDAUGMENT_OPS)
    ops, table = _op_table(entries, 31, height, width)
    steps = []
    for _ in range(n_ops):
        op = torch.randint(len(RANDAUGMENT_OPS), (n,))
        steps.append(table[op, (torch.rand(n) <= 0.5).long()])
    return ops, steps


def apply_plan(images: Tensor, plan: Plan) -> Tensor:
    """Run a sampled plan on uint8 [N, C, H, W], each op once per group of samples that drew it."""
    ops, steps = plan
    images = images.clone()
    for codes in steps:
        images = _apply_by_code(images, codes, lambda code, xs, _: apply_op(xs, *ops[code]), inplace=True)
    return images


class PolicyOps(nn.Module):
    """A sampled AutoAugment / RandAugment plan on float [N, C, S, S] in [0, 1] (ops run on uint8)."""

    def __init__(self, sampler: Callable[[int, int, int], Plan]) -> None:
        super().__init__()
        self.sampler = sampler

    def forward(self, x: Tensor) -> Tensor:
        # Round-trip through uint8 so the ops (posterize, equalize, solarize) see the integer images
        # their policies were searched on.
        images = x.mul(255.0).round_().to(torch.uint8)
        plan = self.sampler(x.shape[0], x.shape[-2], x.shape[-1])
        return apply_plan(images, plan).float().div_(255.0)


# --------------------------------------------------------------------------- registered policies


@AUGMENTATIONS.register("none")
def _none(spec: AugmentSpec) -> nn.Module:
    return nn.Sequential(ToFloat(spec.channels), ResizeCenterCrop(spec.image_size))


@AUGMENTATIONS.register("basic")
def _basic(spec: AugmentSpec) -> nn.Module:
    return nn.Sequential(ToFloat(spec.channels), RandomResizedCropFlip(spec.image_size, spec.crop_scale))


def _color(spec: AugmentSpec) -> ColorDistortion:
    return ColorDistortion(spec.channels, spec.strength, _blur_kernel(spec.image_size) if spec.blur else None)


@AUGMENTATIONS.register("simaugment")
def _simaugment(spec: AugmentSpec) -> nn.Module:
    return nn.Sequential(_basic(spec), _color(spec))


@AUGMENTATIONS.register("autoaugment")
def _autoaugment(spec: AugmentSpec) -> nn.Module:
    return nn.Sequential(_basic(spec), PolicyOps(sample_autoaugment))


@AUGMENTATIONS.register("randaugment")
def _randaugment(spec: AugmentSpec) -> nn.Module:
    return nn.Sequential(_basic(spec), _randaugment_ops(spec))


def _randaugment_ops(spec: AugmentSpec) -> PolicyOps:
    sampler = functools.partial(sample_randaugment, n_ops=spec.randaugment_n, magnitude=spec.randaugment_m)
    return PolicyOps(sampler)


@AUGMENTATIONS.register("stacked_randaugment")
def _stacked_randaugment(spec: AugmentSpec) -> nn.Module:
    return nn.Sequential(_basic(spec), _randaugment_ops(spec), _color(spec))
