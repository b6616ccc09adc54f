"""Benchmark: what the momentum-key queue (`supcon.memory`) costs per SupCon training step, against
no queue at the same batch (time and memory), side by side in one run.

    python -m bench.bench_queue_step [--quick] [--json PATH] [--device cpu|cuda]

A whole training step as `pipeline.engine.fit` runs it (the engine's own `_train_step` on the Loop
of `bench.bench_train_step.pipeline_loop`, which `pipeline.training.train` builds alike): two
SimAugment views of a uint8 batch, the default model of params.yaml (`build_supcon_model`:
small_resnet width 16, depth 3, blocks 1, mlp head, feat_dim 128) on 28x28x1 inputs with 10
classes, the loss of `pipeline.methods.contrastive.contrastive_loss` with the KeyMemory of
`key_memory`, backward, SGD step and schedule, then (queue on) the key encoder's EMA update. With
the queue the step also runs the key encoder's no-grad forward of the views and the enqueue.

Cases at each batch B (same initial weights, same batches):
  no_queue   supcon.memory.size 0: supcon_loss on the batch alone
  queue_M    supcon.memory.size M, momentum 0.99. The queue is filled with M random unit keys
             (random labels of the 10 classes) before the warm-up steps, so every timed step
             contrasts its 2B anchors with the whole queue, as in training once M keys were seen.

Time: median over repeats of one step, the cases of a batch round-robin step by step (one step of
each in turn, after warm-up rounds) so that load from other processes hits them alike. Peak memory
beyond the inputs (model, optimizer state, key encoder and queue, the uint8 batches: all allocated
before): CUDA max_memory_allocated of one step in this process; CPU a fresh subprocess per case,
the kernel's peak-RSS mark reset after warm-up steps (bench.common.peak_bytes, as bench.bench_loss),
with glibc's malloc thresholds fixed so that the resident set tracks live tensors
(bench.common.FIXED_MALLOC_ENV; the gradients, set to None each step, count in the peak).
"queue state" is what the queue adds before any step: the key encoder's weights and buffers and
the stored keys and labels (the KeyMemory's state_dict, which checkpoints store too).
"""

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

from bench.bench_train_step import CLASSES, pipeline_loop
from bench.common import FIXED_MALLOC_ENV, machine_info, peak_bytes, round_robin, synchronizer
from pipeline.config import MemoryConfig
from pipeline.engine import Loop, _train_step  # the loop's own step: the bench times what fit runs
from pipeline.models import build_supcon_model

BATCHES, KEYS = (32, 256), (1024, 4096, 16384)
QUICK_BATCHES, QUICK_KEYS = (32, 256), (4096,)
FULL, QUICK = (15, 2), (5, 2)  # (timed steps per case, warm-up rounds)
PEAK_WARMUP = 3  # steps before the peak-memory step (first-call allocations, optimizer state)
MOMENTUM = 0.99
# params.yaml's model and Fashion-MNIST-like inputs
MODEL = {
    "encoder_name": "small_resnet", "in_channels": 1, "image_size": 28,
    "width": 16, "depth": 3, "blocks": 1, "head": "mlp", "feat_dim": 128,
}  # fmt: skip
POOL = 4  # distinct batches each case cycles through
TRAIN_ITEMS = 60_000  # the schedule's and the queue cap's training images (Fashion-MNIST's train split)


def case_name(keys: int) -> str:
    return "no_queue" if keys == 0 else f"queue_{keys}"


def _case(batch: int, keys: int, device: torch.device) -> tuple[Loop, Callable[[], None]]:
    """The Loop of one case and fn() -> one training step on the next batch of the pool, finished."""
    gen = torch.Generator().manual_seed(0)
    size = MODEL["image_size"]
    images = torch.randint(0, 256, (POOL * batch, MODEL["in_channels"], size, size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, CLASSES, (POOL * batch,), generator=gen)
    torch.manual_seed(0)  # the same initial weights in every case
    model = build_supcon_model(**MODEL)
    memory = MemoryConfig(size=keys, momentum=MOMENTUM)
    loop = pipeline_loop(model, images, labels, batch, device, memory=memory, feat_dim=MODEL["feat_dim"], num_items=TRAIN_ITEMS)
    if loop.state is not None:  # a full queue from the first step
        queue = loop.state.queue
        stored = F.normalize(torch.randn(keys, MODEL["feat_dim"], generator=gen), dim=-1)
        queue.enqueue(stored.to(device), torch.randint(0, CLASSES, (keys,), generator=gen).to(device))
        assert int(queue.filled) == keys
    batches = itertools.cycle(list(loop.batches.epoch(0, rank=0, world_size=1)))
    sync = synchronizer(device.type)

    def step() -> None:
        _train_step(loop, device, *next(batches))
        sync()

    return loop, step


def _state_bytes(loop: Loop) -> int:
    """Bytes the queue adds: its KeyMemory's state_dict (key encoder, keys, labels); 0 without."""
    if loop.state is None:
        return 0
    return sum(t.numel() * t.element_size() for t in loop.state.state_dict().values())


def _peak_bytes_here(batch: int, keys: int, device: str) -> int:
    _, step = _case(batch, keys, torch.device(device))
    for _ in range(PEAK_WARMUP):
        step()
    return peak_bytes(step, device)


def _peak_bytes(batch: int, keys: int, device: str) -> int:
    """CPU: measured in a fresh subprocess; CUDA: in this process (the counter resets)."""
    if device.startswith("cuda"):
        return _peak_bytes_here(batch, keys, device)
    cmd = [sys.executable, "-m", "bench.bench_queue_step", "--peak-of", str(batch), str(keys)]
    env = {**os.environ, **FIXED_MALLOC_ENV}  # VmRSS tracks live tensors (see bench.common)
    return int(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1])


def run(quick: bool, device: str) -> list[dict]:
    """One row per (batch, case): median step time, peak memory, and both against no_queue."""
    repeats, warmup = QUICK if quick else FULL
    rows = []
    for batch in QUICK_BATCHES if quick else BATCHES:
        sizes = (0, *(QUICK_KEYS if quick else KEYS))
        cases = {keys: _case(batch, keys, torch.device(device)) for keys in sizes}
        times = round_robin({keys: step for keys, (_, step) in cases.items()}, repeats, warmup)
        seconds = {keys: statistics.median(ts) for keys, ts in times.items()}
        state = {keys: _state_bytes(loop) for keys, (loop, _) in cases.items()}
        del cases  # the peaks run in their own processes (CPU) or from a clean counter (CUDA)
        peaks = {keys: _peak_bytes(batch, keys, device) for keys in sizes}
        for keys in sizes:
            rows.append({
                "bench": "queue_step", "device": device, "batch": batch, "views": 2, "keys": keys,
                "momentum": MOMENTUM if keys else None, "case": case_name(keys),
                "encoder": f"small_resnet w{MODEL['width']} d{MODEL['depth']} b{MODEL['blocks']}",
                "threads": torch.get_num_threads(), "steps_timed": len(times[keys]),
                "time_s": seconds[keys], "time_vs_no_queue": seconds[keys] / seconds[0],
                "peak_mib": peaks[keys] / 2**20, "memory_vs_no_queue": peaks[keys] / max(peaks[0], 1),
                "state_mib": state[keys] / 2**20,
            })  # fmt: skip
    return rows


def markdown_table(rows: list[dict]) -> str:
    """Rows of run() -> a markdown table."""
    lines = ["| B | keys | case | ms/step | time / no queue | peak (MiB) | memory / no queue | queue state (MiB) |",
             "|---:|---:|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['batch']} | {r['keys']} | {r['case']} | {1000 * r['time_s']:.1f} | {r['time_vs_no_queue']:.2f} | "
            f"{r['peak_mib']:.1f} | {r['memory_vs_no_queue']:.2f} | {r['state_mib']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one queue size, fewer repeats")
    parser.add_argument("--json", help="write the rows (and the machine) to this path")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--peak-of", nargs=2, type=int, metavar=("BATCH", "KEYS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_of:
        print(_peak_bytes_here(*args.peak_of, "cpu"))
        return
    info = machine_info()  # before the run: the load average is other processes' load
    rows = run(args.quick, args.device)
    print(f"{info['cpu']}, {info['cores']} cores, load {info['load_avg_1m']} at start, torch {info['torch']}, "
          f"{args.device}, {info['torch_threads']} threads" + (f", {info['cuda_device']}" if info["cuda_device"] else ""))  # fmt: skip
    print(markdown_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
