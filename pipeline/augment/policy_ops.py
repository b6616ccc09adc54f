"""AutoAugment (ImageNet policy) and RandAugment: op tables, magnitudes, per-sample plans.

kornia draws one sub-policy per batch; here each sample draws its own, and each op is
torchvision's functional op applied once to the group of samples that drew it.
"""

import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as tvf

from pipeline.augment.sampling import apply_by_code


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
        images = apply_by_code(images, codes, lambda code, xs, _: apply_op(xs, *ops[code]), inplace=True)
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

