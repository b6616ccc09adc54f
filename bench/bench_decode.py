"""Streaming throughput: JPEG files -> random resized crops at S = 224, as JpegBatches loads them.

    python -m bench.bench_decode [--quick] [--device cpu|cuda] [--json PATH]

Writes ImageNet-like JPEGs (500 x 375, smooth content with fine texture, quality 90) to a temporary
folder, then times one epoch of each pipeline over them (the files repeated so that starting the
DataLoader workers is spread over a few hundred images):
- `crops x2`, decoder `workers`: JpegBatches with two views, decoded and cropped in 0, 1, 2 workers;
- `crops x2`, decoder `device`: bytes read in 2 workers, decoded (nvjpeg) and cropped on CUDA;
- `eval view`: ImageFiles.eval_batches (resize 256, centre crop 224) with 0 and 2 workers;
- `decode only`: decode_file in this process, the share of the time that is libjpeg-turbo.

Images/s counts source images (each decoded once); per process divides by the processes decoding
(the workers, or this one). Files come from the page cache: disk speed is not measured. The median
of the repeats is reported.
"""

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.common import synchronizer
from pipeline.data.image_files import ImageFiles
from pipeline.data.jpeg_batches import JpegBatches
from pipeline.data.jpeg_decode import decode_file

SIZE = 224
WIDTH, HEIGHT = 500, 375  # ImageNet's most common image size
BATCH = 32
LAPS = 8  # each file appears this many times per timed epoch


def _photo_like(rng: np.random.Generator) -> np.ndarray:
    """uint8 [H, W, 3]: blobs at three scales plus grain, which JPEG compresses about as a photograph."""
    total = np.zeros((HEIGHT, WIDTH, 3), dtype=np.float32)
    for cells, weight in ((6, 0.6), (24, 0.3), (96, 0.1)):
        coarse = Image.fromarray(rng.integers(0, 256, (cells * 3 // 4, cells, 3), dtype=np.uint8))
        total += weight * np.asarray(coarse.resize((WIDTH, HEIGHT), Image.BICUBIC), dtype=np.float32)
    total += rng.normal(0, 12, total.shape)  # grain: ~75 KB files (ImageNet's average ~110 KB)
    return np.clip(total, 0, 255).astype(np.uint8)


def write_jpegs(folder: Path, count: int) -> list[str]:
    """`count` JPEG files in folder; their names."""
    rng = np.random.default_rng(0)
    names = [f"{i:03d}.jpg" for i in range(count)]
    for name in names:
        Image.fromarray(_photo_like(rng)).save(folder / name, quality=90)
    return names


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls after one warm-up call (which also fills the page cache)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _crops_epoch(files: ImageFiles, workers: int, decoder: str, device: str) -> Callable[[], None]:
    batches = JpegBatches(
        files, torch.zeros(len(files), dtype=torch.int64), batch_size=BATCH, seed=0, views=2,
        crop_scale=(0.08, 1.0), workers=workers, decoder=decoder, device=torch.device(device),
    )  # fmt: skip
    sync = synchronizer(device)

    def epoch() -> None:
        for images, _ in batches.epoch(0, rank=0, world_size=1):
            assert images.shape == (BATCH, 2, 3, SIZE, SIZE)
        sync()

    return epoch


def _eval_epoch(files: ImageFiles, workers: int) -> Callable[[], None]:
    return lambda: [None for _ in files.eval_batches(BATCH, workers=workers)]


def _decode_only(files: ImageFiles) -> Callable[[], None]:
    return lambda: [decode_file(files.file(i), 3) for i in range(len(files))]


def _row(pipeline: str, decoder: str, workers: int, device: str, images: int, seconds: float | None, note="") -> dict:
    rate = images / seconds if seconds else None
    # DataLoader workers run torch on one thread each; with none, this process resizes on all of its.
    threads = torch.get_num_threads() if workers == 0 else 1
    return {"pipeline": pipeline, "decoder": decoder, "workers": workers, "threads": threads, "device": device,
            "size": SIZE, "images": images, "seconds": seconds, "images_per_s": rate,
            "per_process": rate / max(workers, 1) if rate else None, "note": note}  # fmt: skip


def _add_ratios(rows: list[dict]) -> list[dict]:
    """x_0_workers: images/s over the same pipeline's 0-worker `workers` row."""
    base = {r["pipeline"]: r["images_per_s"] for r in rows if r["workers"] == 0 and r["decoder"] != "device"}
    for r in rows:
        r["x_0_workers"] = r["images_per_s"] / base[r["pipeline"]] if r["images_per_s"] else None
    return rows


def run(quick: bool = False, device: str = "cpu") -> list[dict]:
    """One row per (pipeline, decoder, workers): images/s, per process and the ratio to 0 workers."""
    count, repeats = (32, 3) if quick else (64, 5)
    with tempfile.TemporaryDirectory() as tmp:
        names = write_jpegs(Path(tmp), count)
        kb = sum((Path(tmp) / n).stat().st_size for n in names) / count / 1024
        files = ImageFiles(Path(tmp), tuple(names) * LAPS, SIZE, 3)
        n, note = len(files), f"{count} files of {WIDTH}x{HEIGHT}, {kb:.0f} KB each"
        rows = []
        for workers in (0, 1, 2):
            seconds = _median_seconds(_crops_epoch(files, workers, "workers", "cpu"), repeats)
            rows.append(_row("crops x2", "workers", workers, "cpu", n, seconds, note))
        if device.startswith("cuda") and torch.cuda.is_available():
            seconds = _median_seconds(_crops_epoch(files, 2, "device", device), repeats)
            rows.append(_row("crops x2", "device", 2, device, n, seconds, "2 workers read bytes; nvjpeg decodes"))
        else:
            rows.append(_row("crops x2", "device", 2, device, n, None, "skipped: needs CUDA (nvjpeg)"))
        for workers in (0, 2):
            seconds = _median_seconds(_eval_epoch(files, workers), repeats)
            rows.append(_row("eval view", "workers", workers, "cpu", n, seconds))
        rows.append(_row("decode only", "workers", 0, "cpu", n, _median_seconds(_decode_only(files), repeats)))
    return _add_ratios(rows)


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: list[dict]) -> str:
    """Markdown table of `run`'s rows."""
    lines = [
        "| pipeline | decoder | workers | threads each | device | images/s | per process | x 0 workers | note |",
        "|---|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pipeline']} | {r['decoder']} | {r['workers']} | {r['threads']} | {r['device']} "
            f"| {_number(r['images_per_s'], ',.0f')} | {_number(r['per_process'], ',.0f')} "
            f"| {_number(r['x_0_workers'], '.2f')} | {r['note']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 files and 3 repeats instead of 64 and 5")
    parser.add_argument("--device", default="cpu", help="cuda adds the nvjpeg decoder")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = run(quick=args.quick, device=args.device)
    print(format_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
