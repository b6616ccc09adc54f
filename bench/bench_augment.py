"""Augmentation throughput: batched SimAugment (two views) against the per-sample PIL reference.

    python -m bench.bench_augment [--quick] [--device cpu] [--threads N] [--json PATH]

Pipelines, each producing two SimAugment views per image:
- `batched`: `MultiView(build_augmentation("simaugment"), 2)` on a uint8 batch on `device`.
- `kornia`: the same recipe from kornia.augmentation (one op order per batch), for reference.
- `pil`: the reference SupContrast TwoCropTransform, per image in one process: Image.fromarray,
  torchvision RandomResizedCrop / flip / ColorJitter(p=0.8) / RandomGrayscale / ToTensor twice,
  then a collate-style stack. DataLoader workers would spread this over cores; the machines this
  targets have two, shared with the training loop.

Images/s counts input images (each yields two views); the median of the repeats is reported.
"""

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from pipeline.augment import MultiView, build_augmentation

CASES = [  # (name, channels, size, batch)
    ("32x32x3", 3, 32, 512),
    ("28x28x1", 1, 28, 512),
    ("28x28x1", 1, 28, 256),
]


def _batched(channels: int, size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 [B, C, H, W] -> float [B, 2, C, S, S] with this package's SimAugment."""
    return MultiView(build_augmentation("simaugment", image_size=size, channels=channels), 2)


def _kornia(channels: int, size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The same recipe from kornia.augmentation modules: uint8 [B, C, H, W] -> float [B, 2, C, S, S]."""
    import kornia.augmentation as K

    color = [K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), K.RandomGrayscale(p=0.2)] if channels == 3 else [
        K.ColorJitter(0.4, 0.4, 0.0, 0.0, p=0.8)
    ]
    aug = K.AugmentationSequential(
        K.RandomResizedCrop((size, size), scale=(0.2, 1.0)), K.RandomHorizontalFlip(), *color
    )

    def views(images: torch.Tensor) -> torch.Tensor:
        out = aug(images.repeat_interleave(2, dim=0).float().div_(255.0))
        return out.view(images.shape[0], 2, *out.shape[1:])

    return views


def _pil(channels: int, size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Reference SupContrast TwoCropTransform, per image: uint8 [B, C, H, W] -> float [B, 2, C, S, S]."""
    transform = T.Compose([
        T.RandomResizedCrop(size, scale=(0.2, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.ToTensor(),
    ])  # fmt: skip

    def views(images: torch.Tensor) -> torch.Tensor:
        # Datasets hold HWC numpy arrays and build a PIL image per item, as torchvision's CIFAR does.
        arrays = images.permute(0, 2, 3, 1).numpy()
        if channels == 1:
            arrays = arrays[..., 0]
        samples = []
        for array in arrays:
            image = Image.fromarray(np.ascontiguousarray(array))
            samples.append(torch.stack([transform(image), transform(image)]))
        return torch.stack(samples)

    return views


def _median_seconds(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    """Median wall time of `repeats` calls after one warm-up call."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(quick: bool = False, device: str = "cpu") -> list[dict]:
    """One row per (case, pipeline): images/s, ms per batch and the speed-up over the PIL reference."""
    torch.manual_seed(0)
    repeats = 3 if quick else 7
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rows = []
    for case, channels, size, batch in CASES:
        images = torch.randint(0, 256, (batch, channels, size, size), dtype=torch.uint8)
        on_device = images.to(device)
        builders = {"batched": _batched, "kornia": _kornia, "pil": _pil}
        timed = {}
        for name, build in builders.items():
            fn, data = build(channels, size), (images if name == "pil" else on_device)
            out = fn(data)
            assert out.shape == (batch, 2, channels, size, size), (name, out.shape)
            timed[name] = _median_seconds(lambda: fn(data), repeats, sync)
        for name, seconds in timed.items():
            rows.append({
                "case": case, "batch": batch, "views": 2, "pipeline": name,
                "device": "cpu" if name == "pil" else device, "threads": torch.get_num_threads(),
                "ms_per_batch": 1000 * seconds, "images_per_s": batch / seconds,
                "speedup_vs_pil": timed["pil"] / seconds,
            })  # fmt: skip
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown table of `run`'s rows."""
    lines = [
        "| case | batch | pipeline | device | ms/batch | images/s | x PIL |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['batch']} | {r['pipeline']} | {r['device']} | {r['ms_per_batch']:.1f} "
            f"| {r['images_per_s']:,.0f} | {r['speedup_vs_pil']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    parser.add_argument("--device", default="cpu", help="device for the batched pipelines (cpu, cuda)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        # On a busy machine one thread avoids the stalls of threads waiting for each other.
        torch.set_num_threads(args.threads)
    rows = run(quick=args.quick, device=args.device)
    print(format_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
