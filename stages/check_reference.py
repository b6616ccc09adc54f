"""`python -m stages.check_reference [--rev REV]`: fresh metrics/ against the committed reference.

Not a DVC stage: run it after training anew (`rm -rf models && make repro`; with models/ in
place a forced rerun only reports the finished runs again) to see whether this machine
reproduces the committed results (metrics/compare.json and metrics/seeds/<seed>/*.json at REV,
default HEAD, for every seed present here) within the tolerance pipeline/reference.py states.
Exits 1 if a number is outside it.
"""

import argparse
import json
import subprocess

from pipeline.errors import UserError
from pipeline.one_line_exit import exit_in_one_line
from pipeline.reference import COMPARED, compare_results, format_table
from stages import paths


def _committed(stage: str, rev: str) -> dict:
    shown = subprocess.run(["git", "show", f"{rev}:{paths.metrics_file(stage).as_posix()}"], capture_output=True, text=True)
    if shown.returncode != 0:
        raise UserError(f"{paths.metrics_file(stage)}: not committed at {rev}; nothing to compare with")
    return json.loads(shown.stdout)


def _fresh(stage: str) -> dict:
    path = paths.metrics_file(stage)
    if not path.is_file():
        raise UserError(f"{path}: missing; run `dvc repro` first")
    return json.loads(path.read_text())


def _outputs() -> list[str]:
    """The outputs to compare: compare.json and each seed's main-comparison metrics, those written here."""
    stages = sorted({stage for stage, _ in COMPARED})
    seeds = sorted(p.name for p in paths.SEEDS_METRICS.glob("*") if p.name.isdigit())
    if not seeds:
        raise UserError(f"{paths.SEEDS_METRICS}: no seed folders; run `dvc repro` first")
    outputs = ["compare"] + [paths.seeded(stage, int(seed)) for seed in seeds for stage in stages if stage != "compare"]
    return [output for output in outputs if paths.metrics_file(output).is_file()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="git revision holding the reference metrics/")
    args = parser.parse_args(argv)
    with exit_in_one_line():
        outputs = _outputs()
        rows = compare_results({o: _committed(o, args.rev) for o in outputs}, {o: _fresh(o) for o in outputs})
    print(format_table(rows))
    outside = [r for r in rows if not r.ok]
    print(f"{len(rows) - len(outside)} of {len(rows)} within tolerance")
    raise SystemExit(1 if outside else 0)


if __name__ == "__main__":
    main()
