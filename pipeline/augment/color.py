"""SimCLR's colour distortion: jitter in a random order per sample, grayscale, Gaussian blur.

Grayscale input (C = 1): jitter uses brightness and contrast only (saturation and hue are
undefined for one channel) and random grayscale is a no-op, as in torchvision and PIL.
"""

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from pipeline.augment.sampling import apply_by_code, coin, uniform

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision rgb_to_grayscale (ITU-R 601-2 luma)


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
        [uniform(n, max(0.0, 1 - b), 1 + b), uniform(n, max(0.0, 1 - c), 1 + c),
         uniform(n, max(0.0, 1 - s), 1 + s), uniform(n, -h, h)],
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
        x = apply_by_code(x, order[:, step], jitter, inplace=True)
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
    # Each output is a convex combination of inputs in [0, 1], but float32 sums can overshoot by an ulp.
    return y.view(n, c, height, width).clamp_(0.0, 1.0)


class ColorDistortion(nn.Module):
    """SimCLR colour distortion on float [N, C, S, S]: jitter (p=0.8), grayscale (p=0.2), blur (p=0.5)."""

    def __init__(self, channels: int, strength: float, blur_kernel: int | None) -> None:
        super().__init__()
        self.channels, self.strength, self.blur_kernel = channels, strength, blur_kernel

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        if self.strength > 0:
            factors, order = sample_jitter(n, self.strength, self.channels)
            order[~coin(n, 0.8)] = -1
            x = color_jitter(x, factors, order)
        x = random_grayscale(x, coin(n, 0.2))
        if self.blur_kernel is not None:
            x = self._blur(x)
        return x

    def _blur(self, x: Tensor) -> Tensor:
        """Gaussian blur with sigma ~ U(0.1, 2) on the samples whose p = 0.5 coin came up."""
        n = x.shape[0]
        sigma = uniform(n, 0.1, 2.0)

        def blur(_: int, xs: Tensor, rows: Tensor) -> Tensor:
            return gaussian_blur(xs, sigma[rows].to(xs.device), self.blur_kernel)

        return apply_by_code(x, coin(n, 0.5).long() - 1, blur)


def _blur_kernel(image_size: int) -> int:
    """SimCLR's kernel: 10% of the image side, odd, at least 3."""
    return max(3, int(0.1 * image_size) // 2 * 2 + 1)

