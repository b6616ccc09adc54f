"""All benchmarks in one run: loss, loss with a key queue, augmentation, training step, the key queue per training step, corruption, decoding, with one combined JSON.

    python -m bench [--quick] [--device cpu|cuda] [--out bench/results] [--only NAME ...]

Each benchmark's run() is called in turn in this process; its markdown table is printed, and
the rows of all of them go to <out>/bench-<device>-<UTC time>.json together with the machine
(CPU model, cores, load average, torch version and threads, CUDA device).
"""

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from bench import bench_augment, bench_corruption, bench_decode, bench_loss, bench_memory_loss, bench_queue_step, bench_train_step
from bench.common import machine_info

BENCHES = {  # name -> (run(quick, device) -> rows, rows -> markdown table)
    "loss": (bench_loss.run, bench_loss.markdown_table),
    "memory_loss": (bench_memory_loss.run, bench_memory_loss.markdown_table),
    "augment": (bench_augment.run, bench_augment.format_table),
    "train_step": (bench_train_step.run, bench_train_step.markdown_table),
    "queue_step": (bench_queue_step.run, bench_queue_step.markdown_table),
    "corruption": (bench_corruption.run, bench_corruption.format_table),
    "decode": (bench_decode.run, bench_decode.format_table),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats (about 3 minutes on 2 cores)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="folder for the JSON")
    parser.add_argument("--only", nargs="+", choices=list(BENCHES), default=list(BENCHES), help="run only these")
    args = parser.parse_args(argv)
    started = datetime.now(timezone.utc)
    result = {"machine": machine_info(), "quick": args.quick, "device": args.device,
              "started_utc": started.isoformat(timespec="seconds")}  # fmt: skip
    for name in args.only:
        run, table = BENCHES[name]
        clock = time.perf_counter()
        rows = run(args.quick, args.device)
        seconds = time.perf_counter() - clock
        print(f"\n## {name} ({seconds:.0f} s)\n\n{table(rows)}", flush=True)
        result[name] = rows
        result[f"{name}_seconds"] = seconds
    m = result["machine"]
    print(f"\n{m['cpu']}, {m['cores']} cores, load {m['load_avg_1m']} at start, torch {m['torch']}, "
          f"{m['torch_threads']} threads" + (f", {m['cuda_device']}" if m["cuda_device"] else ""))  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench-{args.device}-{started:%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
