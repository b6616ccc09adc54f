"""Long-tailed training data (issue 21): the split the stages train on (pipeline/long_tail.py), per-class
top-1 against a plain reference, head / middle / tail thirds on a hand-computed example, the report's
section from fixture metrics, and the real `python -m stages.long_tail` CLI on a tiny prepared
Fashion-MNIST (the helpers of test_reduced_cells.py): a cell's metrics and a bad factor's one line."""

import json
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from pipeline.config import ImbalanceConfig, parse_params
from pipeline.data import Split
from pipeline.errors import ConfigError
from pipeline.evaluate import per_class_top1
from pipeline.imbalance import kept_per_rank, long_tailed_indices
from pipeline.long_tail import long_tailed_split
from pipeline.report.long_tail_view import size_thirds, thirds_top1
from test_reduced_cells import prepared  # noqa: F401 (a fixture: the tiny prepared store, made once)


def balanced(per_class: int, classes: int = 10) -> Split:
    """A shuffled balanced split whose image i holds the value i (so rows can be traced)."""
    labels = torch.arange(classes).repeat(per_class)[torch.randperm(classes * per_class, generator=torch.Generator().manual_seed(7))]
    return Split(torch.arange(len(labels), dtype=torch.int32).view(-1, 1, 1, 1), labels)


# ---- the split ----


@pytest.mark.parametrize(("imbalance", "order_seed"), [(ImbalanceConfig(factor=10), None), (ImbalanceConfig(factor=100, class_order="seeded"), 3), (ImbalanceConfig(factor=5, profile="step"), None)])
def test_the_long_tailed_split_is_the_rows_pipeline_imbalance_keeps(imbalance, order_seed):
    split = balanced(100)
    rows = long_tailed_indices(split.labels, imbalance.factor, imbalance.profile, order_seed=order_seed, seed=3)

    tail = long_tailed_split(split, imbalance, seed=3)

    assert torch.equal(tail.labels, split.labels[rows]) and torch.equal(tail.images.flatten(), rows.to(torch.int32))
    assert sorted(torch.bincount(tail.labels).tolist(), reverse=True) == kept_per_rank(100, 10, imbalance.factor, imbalance.profile)


def test_no_factor_keeps_the_split_and_the_main_stages_subsample_train_only():
    from stages import common

    split, val, test = balanced(50), balanced(5), balanced(5)
    assert long_tailed_split(split, ImbalanceConfig(), seed=0) is split
    data = SimpleNamespace(subset=lambda fraction: split, train=split, val=val, test=test)
    params = parse_params({"data": {"imbalance": {"factor": 10}}})

    trained = common.train_split(data, params)

    assert torch.bincount(trained.labels).tolist() == kept_per_rank(50, 10, 10, "exponential")
    assert data.val is val and data.test is test and len(val) == len(test) == 50  # never passed through
    assert common.train_split(data, replace(params, data=replace(params.data, imbalance=ImbalanceConfig()))) is split


@pytest.mark.parametrize(("per_class", "factor"), [(20, 21), (49, 50)])
def test_a_factor_that_empties_a_class_is_one_line_naming_the_key(per_class, factor):
    with pytest.raises(ConfigError) as raised:
        long_tailed_split(balanced(per_class), ImbalanceConfig(factor=factor), seed=0, key="long_tail.factors")
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"long_tail.factors = {factor!r} is not allowed") and f"has {per_class} images" in message


# ---- per-class top-1 and the thirds ----


@pytest.mark.parametrize(("n", "classes"), [(1, 3), (50, 10), (333, 7)])
def test_per_class_top1_matches_a_plain_loop(n, classes):
    generator = torch.Generator().manual_seed(n)
    logits, labels = torch.randn(n, classes, generator=generator), torch.arange(n) % classes

    expected = []
    for c in range(classes):
        mine = [i for i in range(n) if labels[i] == c]
        expected.append(sum(int(logits[i].argmax() == c) for i in mine) / len(mine) if mine else 0.0)

    assert per_class_top1(logits, labels) == pytest.approx(expected)


def test_thirds_rank_classes_by_train_images_and_average_their_top1():
    # Class 9 is the largest, classes 3 and 5 tie (index order); 10 classes: 4 head, 3 middle, 3 tail.
    train = [50, 40, 30, 20, 90, 20, 10, 5, 1, 100]
    top1 = [0.9, 0.8, 0.7, 0.6, 1.0, 0.5, 0.4, 0.3, 0.2, 0.95]
    assert size_thirds(train) == {"head": [9, 4, 0, 1], "middle": [2, 3, 5], "tail": [6, 7, 8]}
    thirds = thirds_top1({"train_per_class": train, "test/top1_per_class": top1})
    assert thirds == pytest.approx({"head": (0.95 + 1.0 + 0.9 + 0.8) / 4, "middle": (0.7 + 0.6 + 0.5) / 3, "tail": (0.4 + 0.3 + 0.2) / 3})
    assert size_thirds([5, 4]) == {"head": [0], "middle": [1], "tail": []}  # two classes: no tail third
    assert thirds_top1({"train_per_class": [5, 4], "test/top1_per_class": [1.0, 0.5]}) == {"head": 1.0, "middle": 0.5}


# ---- the report's section, from fixture metrics ----


def test_the_report_shows_accuracy_against_factor_and_the_thirds(tmp_path):
    from pipeline.report import Folders, build, read_inputs

    for seed in (0, 1):
        for name, file in (("linear_eval", {"method": "supcon"}), ("train_ce", {})):
            path = tmp_path / f"seeds/{seed}/{name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"test/top1": 0.8, "test/ece": 0.01, **file}))
    train = [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]  # factor 10 on 100 images a class
    per_class = [0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.5, 0.5, 0.5]
    (tmp_path / "long_tail").mkdir()
    for seed, shift in ((0, 0.0), (1, 0.02)):
        for method, top1 in (("supcon", 0.75), ("ce", 0.70)):
            cell = {"cell": f"{method}-10-seed{seed}", "factor": 10, "method": method, "seed": seed, "test/top1": top1 + shift,
                    "test/top1_per_class": [v + shift for v in per_class], "train_per_class": train}  # fmt: skip
            (tmp_path / f"long_tail/{method}-10-seed{seed}.json").write_text(json.dumps(cell))
    (tmp_path / "long_tail/ce-50-seed0.json").write_text(json.dumps({"factor": 50}))  # a cell params no longer lists: not read
    folders = Folders(seeds=tmp_path / "seeds", seed_plots=tmp_path / "plots", reduced=tmp_path / "reduced", sweeps=tmp_path / "sweeps", long_tail=tmp_path / "long_tail")
    cells = {f"{m}-10-seed{s}" for m in ("supcon", "ce") for s in (0, 1)}

    text, drawn, _ = build(read_inputs(folders, [0, 1], set(), cells), dataset="fashion_mnist", encoder="small_resnet", views=2)

    section = text[text.index("## Long-tailed training data") : text.index("## Robustness")]
    assert "| 10 | 403 (100 / 10) | 76.00 ± 1.41 (n=2) | 71.00 ± 1.41 (n=2) | +5.00 |" in section
    assert "the class at rank i of C is in third ⌊3i / C⌋" in section and "val and test stay balanced" in section
    assert "| 10 | SupCon | 91.00 ± 1.41 (n=2) | 81.00 ± 1.41 (n=2) | 51.00 ± 1.41 (n=2) |" in section
    assert "| 10 | CE | 91.00 ± 1.41 (n=2) | 81.00 ± 1.41 (n=2) | 51.00 ± 1.41 (n=2) |" in section
    assert "(figures/accuracy_vs_imbalance.png)" in section and "accuracy_vs_imbalance" in drawn
    assert "ce-50-seed0" not in text


def test_without_cells_the_section_names_the_stage(tmp_path):
    from pipeline.report.inputs import Inputs
    from pipeline.report.sections import long_tail_section

    lines, drawn = long_tail_section(Inputs(supcon={}, ce={}, pretrain={}, robustness={}, reduced=[], sweeps=[], curves={}), "fashion_mnist")
    assert lines == ["## Long-tailed training data", "", "not run yet: `dvc repro long_tail`"] and drawn == {}


# ---- the real CLI on a tiny prepared store (slow) ----


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ce", "supcon"])
def test_a_cell_through_the_cli_records_overall_and_per_class_top1_on_its_long_tail(prepared, method):
    from test_reduced_cells import folder_with
    from test_stages import run

    folder = folder_with(prepared, f"long_tail_{method}", long_tail={"factors": [4]}, reduced={"steps": 4, "min_epochs": 1}, supcon={"epochs": 1})

    run([sys.executable, "-m", "stages.long_tail", "--factor", "4.0", "--method", method, "--seed", "0"], folder)

    result = json.loads((folder / f"metrics/long_tail/{method}-4-seed0.json").read_text())
    assert (folder / f"models/long_tail/{method}-4-seed0").is_dir() and (folder / f"plots/long_tail/{method}-4-seed0.csv").is_file()
    assert result["cell"] == f"{method}-4-seed0" and result["factor"] == 4 and result["seed"] == 0
    # 20 images a class, val 0.2: 16 a class in train; class index order is head to tail
    assert result["train_per_class"] == kept_per_rank(16, 10, 4, "exponential") and result["train_images"] == sum(result["train_per_class"])
    per_class = result["test/top1_per_class"]
    assert len(per_class) == 10 and all(0 <= v <= 1 for v in per_class)
    assert sum(per_class) / 10 == pytest.approx(result["test/top1"])  # the test split is balanced (5 a class)


@pytest.mark.slow
def test_a_factor_that_empties_a_class_exits_2_with_one_line_through_the_cli(prepared):
    from test_reduced_cells import folder_with, one_error_line
    from test_stages import run

    folder = folder_with(prepared, "long_tail_too_steep", long_tail={"factors": [50]})

    line = one_error_line(run([sys.executable, "-m", "stages.long_tail", "--factor", "50", "--method", "ce", "--seed", "0"], folder, check=False))

    assert line.startswith("error: long_tail.factors = 50 is not allowed") and "has 16 images" in line
    assert not (folder / "metrics").exists()
