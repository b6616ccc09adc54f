"""Finite spaces run as a grid, not sampled (pipeline/sweep/grid.py): TPE re-proposes categorical
values, so a sampled `--space augmentation --samples 4` trained one configuration twice with the
same seed, a wasted trial. Checked: the grids of the spaces, the plan's order and replicates,
and sweeps on both backends: no two trials train the same (configuration, seed), replicate r
trains with seed run.seeds[0] + r (MLflow tags, different results), results.csv, the summary's
mean over replicates, and `--resume --samples` continuing the plan.

Uses test_sweep's brightness Fashion-MNIST fixture (240 train images of 8x8, a width-2 ResNet).
"""

import csv
import json
from pathlib import Path

import pytest

from pipeline.sweep.driver import run_sweep
from pipeline.sweep.grid import REPLICATE, config_of, enumerate_space, planned
from pipeline.sweep.results import best_trial
from pipeline.sweep.spaces import AUGMENTATIONS, BATCH_SIZES, FEAT_DIMS, HEADS, MEMORY_MOMENTA, MEMORY_SIZES, SPACES
from test_sweep import runs_of, spec, tiny  # noqa: F401  (tiny: the module fixture)


@pytest.mark.parametrize("name", list(SPACES))
def test_categorical_spaces_are_enumerated_and_continuous_ones_are_sampled(name):
    grid = enumerate_space(name, "supcon")
    expected = {
        "augmentation": [{"supcon.augmentation.policy": p} for p in AUGMENTATIONS],
        "batch_size": [{"supcon.batch_size": b} for b in BATCH_SIZES],
        "head": [{"model.head": h, "model.feat_dim": d} for h in HEADS for d in FEAT_DIMS],
        "variant": [{"supcon.variant": "out"}, {"supcon.variant": "in"}],
        "memory": [{"supcon.memory.size": 0}] + [{"supcon.memory.size": n, "supcon.memory.momentum": m} for n in MEMORY_SIZES[1:] for m in MEMORY_MOMENTA],
    }
    assert grid == expected.get(name), grid  # temperature, optimizer (its lr), lr: None


def test_the_plan_puts_params_yaml_first_then_repeats_the_grid_as_replicates():
    grid = [{"k": "a"}, {"k": "b"}, {"k": "c"}]
    plan = planned(grid, 7, first={"k": "b"})
    assert plan == [
        {"k": "b", REPLICATE: 0}, {"k": "a", REPLICATE: 0}, {"k": "c", REPLICATE: 0},
        {"k": "b", REPLICATE: 1}, {"k": "a", REPLICATE: 1}, {"k": "c", REPLICATE: 1},
        {"k": "b", REPLICATE: 2},
    ]  # fmt: skip
    assert planned(grid, 2, first={"k": "z"}) == [{"k": "a", REPLICATE: 0}, {"k": "b", REPLICATE: 0}]  # not in the grid: its own order


def _trained(s) -> list[tuple[dict, int]]:
    rows = list(csv.DictReader((s.folder / "results.csv").open()))
    return [({k: v for k, v in row.items() if k == "supcon.variant"}, int(row[REPLICATE])) for row in rows]


def test_a_grid_sweep_never_repeats_a_configuration_with_the_same_seed_and_resume_continues_it(tiny, tmp_path):
    first = run_sweep(tiny["params"], spec(tiny, tmp_path, name="variant", space="variant", num_samples=3), echo=lambda line: None)
    s = spec(tiny, tmp_path, name="variant", space="variant", num_samples=5)
    resumed = run_sweep(tiny["params"], s, resume=True, echo=lambda line: None)

    assert len(first.ledger.trials) == 3 and len(resumed.new_trials) == 2
    configured = tiny["params"].supcon.variant
    other = "in" if configured == "out" else "out"
    order = [(t.params["supcon.variant"], t.params[REPLICATE]) for t in sorted(resumed.ledger.trials, key=lambda t: t.number)]
    assert order == [(configured, 0), (other, 0), (configured, 1), (other, 1), (configured, 2)]
    # A replicate is another training seed: its own MLflow tag, and a different training run.
    client, parents, children = runs_of(s)
    seeds = {(c.data.params["supcon.variant"], c.data.tags["sweep.replicate"]): c.data.tags["seed"] for c in children}
    base = tiny["params"].run.seeds[0]
    assert seeds == {(v, str(r)): str(base + r) for v, r in order}
    losses = [t.metrics["train/loss"] for t in resumed.ledger.trials]
    assert len(set(losses)) == len(losses), losses  # no trial repeated another bit for bit
    header = (s.folder / "results.csv").read_text().splitlines()[0].split(",")
    assert REPLICATE in header and "node" in header
    # The best configuration ranks by the mean of its replicates, and says how many it averages.
    summary = json.loads((s.folder / "summary.json").read_text())
    best = best_trial(resumed.ledger.trials)
    group = [t.objective for t in resumed.ledger.trials if config_of(t.params) == best.params and t.state == best.state]
    assert REPLICATE not in summary["best"]["params"] and summary["best"]["runs"] == len(group) >= 2
    assert summary["best"]["objective"] == pytest.approx(sum(group) / len(group))
    assert "replicate" not in resumed.dvc_line and resumed.dvc_line.startswith("dvc exp run -S 'supcon.variant=")
    assert parents[0].data.params["sweep.searcher"].startswith("grid of its 2 configurations")


def test_a_grid_sweep_on_ray_runs_each_configuration_once(tiny, tmp_path):
    pytest.importorskip("ray")
    s = spec(tiny, tmp_path, name="variant", space="variant", num_samples=2, max_concurrent=2, epochs=1, backend="ray")
    outcome = run_sweep(tiny["params"], s, echo=lambda line: None)

    values = sorted((t.params["supcon.variant"], t.params[REPLICATE]) for t in outcome.ledger.trials)
    assert values == [("in", 0), ("out", 0)]
    assert all(t.node.startswith("127.0.0.1/") for t in outcome.ledger.trials)  # the local Ray's loopback address
    assert Path(s.folder / "ray.log").stat().st_size > 0
