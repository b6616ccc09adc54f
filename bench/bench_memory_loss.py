"""Benchmark: what a queue of past keys costs the SupCon loss, against no queue and against
pytorch-metric-learning's CrossBatchMemory(SupConLoss), side by side in one run.

    python -m bench.bench_memory_loss [--quick] [--json PATH] [--device cpu|cuda]

Cases, at batch B (2 views, N = 2B rows), D = 128, 100 classes, T = 0.1, queue of M keys:
  no_queue    pipeline.losses.supcon_loss on the batch alone (what a small batch trains with today)
  ours_queue  pipeline.memory_loss.supcon_loss_with_memory: the batch against itself and M keys
  pml_xbm     CrossBatchMemory(SupConLoss, memory_size = M + N), its memory filled beforehand:
              each call enqueues the batch and contrasts it with the memory less its own slots,
              so it contrasts as many rows as ours_queue (N - 1 + M)
This is the loss alone: the momentum encoder's forward of the keys (one no-grad forward of the
batch) is the training step's cost, not the loss's.

Time: median of one forward+backward, cases round-robin, after warmup. Peak memory beyond the
inputs: CUDA max_memory_allocated in this process; CPU a fresh subprocess per case with the
kernel's peak-RSS mark reset, as bench.bench_loss does.
"""

import argparse
import json
import subprocess
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

from bench.bench_loss import _step, step_peak_bytes, time_round_robin
from pipeline.losses import supcon_loss
from pipeline.memory_loss import supcon_loss_with_memory

SIZES = ((32, 1024), (32, 4096), (32, 16384), (256, 4096), (256, 16384))  # (batch, queue keys)
QUICK_SIZES = ((32, 4096), (256, 4096))
VIEWS, DIM, CLASSES, TEMPERATURE = 2, 128, 100, 0.1
CASES = ("no_queue", "ours_queue", "pml_xbm")


def _inputs(batch: int, keys: int, device: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    features = F.normalize(torch.randn(batch, VIEWS, DIM, generator=gen), dim=-1)
    labels = torch.randint(0, CLASSES, (batch,), generator=gen)
    memory = F.normalize(torch.randn(keys, DIM, generator=gen), dim=-1)
    key_labels = torch.randint(0, CLASSES, (keys,), generator=gen)
    return features.to(device), labels.to(device), memory.to(device), key_labels.to(device)


def _loss_fn(case: str, memory: torch.Tensor, key_labels: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Case name -> fn(features [B, V, D], labels [B]) -> scalar loss."""
    if case == "no_queue":
        return lambda f, y: supcon_loss(f, y, temperature=TEMPERATURE)
    if case == "ours_queue":
        return lambda f, y: supcon_loss_with_memory(f, y, memory, key_labels, temperature=TEMPERATURE)
    if case == "pml_xbm":
        from pytorch_metric_learning.losses import CrossBatchMemory, SupConLoss

        return _pml_xbm(CrossBatchMemory, SupConLoss, memory, key_labels)
    raise ValueError(f"case must be one of {CASES}, got {case!r}")


def _pml_xbm(cross_batch_memory, supcon, memory: torch.Tensor, key_labels: torch.Tensor):
    wrapped: dict = {}

    def loss(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        rows, labels = f.reshape(-1, f.shape[-1]), y.repeat_interleave(f.shape[1])
        if not wrapped:  # sized by the first batch: M keys already in, room for one batch more
            xbm = cross_batch_memory(supcon(temperature=TEMPERATURE), embedding_size=DIM, memory_size=len(memory) + len(rows)).to(f.device)
            xbm.add_to_memory(memory, key_labels, len(memory))
            wrapped["xbm"] = xbm
        return wrapped["xbm"](rows, labels)

    return loss


def _time_cases(batch: int, keys: int, device: str, repeats: int, warmup: int) -> dict[str, float]:
    features, labels, memory, key_labels = _inputs(batch, keys, device)
    return time_round_robin({case: _loss_fn(case, memory, key_labels) for case in CASES}, features, labels, repeats, warmup)


def _peak_bytes_here(case: str, batch: int, keys: int, device: str) -> int:
    features, labels, memory, key_labels = _inputs(batch, keys, device)
    fn = _loss_fn(case, memory, key_labels)
    _step(fn, features, labels)  # first-call allocations and pml's memory buffer are not the step's
    return step_peak_bytes(fn, features, labels, device)


def _peak_bytes(case: str, batch: int, keys: int, device: str) -> int:
    if device.startswith("cuda"):
        return _peak_bytes_here(case, batch, keys, device)
    cmd = [sys.executable, "-m", "bench.bench_memory_loss", "--peak-of", case, str(batch), str(keys)]
    return int(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


def run(quick: bool, device: str) -> list[dict]:
    repeats, warmup = (5, 1) if quick else (9, 2)
    rows = []
    for batch, keys in QUICK_SIZES if quick else SIZES:
        seconds = _time_cases(batch, keys, device, repeats, warmup)
        peaks = {case: _peak_bytes(case, batch, keys, device) for case in CASES}
        for case in CASES:
            rows.append({
                "bench": "memory_loss", "device": device, "batch": batch, "n": VIEWS * batch, "keys": keys, "case": case,
                "time_s": seconds[case], "peak_mib": peaks[case] / 2**20,
                "time_vs_no_queue": seconds[case] / seconds["no_queue"], "speedup_vs_pml": seconds["pml_xbm"] / seconds[case],
                "memory_vs_pml": peaks[case] / max(peaks["pml_xbm"], 1),
            })  # fmt: skip
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = ["| B | keys | case | time (ms) | peak (MiB) | time / no queue | x faster than pml | memory / pml |",
             "|---:|---:|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['batch']} | {r['keys']} | {r['case']} | {1000 * r['time_s']:.2f} | {r['peak_mib']:.1f} | "
            f"{r['time_vs_no_queue']:.1f} | {r['speedup_vs_pml']:.2f} | {r['memory_vs_pml']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two sizes, fewer repeats")
    parser.add_argument("--json", help="write the rows to this path")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--peak-of", nargs=3, metavar=("CASE", "BATCH", "KEYS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_of:
        print(_peak_bytes_here(args.peak_of[0], int(args.peak_of[1]), int(args.peak_of[2]), "cpu"))
        return
    rows = run(args.quick, args.device)
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads")
    print(markdown_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
