"""Images streamed from their files: eval views, crop boxes and JpegBatches against torchvision references.

The fixture tree holds real JPEGs of varied sizes (one grayscale, one CMYK, one smaller than S), a
PNG and a PNG named .JPEG, as ImageNet's train set has.
"""

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.v2.functional as tvf
from PIL import Image
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2

from pipeline.batches import batch_indices
from pipeline.data.image_files import ImageFiles
from pipeline.data.jpeg_batches import JpegBatches, crop_generator, default_decoder
from pipeline.data.jpeg_decode import crop_boxes, decode_file, eval_view, image_size_of, resized_crop
from pipeline.errors import UserError

S = 32
SCALE = (0.2, 1.0)
TREE = {  # class -> [(file name, (width, height), PIL mode)]
    "a": [("0.jpg", (96, 64), "RGB"), ("1.jpg", (50, 120), "RGB"), ("gray.jpg", (80, 80), "L"),
          ("2.png", (70, 40), "RGB")],
    "b": [("0.jpg", (200, 150), "RGB"), ("small.jpg", (24, 20), "RGB"), ("cmyk.jpg", (90, 60), "CMYK"),
          ("1.jpeg", (64, 64), "RGB")],
    "c": [("0.JPEG", (120, 50), "RGB"), ("1.JPEG", (100, 100), "RGB"), ("png.JPEG", (60, 90), "PNG"),
          ("2.JPEG", (75, 75), "RGB")],
}  # fmt: skip


def _pixels(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Smooth colour blobs plus noise: uint8 [H, W, 3], compressing like a photograph."""
    coarse = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    grain = rng.integers(-20, 21, (height, width, 3))
    return np.clip(np.asarray(coarse, dtype=np.int16) + grain, 0, 255).astype(np.uint8)


def _write(path, size, mode, rng) -> None:
    image = Image.fromarray(_pixels(rng, *size))
    if mode == "PNG":  # a PNG under a .JPEG name
        image.save(path, format="PNG")
    else:
        image.convert(mode).save(path, quality=90)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """(root, paths relative to root, labels) of a 3-class train/ tree."""
    root = tmp_path_factory.mktemp("jpeg_tree")
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for label, (name, images) in enumerate(TREE.items()):
        (root / "train" / name).mkdir(parents=True)
        for file, size, mode in images:
            _write(root / "train" / name / file, size, mode, rng)
            paths.append(f"train/{name}/{file}")
            labels.append(label)
    return root, tuple(paths), torch.tensor(labels)


def _files(tree, channels=3, size=S) -> ImageFiles:
    return ImageFiles(tree[0], tree[1], size, channels)


def _reference_decode(path, channels=3) -> torch.Tensor:
    return decode_image(str(path), mode=ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY)


def _batches(tree, **overrides) -> JpegBatches:
    files = _files(tree, overrides.pop("channels", 3))
    options = {"batch_size": 4, "seed": 7, "views": 2, "crop_scale": SCALE} | overrides
    return JpegBatches(files, tree[2], **options)


def _epoch(batches: JpegBatches, epoch=0, rank=0, world_size=1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(batches.epoch(epoch, rank=rank, world_size=world_size))


def _assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (images_a, labels_a), (images_b, labels_b) in zip(a, b):
        assert torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)


# --- eval view ---------------------------------------------------------------------------------


def test_eval_view_matches_torchvision_resize_center_crop(tree):
    files = _files(tree)
    assert files.resize == round(S * 256 / 224) and files.shape == (12, 3, S, S)
    reference = v2.Compose([v2.Resize(files.resize), v2.CenterCrop(S)])
    expected = torch.stack([reference(_reference_decode(files.file(i))) for i in range(len(files))])
    views = files[:]
    assert views.dtype == torch.uint8 and views.shape == files.shape
    assert (views.int() - expected.int()).abs().max() <= 1


def test_eval_batches_keep_order_and_agree_across_workers(tree):
    files = _files(tree)
    serial = list(files.eval_batches(5))
    assert [len(b) for b in serial] == [5, 5, 2]
    assert torch.equal(torch.cat(serial), files[:])
    assert torch.equal(torch.cat(list(files.eval_batches(5, workers=2))), files[:])
    assert ImageFiles(files.root, files.paths, S, 3, 4).take([1]).workers == 4  # take keeps the setting
    order = torch.tensor([11, 0, 5])
    assert torch.equal(files.take(order)[:], files[:][order]) and files.take(np.array([3])).paths == (files.paths[3],)


def test_eval_view_upscales_small_images(tree):
    image = decode_file(_files(tree).file(5), 3)  # small.jpg, 24 x 20
    assert image.shape == (3, 20, 24) and eval_view(image, S, 37).shape == (3, S, S)


# --- crop boxes --------------------------------------------------------------------------------


@pytest.mark.parametrize("height, width, scale", [(64, 96, (0.2, 1.0)), (375, 500, (0.08, 1.0)), (30, 7, (0.5, 1.0))])
def test_crop_boxes_are_random_resized_crop_get_params(height, width, scale):
    boxes = crop_boxes(torch.Generator().manual_seed(3), height, width, 20, scale)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        image = torch.empty(1, height, width)
        expected = [T.RandomResizedCrop.get_params(image, list(scale), [3 / 4, 4 / 3]) for _ in range(20)]
    assert boxes.dtype == torch.int64 and boxes.tolist() == [list(box) for box in expected]


def test_crop_boxes_lie_inside_with_area_in_scale():
    height, width, scale = 120, 90, (0.3, 0.6)
    top, left, h, w = crop_boxes(torch.Generator().manual_seed(0), height, width, 2000, scale).T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= height).all() and (left + w <= width).all()
    area = (h * w).double() / (height * width)
    assert area.min() > 0.28 and area.max() < 0.62  # the scale range, up to rounding h and w
    assert area.mean().item() == pytest.approx(0.45, abs=0.02)
    ratio = (w / h).double()
    assert ratio.min() > 0.7 and ratio.max() < 1.4 and len(set(top.tolist())) > 20


@pytest.mark.parametrize("height, width, box", [(1, 200, [0, 99, 1, 1]), (300, 2, [148, 0, 3, 2])])
def test_crop_boxes_fall_back_to_the_centre_for_extreme_shapes(height, width, box):
    assert crop_boxes(torch.Generator().manual_seed(0), height, width, 3, (0.9, 1.0)).tolist() == [box] * 3


# --- JpegBatches -------------------------------------------------------------------------------


def test_batches_equal_the_torchvision_random_resized_crop_of_each_file(tree):
    """Plain reference: decode each file with torchvision, get_params from the batch's generator, resized_crop."""
    batches = _batches(tree, views=3)
    for step, (rows, (images, labels)) in enumerate(zip(batch_indices(12, 4, seed=7, epoch=2), _epoch(batches, 2))):
        assert images.shape == (4, 3, 3, S, S) and images.dtype == torch.uint8 and torch.equal(labels, tree[2][rows])
        with torch.random.fork_rng():
            torch.set_rng_state(crop_generator(7, 2, 0, step).get_state())
            for row, crops in zip(rows.tolist(), images):
                image = _reference_decode(tree[0] / tree[1][row])
                for crop in crops:
                    top, left, h, w = T.RandomResizedCrop.get_params(image, list(SCALE), [3 / 4, 4 / 3])
                    assert torch.equal(crop, tvf.resized_crop(image, top, left, h, w, [S, S], antialias=True))


def test_crop_generator_depends_on_seed_epoch_rank_and_step():
    def draws(*key):
        return torch.rand(4, generator=crop_generator(*key)).tolist()

    keys = [(1, 0, 0, 0), (2, 0, 0, 0), (1, 1, 0, 0), (1, 0, 1, 0), (1, 0, 0, 1), (1, 0, 0, 2**32)]
    assert draws(*keys[0]) == draws(*keys[0]) and len({tuple(draws(*key)) for key in keys}) == len(keys)


def test_one_view_has_no_view_axis(tree):
    epoch = _epoch(_batches(tree, views=None, batch_size=5))
    assert len(epoch) == 2 and all(images.shape == (5, 3, S, S) and labels.shape == (5,) for images, labels in epoch)
    with_axis = _epoch(_batches(tree, views=1, batch_size=5))
    _assert_same(epoch, [(images[:, 0], labels) for images, labels in with_axis])


def test_epochs_are_reproducible_and_differ(tree):
    batches = _batches(tree)
    first = _epoch(batches, epoch=1)
    _assert_same(first, _epoch(_batches(tree), epoch=1))
    assert not torch.equal(first[0][0], _epoch(batches, epoch=2)[0][0])


@pytest.mark.parametrize("decoder", ["workers", "device"])
def test_workers_do_not_change_the_batches(tree, decoder):
    serial = _epoch(_batches(tree, decoder=decoder))
    _assert_same(serial, _epoch(_batches(tree, decoder=decoder, workers=2, prefetch=1)))


def test_device_decoder_on_cpu_equals_workers_decoder(tree):
    """The nvjpeg code path, run with device=cpu: same bytes, boxes and crops as decoding in workers."""
    assert default_decoder(torch.device("cpu")) == "workers" and default_decoder(torch.device("cuda")) == "device"
    workers = _epoch(_batches(tree, decoder="workers"), epoch=3)
    _assert_same(workers, _epoch(_batches(tree, decoder="device", device=torch.device("cpu"), workers=2), epoch=3))


def test_device_decoder_takes_batches_without_jpegs(tree):
    pngs = (tree[0], tuple(tree[1][i] for i in (3, 10)), tree[2][[3, 10]])  # 2.png and png.JPEG
    workers = _epoch(_batches(pngs, batch_size=2, decoder="workers"))
    _assert_same(workers, _epoch(_batches(pngs, batch_size=2, decoder="device")))


def test_ranks_get_disjoint_shards_of_batch_indices(tree):
    ids = torch.arange(12)  # labels that name each file's row
    batches = JpegBatches(_files(tree), ids, batch_size=2, seed=7, views=1, crop_scale=SCALE)
    seen = []
    for rank in (0, 1):
        expected = list(batch_indices(12, 2, seed=7, epoch=4, rank=rank, world_size=2))
        got = [labels for _, labels in _epoch(batches, epoch=4, rank=rank, world_size=2)]
        assert len(got) == batches.steps_per_epoch(2) == 3 and all(map(torch.equal, got, expected))
        seen += torch.cat(got).tolist()
    assert sorted(seen) == list(range(12))


def test_epoch_leaves_the_global_rng_alone(tree):
    state = torch.get_rng_state()
    _epoch(_batches(tree, workers=2))
    assert torch.equal(state, torch.get_rng_state())


def test_crops_range_over_the_full_image(tmp_path):
    """Black left edge, grey middle, white right edge: a centre-square store holds only grey."""
    pixels = np.full((64, 256, 3), 128, dtype=np.uint8)
    pixels[:, :64], pixels[:, 192:] = 0, 255
    Image.fromarray(pixels).save(tmp_path / "bands.jpg", quality=95)
    files = ImageFiles(tmp_path, ("bands.jpg",) * 16, S, 3)
    assert files[:1].float().std() < 3  # the eval view: only the grey middle
    labels = torch.zeros(16, dtype=torch.int64)
    batches = JpegBatches(files, labels, batch_size=16, seed=0, views=8, crop_scale=(0.05, 0.2))
    means = torch.cat([images.flatten(0, 1) for images, _ in _epoch(batches)]).float().mean(dim=(1, 2, 3))
    assert (means < 40).sum() >= 3 and (means > 215).sum() >= 3


# --- channels and errors -----------------------------------------------------------------------


def test_grayscale_and_cmyk_jpegs_become_rgb(tree):
    files = _files(tree)
    gray = decode_file(files.file(2), 3)
    assert gray.shape == (3, 80, 80) and torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert image_size_of(files.file(6)) == (60, 90) and decode_file(files.file(6), 3).shape == (3, 60, 90)
    assert decode_file(files.file(10), 3).shape == (3, 90, 60)  # png.JPEG, told apart by its first bytes


def test_one_channel_decodes_gray(tree):
    files = _files(tree, channels=1)
    expected = torch.stack([eval_view(_reference_decode(files.file(i), 1), S, files.resize) for i in range(12)])
    assert files.shape == (12, 1, S, S) and torch.equal(files[:], expected)
    workers = _epoch(_batches(tree, channels=1))
    assert workers[0][0].shape == (4, 2, 1, S, S)
    _assert_same(workers, _epoch(_batches(tree, channels=1, decoder="device")))


def test_resized_crop_is_torchvision_resized_crop(tree):
    image = decode_file(_files(tree).file(4), 3)
    expected = tvf.resized_crop(image, 10, 20, 50, 70, [S, S], antialias=True)
    assert torch.equal(resized_crop(image, torch.tensor([10, 20, 50, 70]), S), expected)


def _corrupt_tree(tree, tmp_path, content: bytes):
    (tmp_path / "train").mkdir()
    for path in tree[1]:
        target = tmp_path / path
        target.parent.mkdir(exist_ok=True)
        target.write_bytes((tree[0] / path).read_bytes())
    (tmp_path / tree[1][4]).write_bytes(content)
    return tmp_path, tree[1], tree[2]


@pytest.mark.parametrize("decoder", ["workers", "device"])
@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_bad_file_is_one_line_naming_it(tree, tmp_path, decoder, kind):
    good = (tree[0] / tree[1][4]).read_bytes()
    content = b"not an image at all" if kind == "garbage" else good[: len(good) // 2]
    broken = _corrupt_tree(tree, tmp_path, content)
    with pytest.raises(UserError) as caught:
        _epoch(_batches(broken, decoder=decoder, workers=2))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / tree[1][4]}: cannot decode image (")
    with pytest.raises(UserError, match=r"b/0\.jpg: cannot decode image") as caught:
        list(_files(broken).eval_batches(4, workers=2))
    assert "\n" not in str(caught.value)


def test_missing_file_is_named(tree, tmp_path):
    files = ImageFiles(tmp_path, ("gone.jpg",), S, 3)
    with pytest.raises(UserError, match="gone.jpg: cannot decode image"):
        files[:1]
    with pytest.raises(TypeError, match="slices"):
        files[0]
