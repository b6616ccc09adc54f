"""Benchmark: SupCon loss forward+backward time and peak memory against two references.

    python -m bench.bench_loss [--quick] [--json PATH] [--device cpu|cuda]

Cases, at N = 2*B rows (B images, 2 views), D = 128, 100 classes, T = 0.1:
  ours            pipeline.losses.supcon_loss, default (dense) path
  ours_blockwise  the same with block_size=BLOCK_SIZE (memory O(N * BLOCK_SIZE))
  pml             pytorch-metric-learning's SupConLoss on the [N, D] embeddings
  dense           the widely copied dense formulation (dense_supcon_loss below)

Time: median over repeats of one forward+backward, after warmup. The cases are timed
round-robin (one repeat of each in turn) so that load from other processes on a shared machine
hits them alike; the ratios are the meaningful numbers.

Peak memory: what the loss needs beyond its inputs.
  CUDA: torch.cuda.max_memory_allocated during one forward+backward minus the allocation before.
  CPU: torch's CPU allocator hands large blocks back to the OS, so the resident set tracks live
  tensors. Each case runs in a fresh subprocess: imports, inputs and a small warmup at N = 8
  first; then the kernel's peak-RSS mark is reset (Linux: write 5 to /proc/self/clear_refs) and
  VmRSS read, one forward+backward at full size runs, and VmHWM - VmRSS is reported. (ru_maxrss
  cannot be reset, and import-time peaks would hide the loss's own memory.)
"""

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from bench.common import peak_bytes, round_robin
from pipeline.losses import DEFAULT_BLOCK_SIZE, supcon_loss

BATCHES = (256, 1024, 2048, 4096)
QUICK_BATCHES = (256, 1024)
VIEWS, DIM, CLASSES, TEMPERATURE = 2, 128, 100, 0.1
BLOCK_SIZE = DEFAULT_BLOCK_SIZE
CASES = ("ours", "ours_blockwise", "pml", "dense")


def dense_supcon_loss(features: torch.Tensor, labels: torch.Tensor | None,
                      temperature: float, base_temperature: float | None = None) -> torch.Tensor:
    """The dense formulation popularised by HobbitLong/SupContrast, written out for comparison.

    features: [B, V, D] normalised, labels: [B] or None (SimCLR). Every anchor needs a positive.
    Builds the [N, N] label mask, self-mask, logits, exp-logits and log-probabilities. The loss
    is scaled by temperature / base_temperature (default temperature, so by 1).
    tests/test_losses.py checks pipeline.losses against it; bench/ times both.
    """
    batch, views, _ = features.shape
    contrast = torch.cat(torch.unbind(features, dim=1), dim=0)  # view-major [V*B, D]
    if labels is None:
        mask = torch.eye(batch, device=features.device)
    else:
        mask = torch.eq(labels[:, None], labels[None, :]).float()
    logits = contrast @ contrast.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()  # stability only
    mask = mask.repeat(views, views)
    self_index = torch.arange(batch * views, device=features.device)[:, None]
    logits_mask = torch.scatter(torch.ones_like(mask), 1, self_index, 0)
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
    return -(temperature / (base_temperature or temperature)) * mean_log_prob_pos.mean()


def _loss_fn(case: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Case name -> fn(features [B, V, D], labels [B]) -> scalar loss."""
    if case == "ours":
        return lambda f, y: supcon_loss(f, y, temperature=TEMPERATURE)
    if case == "ours_blockwise":
        return lambda f, y: supcon_loss(f, y, temperature=TEMPERATURE, block_size=BLOCK_SIZE)
    if case == "dense":
        return lambda f, y: dense_supcon_loss(f, y, TEMPERATURE)
    if case == "pml":
        from pytorch_metric_learning.losses import SupConLoss

        pml = SupConLoss(temperature=TEMPERATURE)
        return lambda f, y: pml(f.reshape(-1, f.shape[-1]), y.repeat_interleave(f.shape[1]))
    raise ValueError(f"case must be one of {CASES}, got {case!r}")


def _inputs(batch: int, device: str, seed: int = 0):
    """Normalised features [batch, VIEWS, DIM] and labels [batch] with CLASSES classes."""
    gen = torch.Generator().manual_seed(seed)
    features = F.normalize(torch.randn(batch, VIEWS, DIM, generator=gen), dim=-1)
    labels = torch.randint(0, CLASSES, (batch,), generator=gen)
    return features.to(device), labels.to(device)


def _step(loss_fn, features: torch.Tensor, labels: torch.Tensor) -> None:
    """One forward+backward on a fresh leaf, finished before returning."""
    leaf = features.detach().requires_grad_()
    loss_fn(leaf, labels).backward()
    if leaf.is_cuda:
        torch.cuda.synchronize()


def _time_cases(batch: int, device: str, repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds of forward+backward per case, cases interleaved repeat by repeat."""
    features, labels = _inputs(batch, device)
    return time_round_robin({case: _loss_fn(case) for case in CASES}, features, labels, repeats, warmup)


def time_round_robin(fns: dict[str, Callable], features: torch.Tensor, labels: torch.Tensor, repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds of one forward+backward of each loss fn, the fns interleaved repeat by
    repeat so that load from other processes hits them alike."""
    times = round_robin({case: partial(_step, fn, features, labels) for case, fn in fns.items()}, repeats, warmup)
    return {case: statistics.median(ts) for case, ts in times.items()}


def _peak_bytes_here(case: str, batch: int, device: str) -> int:
    """Extra peak memory of one forward+backward in this process (see module docstring)."""
    fn = _loss_fn(case)
    _step(fn, *_inputs(8, device))  # first-call allocations (kernels, caches) are not the loss's
    features, labels = _inputs(batch, device)
    return step_peak_bytes(fn, features, labels, device)


def step_peak_bytes(fn: Callable, features: torch.Tensor, labels: torch.Tensor, device: str) -> int:
    """Peak memory one forward+backward of `fn` needs beyond what is allocated before it: CUDA's
    allocator counter, or on the CPU the kernel's peak-RSS mark reset first (see module docstring)."""
    return peak_bytes(partial(_step, fn, features, labels), device)


def _peak_bytes(case: str, batch: int, device: str) -> int:
    """CPU: measured in a fresh subprocess; CUDA: in this process (the counter resets)."""
    if device.startswith("cuda"):
        return _peak_bytes_here(case, batch, device)
    cmd = [sys.executable, "-m", "bench.bench_loss", "--peak-of", case, str(batch)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1])


def run(quick: bool, device: str) -> list[dict]:
    """All cases at every size: one dict per (N, case) with time, memory and ratios."""
    repeats, warmup = (3, 1) if quick else (7, 2)
    rows = []
    for batch in QUICK_BATCHES if quick else BATCHES:
        seconds = _time_cases(batch, device, repeats, warmup)
        peaks = {case: _peak_bytes(case, batch, device) for case in CASES}
        for case in CASES:
            rows.append({
                "bench": "loss", "device": device, "n": VIEWS * batch, "batch": batch,
                "case": case, "time_s": seconds[case], "peak_mib": peaks[case] / 2**20,
                "speedup_vs_pml": seconds["pml"] / seconds[case],
                "speedup_vs_dense": seconds["dense"] / seconds[case],
                "memory_vs_dense": peaks[case] / max(peaks["dense"], 1),
            })
    return rows


def markdown_table(rows: list[dict]) -> str:
    """Rows of run() -> a markdown table."""
    lines = ["| N | case | time (ms) | peak (MiB) | x faster than pml | x faster than dense "
             "| memory / dense |", "|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['n']} | {r['case']} | {1000 * r['time_s']:.1f} | "
                     f"{r['peak_mib']:.1f} | {r['speedup_vs_pml']:.2f} | "
                     f"{r['speedup_vs_dense']:.2f} | {r['memory_vs_dense']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small sizes, fewer repeats")
    parser.add_argument("--json", help="write the rows to this path")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--peak-of", nargs=2, metavar=("CASE", "BATCH"),
                        help=argparse.SUPPRESS)  # internal: one memory measurement
    args = parser.parse_args(argv)
    if args.peak_of:
        print(_peak_bytes_here(args.peak_of[0], int(args.peak_of[1]), "cpu"))
        return
    rows = run(args.quick, args.device)
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads")
    print(markdown_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
