"""ImageFolder trees (`train/<class>/<image>`, `test/` or `val/` alike) and ImageNet.

Images are decoded with PIL in a process pool, resized (shorter side = image_size) and
center-cropped, and written straight into .npy memmaps in `workdir`, so an ImageNet-size tree
never has to fit in RAM. Images are RGB unless every image in the tree is grayscale.
Large trees are not decoded at all: `index_image_tree` lists and hashes the files, and training
reads them (data.storage files: file_store.py, image_files.py).
"""

import functools
import io
import os
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.data.raw import RawDataset, Source, sha256_bytes, sha256_file
from pipeline.data.registry import DATASETS
from pipeline.data.resize import resize_center_crop
from pipeline.errors import UserError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
_GRAY_MODES = {"1", "L", "LA", "I", "F"}
_POOL_MIN_IMAGES = 512  # below this, starting worker processes costs more than it saves
_CHUNKSIZE = 64


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and _visible(p) and p.suffix.lower() in IMAGE_EXTENSIONS)


def list_classes(split_dir: Path) -> dict[str, list[Path]]:
    """Class folder name -> its image files, both sorted, hidden entries skipped."""
    return {d.name: _images_in(d) for d in sorted(split_dir.iterdir()) if d.is_dir() and _visible(d)}


def _labelled(tree: dict[str, list[Path]], class_index: dict[str, int]) -> tuple[list[Path], np.ndarray]:
    paths = [p for name in tree for p in tree[name]]
    labels = np.array([class_index[name] for name in tree for _ in tree[name]], dtype=np.int64)
    return paths, labels


def _is_gray(path: Path) -> bool:
    """Whether an image is single-channel, from its header only (PIL opens lazily)."""
    try:
        with Image.open(path) as image:
            return image.mode in _GRAY_MODES or image.mode.startswith("I;")
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"{path}: cannot read image ({err})") from err


def _decode(path: Path, size: int, gray: bool) -> tuple[np.ndarray, str]:
    """Image file -> (uint8 [C, size, size], sha256 of the file bytes); the bytes are read once."""
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image = resize_center_crop(image.convert("L" if gray else "RGB"), size)
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"{path}: cannot decode image ({err})") from err
    pixels = np.asarray(image, dtype=np.uint8)
    return (pixels[None] if gray else pixels.transpose(2, 0, 1)), sha256_bytes(data)


def _map(fn, paths: list[Path]):
    """Ordered map of fn over paths, in a process pool when the tree is large."""
    if len(paths) < _POOL_MIN_IMAGES:
        yield from map(fn, paths)
        return
    with Pool(len(os.sched_getaffinity(0))) as pool:
        yield from pool.imap(fn, paths, chunksize=_CHUNKSIZE)


def _decode_split(paths: list[Path], size: int, gray: bool, out_path: Path) -> tuple[np.ndarray, list[str]]:
    """Decode into a .npy memmap [N, C, size, size] at out_path; also returns each file's sha256."""
    channels = 1 if gray else 3
    out = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.uint8, shape=(len(paths), channels, size, size))
    digests = []
    for i, (pixels, digest) in enumerate(_map(functools.partial(_decode, size=size, gray=gray), paths)):
        out[i] = pixels
        digests.append(digest)
    out.flush()
    return out, digests


@dataclass(frozen=True)
class FileTree:
    """An image tree's file index: paths relative to `root`, labels, classes, provenance."""

    root: Path
    train_paths: tuple[str, ...]
    train_labels: np.ndarray
    test_paths: tuple[str, ...]
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    channels: int
    sources: tuple[Source, ...]


def count_train_images(root: Path) -> int:
    """Images under root/train/<class>/, from the directory listing only."""
    return sum(len(images) for images in list_classes(root / "train").values())


def _list_tree(train_dir: Path, eval_dir: Path) -> tuple[tuple[list[Path], np.ndarray], tuple[list[Path], np.ndarray], tuple[str, ...], bool]:
    """(train paths, labels), (eval paths, labels), the class names (train's folders, sorted), and
    whether every image is single-channel (from the headers)."""
    train, test = list_classes(train_dir), list_classes(eval_dir)
    _check_train(train, train_dir)
    unknown = sorted(set(test) - set(train))
    if unknown:
        raise UserError(f"{eval_dir}: classes not in {train_dir}: {', '.join(unknown)}")
    class_index = {name: i for i, name in enumerate(train)}
    train_items, test_items = _labelled(train, class_index), _labelled(test, class_index)
    gray = all(_map(_is_gray, train_items[0] + test_items[0]))
    return train_items, test_items, tuple(train), gray


def index_image_tree(root: Path, eval_name: str) -> FileTree:
    """root/train/<class>/* and root/<eval_name>/<class>/* -> FileTree; every file is hashed
    (provenance), none is decoded; channels 1 only if every image is single-channel."""
    train_dir, eval_dir = root / "train", root / eval_name
    (train_paths, train_labels), (test_paths, test_labels), class_names, gray = _list_tree(train_dir, eval_dir)
    train_digests, test_digests = list(_map(sha256_file, train_paths)), list(_map(sha256_file, test_paths))
    sources = (_tree_source(train_dir, train_paths, train_digests), _tree_source(eval_dir, test_paths, test_digests))
    return FileTree(
        root, _relative(train_paths, root), train_labels, _relative(test_paths, root), test_labels, class_names, 1 if gray else 3, sources
    )


def _relative(paths: list[Path], root: Path) -> tuple[str, ...]:
    # relative, so the store does not depend on where data.root puts the tree (its DVC hash)
    return tuple(p.relative_to(root).as_posix() for p in paths)


def _tree_source(split_dir: Path, paths: list[Path], digests: list[str]) -> Source:
    """One Source for a whole split folder: sha256 of its sorted `sha256sum`-style listing.

    Named by the folder's name (`train`, `val`, `test`) and listed with paths relative to it, so
    the same tree gives the same Source wherever `data.root` puts it.
    """
    lines = sorted((p.relative_to(split_dir).as_posix(), d) for p, d in zip(paths, digests))
    listing = "".join(f"{d}  {rel}\n" for rel, d in lines)
    return Source(split_dir.name, sha256_bytes(listing.encode()), len(lines))


def _check_train(train: dict[str, list[Path]], train_dir: Path) -> None:
    if not train:
        raise UserError(f"{train_dir}: no class folders; expected {train_dir}/<class>/<image>")
    empty = [name for name, images in train.items() if not images]
    if empty:
        raise UserError(f"{train_dir}: class folders without images: {', '.join(empty)}")


def read_image_tree(root: Path, eval_name: str, image_size: int | None, workdir: Path) -> RawDataset:
    """root/train/<class>/* and root/<eval_name>/<class>/* -> RawDataset; classes come from train/."""
    if image_size is None:
        raise UserError(f"data.image_size must be set for image folders ({root}): images are cropped to that square")
    train_dir, eval_dir = root / "train", root / eval_name
    (train_paths, train_labels), (test_paths, test_labels), class_names, gray = _list_tree(train_dir, eval_dir)
    train_x, train_digests = _decode_split(train_paths, image_size, gray, workdir / "raw_train.npy")
    test_x, test_digests = _decode_split(test_paths, image_size, gray, workdir / "raw_test.npy")
    sources = (_tree_source(train_dir, train_paths, train_digests), _tree_source(eval_dir, test_paths, test_digests))
    return RawDataset(train_x, train_labels, test_x, test_labels, class_names, sources)


def _require_root(root: str | None, download: bool, layout: str) -> Path:
    if root is None:
        raise UserError(f"data.root must be set: a folder with {layout}")
    if download:
        raise UserError(f"data.download: image folders cannot be downloaded; set it false and data.root to {layout}")
    path = Path(root)
    if not (path / "train").is_dir():
        raise UserError(f"data.root: {path} has no train/ folder; expected {layout}")
    return path


def imagefolder_layout(root: str | None, download: bool) -> tuple[Path, str]:
    """(root, name of the evaluation folder) of root/train/<class>/<image> plus test/ (or val/)."""
    path = _require_root(root, download, "train/<class>/<image> and test/<class>/<image>")
    eval_name = "test" if (path / "test").is_dir() else "val"
    if not (path / eval_name).is_dir():
        raise UserError(f"data.root: {path} has neither test/ nor val/; expected test/<class>/<image>")
    return path, eval_name


def imagenet_layout(root: str | None, download: bool) -> tuple[Path, str]:
    """ILSVRC-2012 as root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG; class names are wnids.

    The official val/ is one flat folder of 50,000 images: it must first be sorted into wnid
    folders with the devkit labels (e.g. the widely used `valprep.sh`). The val images are this
    pipeline's test split; its own val split is carved from train.
    """
    path = _require_root(root, download, "ImageNet's train/<wnid>/ and val/<wnid>/")
    val = path / "val"
    if not val.is_dir():
        raise UserError(f"data.root: {path} has no val/ folder; expected val/<wnid>/<image>")
    if _images_in(val):
        raise UserError(
            f"{val}: images lie directly in val/; first sort them into val/<wnid>/ with the devkit labels (valprep.sh)"
        )
    missing = sorted(set(list_classes(path / "train")) - set(list_classes(val)))
    if missing:
        raise UserError(f"{val}: no folder for {len(missing)} train classes, e.g. {', '.join(missing[:5])}")
    return path, "val"


# dataset name -> its layout check; these trees can also be read from their files (file_store.py)
TREE_LAYOUTS = {"imagefolder": imagefolder_layout, "imagenet": imagenet_layout}


@DATASETS.register("imagefolder")
def load_imagefolder(*, root: str | None, download: bool, image_size: int | None, workdir: Path) -> RawDataset:
    """root/train/<class>/<image> plus root/test/ (or root/val/ when there is no test/)."""
    path, eval_name = imagefolder_layout(root, download)
    return read_image_tree(path, eval_name, image_size, workdir)


@DATASETS.register("imagenet")
def load_imagenet(*, root: str | None, download: bool, image_size: int | None, workdir: Path) -> RawDataset:
    """ILSVRC-2012 (see imagenet_layout), decoded into pixels at image_size."""
    path, eval_name = imagenet_layout(root, download)
    return read_image_tree(path, eval_name, image_size, workdir)
