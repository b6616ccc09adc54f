"""Apply a preset from configs/ to params.yaml: `python -m stages.preset configs/cifar10_resnet50.yaml`.

A preset holds only the keys it changes; they are merged into params.yaml, the result is validated,
and params.yaml is replaced atomically (the old file survives any error). `--print` shows the
merged params without writing; `--dvc-args` prints `-S key=value` flags for `dvc exp run`.
"""

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

from pipeline import atomic
from pipeline.config import parse_params
from pipeline.config_schema import flatten
from pipeline.errors import UserError
from stages import paths


def merged_params(base: Mapping, preset: Mapping) -> dict:
    """Deep-merge `preset` into `base` (preset wins; mappings merge, everything else replaces)."""
    merged = dict(base)
    for key, value in (preset or {}).items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merged_params(merged[key], value)
        else:
            merged[key] = value
    return merged


def _yaml_value(value: object) -> str:
    """A value as `dvc exp run -S key=<value>` parses it: flow-style YAML on one line."""
    # safe_dump ends a lone scalar with the document-end marker "..."
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip().removesuffix("...").strip()


def _load_yaml(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: preset not found; available: {', '.join(sorted(p.name for p in Path('configs').glob('*.yaml')))}")
    return yaml.safe_load(path.read_text()) or {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", type=Path)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--print", action="store_true", help="print the merged params, write nothing")
    mode.add_argument("--dvc-args", action="store_true", help="print -S flags for `dvc exp run`")
    args = parser.parse_args(argv)
    try:
        preset = _load_yaml(args.preset)
        merged = merged_params(_load_yaml(paths.PARAMS), preset)
        parse_params(merged)
    except UserError as err:
        print(f"error: {args.preset}: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.dvc_args:
        print(" ".join(f"-S '{key}={_yaml_value(value)}'" for key, value in flatten(preset).items()))
    elif args.print:
        print(yaml.safe_dump(merged, sort_keys=False))
    else:
        atomic.write_text(paths.PARAMS, yaml.safe_dump(merged, sort_keys=False))
        print(f"applied {args.preset} to {paths.PARAMS} (git diff params.yaml shows the change)")


if __name__ == "__main__":
    main()
