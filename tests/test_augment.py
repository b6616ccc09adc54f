"""Augmentation policies: contract (shape, range, per-sample randomness, seeding) and agreement of
the batched ops with torchvision's per-image reference ops."""

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as tvf

from pipeline import augment as A
from pipeline.errors import ConfigError

POLICIES = ["none", "basic", "simaugment", "autoaugment", "randaugment", "stacked_randaugment"]
RANDOM_POLICIES = [p for p in POLICIES if p != "none"]


def _images(b: int, c: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Random uint8 images [b, c, size, size] with some structure (a gradient) so ops act visibly."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (b, c, size, size), generator=g)
    ramp = torch.linspace(0, 255, size).view(1, 1, 1, size)
    return ((noise + ramp) / 2).to(torch.uint8)


def test_registry_holds_the_paper_policies():
    assert A.AUGMENTATIONS.names() == sorted(POLICIES)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("policy", POLICIES)
def test_output_contract(policy, channels):
    aug = A.build_augmentation(policy, image_size=12, channels=channels, blur=True)
    out = aug(_images(8, channels))
    assert out.shape == (8, channels, 12, 12) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("policy", RANDOM_POLICIES)
def test_parameters_differ_across_samples(policy, channels):
    images = _images(1, channels).expand(32, -1, -1, -1).contiguous()
    out = A.build_augmentation(policy, image_size=16, channels=channels)(images)
    distinct = {tuple(row.flatten().tolist()) for row in out}
    assert len(distinct) > 16


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("policy", POLICIES)
def test_same_seed_same_output(policy, channels):
    aug = A.build_augmentation(policy, image_size=16, channels=channels, blur=True)
    images = _images(16, channels)
    torch.manual_seed(7)
    first = aug(images)
    torch.manual_seed(7)
    assert torch.equal(first, aug(images))
    if policy != "none":
        assert not torch.equal(first, aug(images))


@pytest.mark.parametrize("channels", [1, 3])
def test_multiview_shape_and_independent_views(channels):
    views = A.MultiView(A.build_augmentation("simaugment", image_size=12, channels=channels), 3)(_images(4, channels))
    assert views.shape == (4, 3, channels, 12, 12)
    for i in range(4):
        assert not torch.equal(views[i, 0], views[i, 1]) and not torch.equal(views[i, 1], views[i, 2])


def test_multiview_keeps_each_images_views_together():
    images = _images(5, 3)
    views = A.MultiView(A.eval_transform(16, 3), 2)(images)
    assert torch.equal(views[:, 0], images / 255.0) and torch.equal(views[:, 1], images / 255.0)


def test_unknown_policy_lists_names():
    with pytest.raises(KeyError, match="simaugment"):
        A.build_augmentation("cutmix", image_size=32, channels=3)


@pytest.mark.parametrize(
    ("field", "value"), [("channels", 2), ("strength", -0.1), ("crop_scale", (0.5, 0.2)), ("randaugment_m", 31)]
)
def test_invalid_arguments_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        A.build_augmentation("simaugment", **{"image_size": 32, "channels": 3, field: value})


def test_wrong_input_is_rejected():
    aug = A.build_augmentation("basic", image_size=16, channels=3)
    with pytest.raises(ValueError, match="uint8"):
        aug(_images(2, 3).float())
    with pytest.raises(ValueError, match="3"):
        aug(_images(2, 1))


@pytest.mark.parametrize("channels", [1, 3])
def test_none_is_deterministic_and_preserves_content(channels):
    images = _images(4, channels)
    out = A.eval_transform(16, channels)(images)
    assert torch.equal(out, images.float() / 255.0)
    assert torch.equal(out, A.eval_transform(16, channels)(images))


def test_none_resizes_shorter_side_and_center_crops():
    images = _images(2, 3, size=32)[:, :, :, 4:28]  # [2, 3, 32, 24]
    out = A.eval_transform(12, 3)(images)
    expected = tvf.center_crop(tvf.resize(images.float() / 255.0, [12], antialias=True), [12, 12])
    assert out.shape == (2, 3, 12, 12)
    torch.testing.assert_close(out, expected.clamp(0, 1))


# ----------------------------------------------------------------- agreement with torchvision


def test_crop_boxes_follow_torchvision_ranges():
    torch.manual_seed(0)
    top, left, h, w = A.sample_crop_boxes(4000, 32, 40, (0.2, 1.0)).unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 40).all()
    area = h * w / (32 * 40)
    assert area.min() > 0.18 and area.max() <= 1.0  # rounding of h, w moves the area a little
    ratio = w / h
    assert ratio.min() > 0.7 and ratio.max() < 1.43
    assert left.float().std() > 1 and top.float().std() > 1  # positions vary per sample


def test_crop_boxes_fall_back_to_a_central_crop():
    # A 4 x 100 strip cannot hold a crop of >= 90% of its area with ratio <= 4/3.
    boxes = A.sample_crop_boxes(8, 4, 100, (0.9, 1.0))
    assert boxes.tolist() == [[0, 47, 4, 5]] * 8  # torchvision: h = 4, w = round(4 * 4/3), centred


def test_crop_and_flip_match_torchvision_resized_crop():
    torch.manual_seed(1)
    x = torch.rand(32, 3, 20, 24)
    boxes = A.sample_crop_boxes(32, 20, 24, (0.1, 1.0))
    flip = torch.rand(32) < 0.5
    out = A.resized_crop_flip(x, A.crop_flip_grid(boxes, flip, 20, 24, 16))
    for i in range(32):
        top, left, h, w = (int(v) for v in boxes[i])
        ref = tvf.resized_crop(x[i], top, left, h, w, [16, 16], antialias=False)
        ref = tvf.horizontal_flip(ref) if flip[i] else ref
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("mine", "reference", "low", "high"),
    [
        (A.adjust_brightness, tvf.adjust_brightness, 0.6, 1.4),
        (A.adjust_contrast, tvf.adjust_contrast, 0.6, 1.4),
        (A.adjust_saturation, tvf.adjust_saturation, 0.6, 1.4),
        (A.adjust_hue, tvf.adjust_hue, -0.5, 0.5),
    ],
)
def test_jitter_ops_match_torchvision_per_sample(mine, reference, low, high):
    torch.manual_seed(2)
    x = torch.rand(16, 3, 8, 8)
    x[0] = x[0, :1]  # a gray image: hue and saturation must leave it alone
    factors = torch.rand(16) * (high - low) + low
    out = mine(x, factors)
    for i in range(16):
        torch.testing.assert_close(out[i], reference(x[i], float(factors[i])), atol=1e-5, rtol=0)


@pytest.mark.parametrize("channels", [1, 3])
def test_color_jitter_applies_each_samples_own_order(channels):
    torch.manual_seed(3)
    x = torch.rand(24, channels, 8, 8)
    factors, order = A.sample_jitter(24, 1.0, channels)
    assert order.shape == (24, 4 if channels == 3 else 2)  # grayscale: brightness and contrast only
    order[:4] = -1  # not jittered
    out = A.color_jitter(x, factors, order)
    references = (tvf.adjust_brightness, tvf.adjust_contrast, tvf.adjust_saturation, tvf.adjust_hue)
    for i in range(24):
        ref = x[i]
        for op in order[i].tolist():
            ref = ref if op < 0 else references[op](ref, float(factors[i, op]))
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)
    assert len({tuple(row) for row in order[4:].tolist()}) >= (2 if channels == 1 else 6)  # orders vary per sample


def test_gaussian_blur_matches_torchvision_per_sample():
    torch.manual_seed(4)
    x = torch.rand(6, 3, 12, 12)
    sigma = torch.rand(6) * 1.9 + 0.1
    out = A.gaussian_blur(x, sigma, 5)
    for i in range(6):
        ref = tvf.gaussian_blur(x[i], [5, 5], [float(sigma[i])] * 2)
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("channels", [1, 3])
def test_color_distortion_probabilities(channels):
    # Strength 0 leaves only the grayscale coin; a saturated colour image shows which samples got it.
    torch.manual_seed(5)
    x = torch.zeros(4000, channels, 2, 2)
    x[:, 0] = 1.0
    out = A.ColorDistortion(channels, 0.0, None)(x)
    if channels == 1:
        assert torch.equal(out, x)  # grayscale is a no-op on one channel
        return
    gray = (out[:, 0] == out[:, 1]).all(dim=(1, 2))
    assert 0.17 < gray.float().mean() < 0.23


def test_flip_probability_is_one_half():
    torch.manual_seed(6)
    x = torch.arange(4, dtype=torch.float32).view(1, 1, 1, 4).expand(4000, 1, 4, 4)
    out = A.RandomResizedCropFlip(4, (1.0, 1.0))(x)  # full-image crop, so only the flip changes it
    flipped = out[:, 0, 0, 0] > out[:, 0, 0, 3]
    assert 0.46 < flipped.float().mean() < 0.54


_TV_AUTO = v2.AutoAugment()
_TV_RAND = v2.RandAugment()


@pytest.mark.parametrize("name", sorted(set(A.RANDAUGMENT_OPS) | {"Invert"}))
@pytest.mark.parametrize("channels", [1, 3])
def test_policy_ops_match_torchvision(name, channels):
    # Reference: torchvision's own op dispatch and magnitude tables (private, pinned version).
    images = _images(3, channels, size=16, seed=9)
    space = _TV_RAND._AUGMENTATION_SPACE if name in _TV_RAND._AUGMENTATION_SPACE else _TV_AUTO._AUGMENTATION_SPACE
    table = space[name][0](31, 16, 16)
    magnitude = 0.0 if table is None else float(table[9])
    assert magnitude == pytest.approx(A.op_magnitude(name, 9, 31, 16, 16))
    for sign in (1.0, -1.0) if name in A.SIGNED_OPS else (1.0,):
        mine = A.apply_op(images, name, sign * magnitude)
        for i in range(3):
            ref = _TV_RAND._apply_image_or_video_transform(
                images[i], name, sign * magnitude, interpolation=InterpolationMode.NEAREST, fill=_TV_RAND._fill
            )
            assert torch.equal(mine[i], ref), (name, sign)


def test_autoaugment_magnitude_bins_match_torchvision():
    for sub in A.IMAGENET_POLICY:
        for name, _, level in sub:
            table = _TV_AUTO._AUGMENTATION_SPACE[name][0](10, 32, 32)
            if table is not None:
                assert A.op_magnitude(name, level, 10, 32, 32) == pytest.approx(float(table[level]))


@pytest.mark.parametrize("sampler", ["autoaugment", "randaugment"])
def test_policy_plans_are_drawn_per_sample_and_applied_per_sample(sampler):
    torch.manual_seed(8)
    if sampler == "autoaugment":
        plan = A.sample_autoaugment(64, 16, 16)
    else:
        plan = A.sample_randaugment(64, 16, 16, n_ops=2, magnitude=9)
    ops, steps = plan
    assert all(len(set(codes.tolist())) > 5 for codes in steps)  # many different ops in one batch
    images = _images(64, 3, size=16)
    out = A.apply_plan(images, plan)
    for i in range(64):  # the grouped batch equals a plain per-image loop
        ref = images[i : i + 1]
        for codes in steps:
            code = int(codes[i])
            ref = ref if code < 0 else A.apply_op(ref, *ops[code])
        assert torch.equal(out[i : i + 1], ref)


def test_autoaugment_application_rates_follow_the_policy():
    torch.manual_seed(10)
    _, steps = A.sample_autoaugment(20000, 16, 16)
    # Over all 25 sub-policies the mean probability of applying the first op is 0.6.
    expected = sum(sub[0][1] for sub in A.IMAGENET_POLICY) / len(A.IMAGENET_POLICY)
    assert abs((steps[0] >= 0).float().mean() - expected) < 0.02
