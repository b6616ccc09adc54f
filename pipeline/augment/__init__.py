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

Files: `policies.py` (registry, spec, MultiView), `geometry.py` (crop, flip, resize),
`color.py` (colour distortion), `policy_ops.py` (AutoAugment / RandAugment), `sampling.py`
(per-sample draws).
"""

# The public names, re-exported so callers import from `pipeline.augment`.
# ruff: noqa: F401
from pipeline.augment.color import (
    ColorDistortion,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    gaussian_blur,
    random_grayscale,
    sample_jitter,
)
from pipeline.augment.geometry import RandomFlip, RandomResizedCropFlip, ResizeCenterCrop, ToFloat, crop_flip_grid, resized_crop_flip, sample_crop_boxes
from pipeline.augment.policies import AUGMENTATIONS, AugmentSpec, MultiView, build_augmentation, eval_transform
from pipeline.augment.policy_ops import (
    IMAGENET_POLICY,
    RANDAUGMENT_OPS,
    SIGNED_OPS,
    PolicyOps,
    apply_op,
    apply_plan,
    op_magnitude,
    sample_autoaugment,
    sample_randaugment,
)
