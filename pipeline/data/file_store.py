"""The prepared store of an image tree that training reads from its files (data.storage files).

ImageNet decoded into a uint8 array is 193 GB at 224 px, and a random resized crop inside a
stored centre square never sees the rest of the image. For such trees the store keeps the
file index instead of pixels; the images are decoded while training (pipeline/data/jpeg_batches.py).
Layout of the store (next to manifest.json and subsets.npz, as for pixel stores):
    {train,val,test}_files.txt   one path per line, relative to data.root, in label order
    {train,val,test}_labels.npy  int64 [N]
manifest.json has "storage": "files", and "image_shape" is that of the evaluation view [C, S, S].
Paths are relative so the store's DVC hash does not depend on where data.root is; loading needs
data.root again (`files_root`).
"""

from pathlib import Path

import numpy as np
import torch

from pipeline.data.image_files import ImageFiles, loader_workers
from pipeline.data.store_io import broken
from pipeline.errors import UserError

STORAGE = "files"
STATS_SAMPLE = 10_000
"""Train images whose evaluation views give the normalisation mean and std (a fixed sample:
decoding all 1.28M ImageNet images for 6 numbers would take hours)."""


def write_split(out_dir: Path, name: str, paths: tuple[str, ...], labels: np.ndarray, rows: np.ndarray | None) -> None:
    """{name}_files.txt and {name}_labels.npy of paths[rows], labels[rows] (all when rows is None)."""
    rows = np.arange(len(labels)) if rows is None else rows
    (out_dir / f"{name}_files.txt").write_text("".join(f"{paths[i]}\n" for i in rows), encoding="utf-8")
    np.save(out_dir / f"{name}_labels.npy", labels[rows].astype(np.int64))


def sample_mean_std(files: ImageFiles, seed: int) -> tuple[list[float], list[float]]:
    """Channel mean and std of the evaluation views of at most STATS_SAMPLE train images."""
    from pipeline.data.stats import batches_mean_std

    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(files), generator=generator)[:STATS_SAMPLE].sort().values
    batches = files.take(rows).eval_batches(256, workers=loader_workers())
    return batches_mean_std(batch.numpy() for batch in batches)


def read_paths(out_dir: Path, name: str, size: int) -> tuple[str, ...]:
    """The file list of split `name`, checked against the manifest's count."""
    path = out_dir / f"{name}_files.txt"
    if not path.is_file():
        raise broken(path, out_dir, "is missing")
    try:
        paths = tuple(path.read_text(encoding="utf-8").splitlines())
    except UnicodeDecodeError as err:
        raise broken(path, out_dir, f"is not UTF-8 text ({err.reason})") from None
    if len(paths) != size:
        raise broken(path, out_dir, f"lists {len(paths)} files, manifest.json says {size}")
    return paths


def image_files(out_dir: Path, name: str, manifest: dict, files_root: str | Path | None, workers: int) -> ImageFiles:
    """Split `name` of a file store as ImageFiles under files_root (data.root)."""
    if files_root is None:
        raise UserError(f"{out_dir}: this store reads its images from their files; set data.root to the folder it was prepared from")
    channels, size = manifest["image_shape"][0], manifest["image_shape"][1]
    paths = read_paths(out_dir, name, manifest["split_sizes"][name])
    root = Path(files_root)
    if paths and not (root / paths[0]).is_file():
        raise UserError(f"data.root: {root} does not hold {paths[0]}, listed in {out_dir / f'{name}_files.txt'}; point data.root at the tree this store was prepared from")
    return ImageFiles(root, paths, size, channels, workers)
