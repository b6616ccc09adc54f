"""The report's inputs: the metrics files on disk, read once, each remembered as a source.

Required: <seeds>/<seed>/linear_eval.json and <seeds>/<seed>/train_ce.json for every training
seed the caller names (params' run.seeds). Everything else is optional and read as empty when
missing. Only the seeds and reduced-data cells the caller names are read: results of seeds or
fractions since removed from params may still lie on disk, and are not this run's. The folders
come from the caller (the `report` stage passes stages.paths).
"""

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import UserError

CURVE_STAGES = ("pretrain_supcon", "train_ce", "linear_eval")
"""Stages whose plots/<stage>.csv the report draws as training curves."""


@dataclass(frozen=True)
class Folders:
    """Where the metrics files lie."""

    seeds: Path
    """<seeds>/<seed>/<stage>.json: the main comparison's values per training seed."""
    seed_plots: Path
    """<seed_plots>/<seed>/<stage>.csv: a stage's metrics per epoch, per training seed."""
    reduced: Path
    """<reduced>/<cell>.json: one file per reduced-data cell."""
    sweeps: Path
    """<sweeps>/<name>/summary.json: one file per sweep."""
    long_tail: Path | None = None
    """<long_tail>/<cell>.json: one file per long-tailed-data cell; None: none read."""
    small_batch: Path | None = None
    """<small_batch>/<cell>.json: one file per small-batch cell; None: none read."""

    def metrics_file(self, stage: str, seed: int) -> Path:
        return self.seeds / str(seed) / f"{stage}.json"

    def plot_file(self, stage: str, seed: int) -> Path:
        return self.seed_plots / str(seed) / f"{stage}.csv"


class Reader:
    """Reads metrics files and remembers each one (path -> content): the report's sources."""

    def __init__(self) -> None:
        self.sources: dict[Path, dict] = {}

    def json(self, path: Path, need: tuple[str, ...] = ()) -> dict:
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: not valid JSON ({err}); rerun the stage that writes it") from None
        missing = [key for key in need if key not in data]
        if missing:
            raise UserError(f"{path}: has no {', '.join(missing)}; rerun the stage that writes it")
        self.sources[path] = data
        return data

    def csv(self, path: Path) -> list[dict[str, float]]:
        """Rows of a plots/<stage>.csv as numbers; empty cells (a metric not computed that epoch) left out."""
        with path.open(newline="") as handle:
            rows = [{key: float(value) for key, value in row.items() if value != ""} for row in csv.DictReader(handle)]
        self.sources[path] = {}
        return rows


@dataclass
class Inputs:
    """Everything the report shows, as read from disk; seed -> metrics where seeds can differ."""

    supcon: dict[int, dict]
    ce: dict[int, dict]
    pretrain: dict[int, dict]
    robustness: dict[int, dict]
    reduced: list[dict]
    sweeps: list[tuple[Path, dict]]
    """Newest first."""
    curves: dict[str, list[dict[str, float]]]
    sources: dict[Path, dict] = field(default_factory=dict)
    curve_files: dict[str, Path] = field(default_factory=dict)
    """stage -> the CSV its curve was read from (the first seed's)."""
    layout: str = "values per seed"
    """Where the values per seed came from, as the Sources section says it."""
    long_tail: list[dict] = field(default_factory=list)
    """The long-tailed-data cells (metrics/long_tail/<cell>.json)."""
    small_batch: list[dict] = field(default_factory=list)
    """The small-batch cells (metrics/small_batch/<cell>.json)."""

    @property
    def method(self) -> str:
        return next(iter(self.supcon.values())).get("method", "supcon")


def per_seed(reader: Reader, folders: Folders, stage: str, seeds: list[int], need: tuple[str, ...] = ()) -> dict[int, dict]:
    """seed -> metrics of `stage` from <seeds>/<seed>/<stage>.json, for the seeds that have one."""
    found = {seed: folders.metrics_file(stage, seed) for seed in seeds}
    return {seed: reader.json(path, need) for seed, path in found.items() if path.is_file()}


def required(reader: Reader, folders: Folders, stage: str, seeds: list[int]) -> dict[int, dict]:
    runs = per_seed(reader, folders, stage, seeds, need=("test/top1", "test/ece"))
    missing = [seed for seed in seeds if seed not in runs]
    if missing:
        raise UserError(f"{folders.metrics_file(stage, missing[0])}: missing; run `dvc repro {stage}@{missing[0]}` first")
    return runs


def read_inputs(
    folders: Folders, seeds: list[int], cells: set[str] | None = None, long_tail_cells: set[str] | None = None, small_batch_cells: set[str] | None = None
) -> Inputs:
    """The report's inputs from `folders` for training `seeds` (params' run.seeds), the
    reduced-data `cells`, the `long_tail_cells` and the `small_batch_cells` (names; None: every
    cell on disk). Raises UserError when a required file is missing or a file lacks a key the
    report needs."""
    reader = Reader()
    cell_files = [path for path in sorted(folders.reduced.glob("*.json")) if cells is None or path.stem in cells]
    cells_read = [reader.json(path, need=("fraction", "method", "seed", "test/top1")) for path in cell_files]
    tails_read = [reader.json(path, need=("factor", "method", "seed", "test/top1", "test/top1_per_class", "train_per_class")) for path in _cell_files(folders.long_tail, long_tail_cells)]
    small_read = [reader.json(path, need=("batch_size", "queue", "equal", "seed", "test/top1", "budget")) for path in _cell_files(folders.small_batch, small_batch_cells)]
    sweeps = [(path, reader.json(path, need=("trials",))) for path in sorted(folders.sweeps.glob("*/summary.json"))]
    # Newest by the date the sweep recorded: file times change with every checkout or copy.
    sweeps.sort(key=lambda item: str(item[1].get("date", "")), reverse=True)
    curve_files = {stage: folders.plot_file(stage, seeds[0]) for stage in CURVE_STAGES if folders.plot_file(stage, seeds[0]).is_file()}
    curves = {stage: reader.csv(path) for stage, path in curve_files.items()}
    supcon, ce = required(reader, folders, "linear_eval", seeds), required(reader, folders, "train_ce", seeds)
    pretrain = per_seed(reader, folders, "pretrain_supcon", seeds)
    robustness = per_seed(reader, folders, "robustness", seeds, need=("supcon", "ce"))
    layout = f"values per seed from `{folders.seeds}/<seed>/` (run.seeds: {', '.join(map(str, seeds))})"
    return Inputs(
        supcon=supcon, ce=ce, pretrain=pretrain, robustness=robustness, reduced=cells_read, sweeps=sweeps, curves=curves,
        sources=reader.sources, curve_files=curve_files, layout=layout, long_tail=tails_read, small_batch=small_read,
    )  # fmt: skip


def _cell_files(folder: Path | None, names: set[str] | None) -> list[Path]:
    """<folder>/<cell>.json of the named cells (None: every one there); none without a folder."""
    return [path for path in sorted(folder.glob("*.json")) if names is None or path.stem in names] if folder else []


# --- views of the files' contents, shared by the claims and the sections ------------------------


def reduced_top1(cells: list[dict], by: str = "fraction", value=lambda cell: cell["test/top1"]) -> dict[str, dict[float, dict[int, float]]]:
    """side -> fraction -> seed -> test top-1, from the reduced-data cells. Side "supcon" holds
    the contrastive cells whatever their method (a cell records simclr when supcon.method says so).
    by: the cells' matrix value (a long-tailed cell's "factor"); value: what to read of a cell."""
    top1: dict[str, dict[float, dict[int, float]]] = {"supcon": {}, "ce": {}}
    for cell in cells:
        side = "ce" if cell["method"] == "ce" else "supcon"
        top1[side].setdefault(cell[by], {})[cell["seed"]] = value(cell)
    return top1


def contrastive_method(cells: list[dict]) -> str:
    """The method of the contrastive cells (supcon or simclr); several would be mixed up in one curve."""
    return "; ".join(dict.fromkeys(cell["method"] for cell in cells if cell["method"] != "ce")) or "supcon"


def severities(run: dict) -> list[str]:
    """The severity levels of a robustness run, in order (0 = clean)."""
    return sorted(run["supcon"]["by_severity"], key=int)


def swept_key(summary: dict) -> str:
    """The trials' parameter named by the sweep's space (also as a dotted key, supcon.temperature)."""
    keys = list(dict.fromkeys(key for trial in summary["trials"] for key in trial["params"]))
    space = str(summary.get("space", ""))
    return next((k for k in keys if k == space or k.endswith("." + space)), keys[0] if keys else space)


def best_value(summary: dict, key: str):
    """The sweep's best value of `key` (None when it recorded no best)."""
    best = summary.get("best") or {}
    return best.get("params", best).get(key)
