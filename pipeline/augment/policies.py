"""The policy registry: names in params.yaml -> modules, the spec they are built from, MultiView."""

import functools
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from pipeline.augment.color import ColorDistortion, _blur_kernel
from pipeline.augment.geometry import RandomFlip, RandomResizedCropFlip, ResizeCenterCrop, ToFloat
from pipeline.augment.policy_ops import PolicyOps, sample_autoaugment, sample_randaugment
from pipeline.errors import ConfigError
from pipeline.registry import Registry

AUGMENTATIONS: Registry[Callable[["AugmentSpec"], nn.Module]] = Registry("augmentation")


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
    crop: bool = True
    """False when the loader already took the random resized crop (images read from files crop
    the full image while decoding): the policy keeps only the flip of its crop step."""


def _check_spec(spec: AugmentSpec) -> None:
    """Raise ConfigError naming the first invalid field."""
    lo, hi = spec.crop_scale
    checks = [
        ("image_size", spec.image_size, spec.image_size >= 1, "an integer >= 1"),
        ("channels", spec.channels, spec.channels in (1, 3), "1 or 3"),
        ("strength", spec.strength, spec.strength >= 0, "a number >= 0"),
        ("crop_scale", spec.crop_scale, 0 < lo <= hi <= 1, "(lo, hi) with 0 < lo <= hi <= 1"),
        ("randaugment_n", spec.randaugment_n, spec.randaugment_n >= 1, "an integer >= 1"),
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
    crop: bool = True,
) -> nn.Module:
    """The named policy as a module: uint8 [B, C, H, W] -> float32 [B, C, S, S] in [0, 1].

    Raises KeyError listing the registered names for an unknown policy.
    """
    constructor = AUGMENTATIONS.get(policy)
    spec = AugmentSpec(image_size, channels, strength, tuple(crop_scale), blur, randaugment_n, randaugment_m, crop)
    _check_spec(spec)
    return constructor(spec)


def eval_transform(image_size: int, channels: int) -> nn.Module:
    """The deterministic `none` policy: uint8 [B, C, H, W] -> float32 [B, C, S, S]."""
    return build_augmentation("none", image_size=image_size, channels=channels)


class MultiView(nn.Module):
    """Independently augmented views: uint8 [B, C, H, W] -> float32 [B, V, C, S, S].

    A loader that already cut the V crops (images read from files) hands over uint8
    [B, V, C, S, S]; the rest of the policy then runs on each of them.
    """

    def __init__(self, transform: nn.Module, n_views: int) -> None:
        super().__init__()
        if n_views < 1:
            raise ConfigError("n_views", n_views, "an integer >= 1")
        self.transform, self.n_views = transform, n_views

    def forward(self, images: Tensor) -> Tensor:
        if images.ndim == 5:
            views = self.transform(images.flatten(0, 1))
            return views.view(*images.shape[:2], *views.shape[1:])
        # One call on [B * V] rows: per-sample randomness makes the views independent, and one big
        # batch is cheaper than V small ones. repeat_interleave keeps an image's views adjacent.
        views = self.transform(images.repeat_interleave(self.n_views, dim=0))
        return views.view(images.shape[0], self.n_views, *views.shape[1:])


@AUGMENTATIONS.register("none")
def _none(spec: AugmentSpec) -> nn.Module:
    return nn.Sequential(ToFloat(spec.channels), ResizeCenterCrop(spec.image_size))


@AUGMENTATIONS.register("basic")
def _basic(spec: AugmentSpec) -> nn.Module:
    crop = RandomResizedCropFlip(spec.image_size, spec.crop_scale) if spec.crop else RandomFlip()
    return nn.Sequential(ToFloat(spec.channels), crop)


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

