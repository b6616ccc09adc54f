"""`--estimate`: the arithmetic from counts and params to steps, images and seconds (against
numbers worked out by hand), the choice of timing batch, and the CLI on real timing."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.config import parse_params
from pipeline.estimate.counts import counts_for, from_published
from pipeline.estimate.measure import measure, measure_on_gpu, small_batch
from pipeline.estimate.plan import CORRUPTION, INFERENCE, knn_passes, plan, predict
from pipeline.estimate.timing import TIMED_STEPS
from pipeline.yaml_merge import merged
from readme_commands import readme_command, words

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


# The sizes the hand-worked default plans below assume (params.yaml's before issue 21 resized the
# default): the plan's code paths are params.yaml's, only these sizes are pinned.
HAND_SIZES = {
    "data": {"train_fraction": 0.5}, "supcon": {"epochs": 6, "knn_every": 3}, "ce": {"epochs": 6},
    "reduced": {"steps": 100}, "robustness": {"max_images": 1000},
}  # fmt: skip


def params_of(preset: str | None = None, sizes: dict | None = None):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw = merged(raw, sizes) if sizes else raw
    return parse_params(merged(raw, yaml.safe_load((REPO / "configs" / preset).read_text())) if preset else raw)


def rows_of(work) -> list[tuple[str, int, int, int]]:
    return [(row.stage.strip(), row.runs, row.steps, row.images) for row in work]


def test_published_fashion_mnist_counts_match_what_prepare_and_the_default_stages_use():
    counts = from_published("fashion_mnist", None, 0.1)
    assert counts.train == (5400,) * 10 and counts.val == 6000 and sum(counts.test) == 10_000 and counts.image_size == 28
    assert counts.labelled(0.5) == 27_000  # the default's data.train_fraction (metrics: train_images 27000)
    assert counts.labelled(0.01) == 540 and counts.labelled(0.1) == 5400  # the reduced cells' train_images
    assert counts.corrupted(1000) == 1000 and counts.corrupted(None) == 10_000


def test_a_prepared_store_gives_the_counts_only_when_prepared_with_the_same_data_params():
    manifest = {
        "dataset": "fashion_mnist", "val_fraction": 0.1, "image_size": None, "class_names": ["a", "b"], "image_shape": [1, 28, 28],
        "counts": {"train": {"a": 7, "b": 5}, "val": {"a": 1, "b": 1}, "test": {"a": 3, "b": 4}},
    }  # fmt: skip
    data = params_of().data
    counts = counts_for(data, manifest, where="data/prepared/fashion_mnist/manifest.json")
    assert (counts.train, counts.val, counts.test, counts.source) == ((7, 5), 2, (3, 4), "data/prepared/fashion_mnist/manifest.json")
    assert counts.labelled(0.5) == 4 + 3  # round half up per class: 3.5 -> 4, 2.5 -> 3
    other = counts_for(parse_params({"data": {"val_fraction": 0.2}}).data, manifest)
    assert other.val == 12_000 and "published" in other.source


@pytest.mark.parametrize(("epochs", "every", "passes"), [(6, 3, 2), (7, 3, 3), (1000, 10, 100), (350, 10, 35), (5, 0, 0)])
def test_the_knn_monitor_runs_every_nth_epoch_and_after_the_last(epochs, every, passes):
    assert knn_passes(epochs, every) == passes


def test_the_default_plan_by_hand():
    work = plan(params_of(sizes=HAND_SIZES), from_published("fashion_mnist", None, 0.1), corruption_processes=2)
    # 27,000 images // 256 = 105 steps per epoch. Budget rule (reduced.steps 100, min_epochs 2):
    # 540 images -> 2 steps per epoch, 50 epochs, 100 steps; 5,400 -> 21 per epoch, ceil(100/21) = 5
    # epochs, 105 steps; a cell's probe trains at least linear.epochs (30): 50 x 2 and 30 x 21 steps.
    assert rows_of(work) == [
        ("pretrain_supcon", 1, 6 * 105, 6 * 105 * 256),
        ("kNN monitor (2 passes)", 1, 0, 2 * (27_000 + 6_000)),  # epochs 3 and 6: the train bank and the val queries
        ("train_ce", 1, 630, 630 * 256),
        ("val each epoch, test", 1, 0, 6 * 6_000 + 10_000),
        ("linear_eval", 1, 30 * 105, 30 * 105 * 256),
        ("features, test", 1, 0, 27_000 + 6_000 + 10_000),  # augmentation none: features once
        ("reduced_data supcon", 2, 100 + 105, 205 * 256),
        ("its linear probe", 2, 100 + 630, 730 * 256),
        ("features, test", 2, 0, (540 + 6_000 + 10_000) + (5_400 + 6_000 + 10_000)),
        ("reduced_data ce", 2, 205, 205 * 256),
        ("val each epoch, test", 2, 0, (50 * 6_000 + 10_000) + (5 * 6_000 + 10_000)),
        # long_tail.factors [100] on 2,700 a class: floor(2,700 x 100^(-c/9)) keeps 2,700, 1,618, 970, 581, 348,
        # 209, 125, 75, 45, 27 = 6,698 images -> 26 steps per epoch, ceil(100 / 26) = 4 epochs, 104 steps
        ("long_tail supcon", 1, 104, 104 * 256),
        ("its linear probe", 1, 30 * 26, 30 * 26 * 256),
        ("features, test", 1, 0, 6_698 + 6_000 + 10_000),
        ("long_tail ce", 1, 104, 104 * 256),
        ("val each epoch, test", 1, 0, 4 * 6_000 + 10_000),
        ("corrupt (2 processes)", 1, 0, 15 * 5 * 1_000),
        ("robustness (2 models x 76 cells)", 1, 0, 2 * 76 * 1_000),  # both models, 75 cells and the clean images
    ]  # fmt: skip
    assert work[-2].processes == 2


def test_the_small_batch_cells_by_hand():
    sizes = HAND_SIZES | {"supcon": {"epochs": 8, "knn_every": 3}, "small_batch": {"batch_size": 32, "queues": [0, 2048], "equal": ["steps", "epochs"]}}
    work = [row for row in rows_of(plan(params_of(sizes=sizes), from_published("fashion_mnist", None, 0.1), corruption_processes=2)) if row[0] == "small_batch supcon"]
    # 27,000 images: 843 steps an epoch at batch 32; equal steps is 8 x 32 / 256 = 1 epoch, equal epochs 8
    assert work == [("small_batch supcon", 4, 2 * (843 + 8 * 843), 2 * (843 + 8 * 843) * 32)]


def test_the_cifar10_preset_plan_by_hand():
    work = rows_of(plan(params_of("cifar10_resnet50.yaml"), from_published("cifar10", None, 0.0), corruption_processes=8))
    rows = {stage: (runs, steps, images) for stage, runs, steps, images in work}
    # three seeds, no val, 50,000 images // 1024 = 48 steps per epoch
    assert rows["pretrain_supcon"] == (3, 3 * 1000 * 48, 3 * 1000 * 48 * 1024)
    assert rows["kNN monitor (100 passes)"] == (3, 0, 3 * 100 * 50_000)  # leave-one-out: the bank's rows are the queries
    assert rows["train_ce"] == (3, 3 * 500 * 48, 3 * 500 * 48 * 1024)
    assert rows["linear_eval"] == (3, 3 * 100 * 97, 3 * 100 * 97 * 512)  # 50,000 // 512 = 97
    assert work[3] == work[5] == ("test", 3, 0, 3 * 10_000)  # no val: CE and the probe score test once
    # reduced.steps 20,000; fractions 0.01 ... 1.0 keep 500, 1,000, 2,500, 5,000, 10,000, 25,000, 50,000 images.
    # batch min(1024, n); steps per epoch n // batch: 1, 1, 2, 4, 9, 24, 48; epochs ceil(20,000 / that)
    steps = [1 * 20_000, 1 * 20_000, 2 * 10_000, 4 * 5_000, 9 * 2_223, 24 * 834, 48 * 417]
    batches = [500, 1_000, 1_024, 1_024, 1_024, 1_024, 1_024]
    assert rows["reduced_data supcon"] == (21, 3 * sum(steps), 3 * sum(s * b for s, b in zip(steps, batches)))
    assert rows["reduced_data supcon"][1:] == (420_117, 397_319_808)
    assert rows["corrupt (8 processes)"] == (1, 0, 75 * 10_000)  # max_images null: the whole test split
    assert rows["robustness (2 models x 76 cells)"] == (3, 0, 3 * 2 * 76 * 10_000)


def test_the_imagenet_preset_scores_the_release_and_generates_nothing():
    work = plan(params_of("imagenet_resnet50.yaml"), from_published("imagenet", 224, 0.0), corruption_processes=8)
    rows = {stage: (runs, steps, images) for stage, runs, steps, images in rows_of(work)}
    assert not [row for row in work if row.kind == CORRUPTION]
    assert rows["pretrain_supcon"][1] == 3 * 350 * (1_281_167 // 768)
    assert rows["robustness (2 models x 76 cells)"] == (3, 0, 3 * 2 * 76 * 50_000)  # ImageNet-C: 50,000 per cell


def test_a_corrupted_set_too_large_to_generate_without_a_release_is_left_out():
    params = parse_params(merged(yaml.safe_load((REPO / "params.yaml").read_text()), {"data": {"image_size": 96}}))
    work = plan(params, from_published("fashion_mnist", 96, 0.1), corruption_processes=2)
    assert [row.stage for row in work if "corrupt" in row.stage or "robustness" in row.stage] == []  # stages/corrupt.py stops above 64 px


def test_durations_read_in_the_largest_sensible_unit():
    from pipeline.estimate.table import duration, hours

    assert [duration(s) for s in (0.38, 42, 655, 2 * 3600, 3 * 86400, 5 * 365 * 86400)] == ["0.4 s", "42 s", "10 min 55 s", "2.0 h", "3.0 days", "5.0 years"]
    assert (hours(655), hours(40_400 * 3600)) == ("0.182", "40,400")


def test_predicted_seconds_are_images_times_cost_per_image_over_processes():
    work = plan(params_of(sizes=HAND_SIZES), from_published("fashion_mnist", None, 0.1), corruption_processes=2)
    per_image = {"supcon": 0.001, "ce": 0.0005, "linear": 1e-6, INFERENCE: 1e-4, CORRUPTION: 0.002}
    seconds = dict(zip((row.stage.strip() for row in work[:3] + work[-2:]), [*predict(work[:3], per_image), *predict(work[-2:], per_image, {CORRUPTION: 5.0})]))
    assert seconds["pretrain_supcon"] == pytest.approx(161_280 * 0.001)  # 161.28 s
    assert seconds["train_ce"] == pytest.approx(161_280 * 0.0005)  # 80.64 s
    assert seconds["kNN monitor (2 passes)"] == pytest.approx(66_000 * 1e-4)  # 6.6 s
    assert seconds["corrupt (2 processes)"] == pytest.approx(75_000 * 0.002 / 2 + 5.0)  # 80 s
    assert sum(predict(work, per_image)) == pytest.approx(
        (161_280 + 52_480 + 26_624) * 0.001 + (161_280 + 52_480 + 26_624) * 0.0005 + (806_400 + 186_880 + 199_680) * 1e-6
        + (66_000 + 46_000 + 43_000 + 37_940 + 350_000 + 22_698 + 34_000 + 152_000) * 1e-4 + 75_000 * 0.002 / 2
    )  # fmt: skip  (the long-tail cells: 104 steps each method, a probe of 780 steps, as the hand plan)


def fake_timer(per_step_fixed: float, per_image: float, calls: list):
    def time_at(batch: int, timed: int) -> list[float]:
        calls.append((batch, timed))
        return [per_step_fixed + per_image * batch] * timed

    return time_at


def test_the_cpu_batch_grows_to_the_params_batch_while_a_step_stays_affordable():
    calls = []
    measured = measure("supcon", 256, fake_timer(0.05, 0.001, calls), device=CPU, small=5, stand_in=False)
    assert [batch for batch, _ in calls] == [5, 20, 80, 256] and calls[-1] == (256, TIMED_STEPS)
    assert (measured.batch, measured.per_step, measured.smaller_because) == (256, pytest.approx(0.306), "")


def test_a_cpu_step_too_slow_at_the_params_batch_is_timed_smaller_and_says_why():
    calls = []
    measured = measure("supcon", 1024, fake_timer(0.0, 0.5, calls), device=CPU, small=4, stand_in=False)
    assert measured.batch == 4 and measured.per_image == pytest.approx(0.5)
    assert measured.smaller_because == "a step of 1024 would take about 512 s on this CPU"


def test_a_cpu_standing_in_for_a_missing_gpu_keeps_the_small_batch():
    calls = []
    measured = measure("ce", 1024, fake_timer(0.0, 1e-4, calls), device=CPU, small=4, stand_in=True)
    assert calls == [(4, TIMED_STEPS)] and measured.batch == 4


def test_a_gpu_batch_that_does_not_fit_in_memory_is_halved_until_it_does_and_says_so():
    def time_at(batch: int, timed: int) -> list[float]:
        if batch > 256:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return [0.001 * batch] * timed

    measured = measure_on_gpu("supcon", 1024, time_at, "NVIDIA H200")
    assert (measured.batch, measured.asked, len(measured.seconds)) == (256, 1024, TIMED_STEPS)
    assert measured.smaller_because == "batch 1024 does not fit in the memory of this NVIDIA H200"
    assert measure_on_gpu("ce", 128, time_at, "NVIDIA H200").smaller_because == ""


def test_small_timing_batches_shrink_with_the_image_size():
    assert [small_batch(size, 1024) for size in (28, 32, 64, 224)] == [5, 4, 2, 2]
    assert small_batch(32, 3) == 3 and small_batch(32, 512, scale=8) == 32


def files_in(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def run_estimate(tmp_path: Path, command: str) -> subprocess.CompletedProcess:
    """A README `--estimate` command as written, in a folder holding only a copy of params.yaml and
    of the preset the command names (`python` is this venv's: first on PATH). It writes nothing."""
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    for preset in (word for word in words(command) if word.startswith("configs/")):
        (tmp_path / preset).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / preset).write_text((REPO / preset).read_text())
    before = files_in(tmp_path)
    env = {"PYTHONPATH": str(REPO), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "OMP_NUM_THREADS": "2"}
    done = subprocess.run(words(command), cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert files_in(tmp_path) == before, f"--estimate wrote or changed files\nstderr:\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_the_estimate_of_the_default_times_every_stage_and_writes_nothing(tmp_path):
    done = run_estimate(tmp_path, readme_command("python -m stages.preset --estimate"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    expected = [stage for stage, *_ in rows_of(plan(params_of(), from_published("fashion_mnist", None, 0.1), corruption_processes=len(os.sched_getaffinity(0))))]
    assert [re.split(r"\s{2,}", line.strip())[0] for line in lines[2 : 2 + len(expected)]] == expected
    assert lines[3 + len(expected)].startswith("total") and lines[3 + len(expected)].endswith(" h)")
    assert "each figure is the median of the timed steps" in done.stdout and "run.device is cuda" not in done.stdout
    assert (tmp_path / "params.yaml").read_text() == (REPO / "params.yaml").read_text()


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback is for machines without CUDA")
def test_a_preset_asking_for_cuda_on_a_cpu_machine_is_timed_on_the_cpu_and_labelled_an_upper_bound(tmp_path):
    done = run_estimate(tmp_path, readme_command("python -m stages.preset configs/cifar10_resnet50.yaml --estimate"))
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("run.device is cuda"))
    assert "no CUDA device: measured on the CPU at small batches (supcon 4, ce 4, linear 4, inference 32)" in line
    assert "ask for cuda at batch supcon 1024, ce 1024, linear 512, inference 512" in line and "upper bound, not a GPU prediction" in line
