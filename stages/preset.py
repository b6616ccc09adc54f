"""Apply a preset from configs/ to params.yaml: `python -m stages.preset configs/cifar10_resnet50.yaml`.

A preset holds only the keys it changes; they are merged into params.yaml, the result is validated,
and params.yaml is replaced atomically (the old file survives any error). Only the changed values'
text is rewritten: params.yaml's comments, key order and other lines stay as they are. `--print`
shows the merged params without writing; `--dvc-args` prints `-S key=value` flags for `dvc exp run`;
`--estimate` times a few real steps of every kind of work here and predicts how long `dvc repro`
takes with the merged params (without a preset: with params.yaml as it is), writing nothing.
"""

import argparse
import json
from pathlib import Path

import yaml

from pipeline import atomic
from pipeline.config import Params, parse_params
from pipeline.config_schema import flatten
from pipeline.errors import UserError
from pipeline.one_line_exit import exit_in_one_line
from pipeline.yaml_merge import flow_value, merge_text, merged
from stages import paths

PROG = "python -m stages.preset"

merged_params = merged
"""Deep-merge a preset into params (preset wins; mappings merge, everything else replaces)."""


def _load_yaml(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"preset not found; available: {', '.join(sorted(p.name for p in Path('configs').glob('*.yaml')))}")
    loaded = _safe_load(path.read_text(), "not valid YAML") or {}
    if not isinstance(loaded, dict):
        raise UserError(f"a preset is a mapping of params.yaml's sections, not a {type(loaded).__name__}")
    return loaded


def _safe_load(text: str, problem: str) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UserError(f"{problem}: {' '.join(str(err).split())}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("preset", type=Path, nargs="?", help="a preset (configs/*.yaml); optional with --estimate")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--print", action="store_true", help="print the merged params, write nothing")
    mode.add_argument("--dvc-args", action="store_true", help="print -S flags for `dvc exp run`")
    mode.add_argument("--estimate", action="store_true", help="time a few steps here and predict how long `dvc repro` takes; write nothing")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.preset is None and not args.estimate:
        parser.error("the preset is required (without one, --estimate uses params.yaml as it is)")
    source = args.preset or paths.PARAMS
    with exit_in_one_line(prefix=f"{source}: ", interrupted="interrupted; params.yaml is unchanged"):
        preset = _load_yaml(source) if args.preset else {}
        text = merge_text(_params_text(), preset)
        params = parse_params(yaml.safe_load(text))
        if args.estimate:
            _print_estimate(params)
    if args.dvc_args:
        print(" ".join(f"-S '{key}={flow_value(value)}'" for key, value in flatten(preset).items()))
    elif args.print:
        print(text, end="")
    elif not args.estimate:
        atomic.write_text(paths.PARAMS, text)
        print(f"applied {args.preset} to {paths.PARAMS} (git diff params.yaml shows the change)")


def _params_text() -> str:
    """params.yaml's text, checked to be YAML (merge_text reads its structure)."""
    if not paths.PARAMS.is_file():
        raise UserError(f"{paths.PARAMS}: not found; run from the repository root (where params.yaml is)")
    text = paths.PARAMS.read_text()
    _safe_load(text, f"{paths.PARAMS} is not valid YAML")
    return text


def _print_estimate(params: Params) -> None:
    from pipeline.estimate import counts_for, estimate  # imports torch: only --estimate needs it

    manifest_path = paths.prepared(params.data.dataset) / "manifest.json"
    print(estimate(params, counts_for(params.data, _manifest(manifest_path), where=str(manifest_path))).table())


def _manifest(path: Path) -> dict | None:
    """The prepared store's manifest (the real image counts), or None where there is no readable one."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


if __name__ == "__main__":
    main()
