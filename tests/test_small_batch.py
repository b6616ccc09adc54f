"""Small batches and the momentum-key queue (issue 21): the equal-steps / equal-epochs schedule
against the engine's own step counts, the small_batch_ config, the report's section and claims from
fixture metrics, the long-tail claim, and the real `python -m stages.small_batch` CLI on a tiny
prepared store."""

import json
import sys
from dataclasses import replace

import pytest

from pipeline import checkpoint
from pipeline.config import SupConConfig, parse_params
from pipeline.engine import total_steps, warmup_steps
from pipeline.errors import ConfigError
from pipeline.small_batch import small_batch_config
from test_reduced_cells import prepared  # noqa: F401 (a fixture: the tiny prepared store, made once)

MAIN = replace(SupConConfig(), batch_size=256, epochs=8)


@pytest.mark.parametrize("num_items", [5400, 13500, 2700])
def test_equal_steps_matches_the_main_runs_steps_and_warmup_steps(num_items):
    small = small_batch_config(MAIN, batch_size=32, queue=4096, equal="steps")

    assert small.epochs == 1 and small.batch_size == 32 and small.memory.size == 4096
    assert small.memory.momentum == MAIN.memory.momentum and small.temperature == MAIN.temperature
    # The engine drops the last partial batch, so steps agree to within one batch's rounding per epoch.
    main_steps, small_steps = total_steps(num_items, 256, MAIN.epochs), total_steps(num_items, 32, small.epochs)
    assert abs(small_steps - main_steps) <= MAIN.epochs
    main_warmup = warmup_steps(num_items, 256, MAIN.optimizer.warmup_epochs)
    assert abs(warmup_steps(num_items, 32, small.optimizer.warmup_epochs) - main_warmup) <= 1


def test_equal_epochs_keeps_epochs_and_warmup_and_only_the_batch_and_queue_change():
    small = small_batch_config(MAIN, batch_size=32, queue=0, equal="epochs")

    assert small == replace(MAIN, batch_size=32, memory=replace(MAIN.memory, size=0))


def test_equal_steps_rounds_to_whole_epochs_and_never_below_one():
    assert small_batch_config(replace(MAIN, epochs=5), batch_size=32, queue=0, equal="steps").epochs == 1  # 0.625
    assert small_batch_config(replace(MAIN, epochs=20), batch_size=32, queue=0, equal="steps").epochs == 2  # 2.5 rounds to even
    assert small_batch_config(replace(MAIN, epochs=2), batch_size=512, queue=0, equal="steps").epochs == 4  # a larger batch: more epochs
    with pytest.raises(ValueError, match="equal must be"):
        small_batch_config(MAIN, batch_size=32, queue=0, equal="images")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"queues": [-1]}, "small_batch.queues[0] = -1 is not allowed: expected an integer >= 0"),
        ({"queues": [0, 0]}, "small_batch.queues = [0, 0] is not allowed: expected a list without repeats"),
        ({"equal": ["images"]}, "small_batch.equal[0] = 'images' is not allowed"),
        ({"equal": []}, "small_batch.equal = [] is not allowed: expected a non-empty list"),
        ({"batch_size": 0}, "small_batch.batch_size = 0 is not allowed: expected an integer >= 1"),
    ],
)
def test_bad_small_batch_settings_name_the_key(section, message):
    with pytest.raises(ConfigError) as error:
        parse_params({"small_batch": section})
    assert str(error.value).startswith(message)


def test_the_default_lists_no_cell():
    assert parse_params({}).small_batch.queues == ()


# ---- the report: section and claims from fixture metrics ----


def write(path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def small_batch_project(root, seeds=(0, 1, 2), queues=(0, 4096)):
    """Metrics of a main comparison and of small-batch cells: the queue +2 points (+-0.1 by seed) at
    equal steps, -0.5 (+-1) at equal epochs; the default batch 1 point above the queue."""
    for seed in seeds:
        write(root / f"seeds/{seed}/linear_eval.json", {"test/top1": 0.80 + 0.01 * seed, "test/ece": 0.01, "method": "supcon"})
        write(root / f"seeds/{seed}/train_ce.json", {"test/top1": 0.78, "test/ece": 0.02})
        write(root / f"seeds/{seed}/pretrain_supcon.json", {"train/steps": 168, "epochs": 8, "batch_size": 256, "views": 2})
        for queue in queues:
            for equal, gain in (("steps", 0.02 + 0.001 * seed), ("epochs", -0.005 + 0.01 * (seed - 1))):
                top1 = 0.77 + 0.01 * seed + (gain if queue else 0.0)
                steps, epochs = (168, 1) if equal == "steps" else (1344, 8)
                budget = {"steps": steps, "epochs": epochs, "batch_size": 32, "images_seen": steps * 64}
                name = f"b32-q{queue}-{equal}-seed{seed}"
                write(root / f"small_batch/{name}.json", {"cell": name, "batch_size": 32, "queue": queue, "equal": equal, "seed": seed, "test/top1": top1, "budget": budget})
    from pipeline.report import Folders

    return Folders(seeds=root / "seeds", seed_plots=root / "plots", reduced=root / "reduced", sweeps=root / "sweeps", small_batch=root / "small_batch")


def test_the_queue_claims_are_judged_per_budget_beside_the_default_batch(tmp_path):
    from pipeline.report import build, read_inputs

    folders = small_batch_project(tmp_path)
    names = {f"b32-q{q}-{e}-seed{s}" for q in (0, 4096) for e in ("steps", "epochs") for s in (0, 1, 2)}

    text, _, claims = build(read_inputs(folders, [0, 1, 2], set(), set(), names), dataset="fashion_mnist", encoder="small_resnet", views=2)

    by_key = {claim.key: claim for claim in claims}
    steps, epochs = by_key["queue_4096_equal_steps"], by_key["queue_4096_equal_epochs"]
    assert steps.verdict == "held" and "batch 32 + queue − batch 32: mean +0.021" in steps.reason
    assert epochs.verdict == "not enough evidence" and "touches or crosses 0" in epochs.reason
    assert "default batch (main run) 81.00 ± 1.00 (n=3)" in steps.measured and "paired queue − no queue +2.10" in steps.measured
    section = text[text.index("## Small batches and the momentum-key queue") :]
    assert "| equal steps | default batch (main run) | 256 | 168 steps, 8 epochs | 81.00 ± 1.00 (n=3) | — | — |" in section
    assert "| equal steps | batch 32 + 4,096-key queue | 32 | 168 steps, 1 epochs, 10,752 images seen | 80.10 ± 1.10 (n=3) | +2.10 | -0.90 |" in section
    assert "| equal epochs | batch 32 | 32 | 1,344 steps, 8 epochs, 86,016 images seen | 78.00 ± 1.00 (n=3) | — | -3.00 |" in section


def test_without_a_no_queue_arm_or_any_cell_the_claim_says_why(tmp_path):
    from pipeline.report import build, read_inputs

    folders = small_batch_project(tmp_path, queues=(4096,))
    names = {f"b32-q4096-{e}-seed{s}" for e in ("steps", "epochs") for s in (0, 1, 2)}
    _, _, claims = build(read_inputs(folders, [0, 1, 2], set(), set(), names), dataset="fashion_mnist", encoder="small_resnet", views=2)
    assert {c.key: c.reason for c in claims}["queue_4096_equal_steps"].startswith("no batch-32 cell without a queue at equal steps")

    text, _, claims = build(read_inputs(folders, [0, 1, 2], set(), set(), set()), dataset="fashion_mnist", encoder="small_resnet", views=2)
    queue = {c.key: c for c in claims}["queue"]
    assert queue.verdict == "not enough evidence" and "small_batch.queues lists none" in queue.reason
    assert "## Small batches and the momentum-key queue\n\nno small-batch cells" in text


def test_the_long_tail_claim_pairs_supcon_and_ce_per_seed_at_each_factor(tmp_path):
    from pipeline.report import build, read_inputs

    folders = small_batch_project(tmp_path, queues=())
    folders = replace(folders, long_tail=tmp_path / "long_tail")
    for seed in (0, 1, 2):
        for method, top1 in (("supcon", 0.60 + 0.02 * seed), ("ce", 0.55 + 0.021 * seed)):
            cell = {"factor": 100, "method": method, "seed": seed, "test/top1": top1, "test/top1_per_class": [top1] * 10, "train_per_class": [50] * 10}
            write(tmp_path / f"long_tail/{method}-100-seed{seed}.json", cell)

    _, _, claims = build(read_inputs(folders, [0, 1, 2], set(), None, set()), dataset="fashion_mnist", encoder="small_resnet", views=2)

    claim = {c.key: c for c in claims}["long_tail_100"]
    assert claim.verdict == "held" and claim.claim == "SupCon keeps its edge under a long tail (imbalance factor 100)"
    assert "SupCon − CE: mean +0.049" in claim.reason and "paired SupCon − CE +4.90" in claim.measured


# ---- the real CLI on a tiny prepared store (slow) ----


def small_batch_folder(prepared, name: str):
    from test_reduced_cells import folder_with

    # 160 train images: the main run is 4 epochs x 10 steps at batch 16; batch 4 at equal steps is 1 epoch of 40.
    return folder_with(prepared, name, supcon={"epochs": 4, "batch_size": 16}, small_batch={"batch_size": 4, "queues": [0, 32], "equal": ["steps", "epochs"]})


@pytest.mark.slow
@pytest.mark.parametrize(("queue", "equal", "steps", "epochs"), [(32, "steps", 40, 1), (0, "epochs", 160, 4)])
def test_a_cell_through_the_cli_trains_the_small_batch_for_the_main_runs_steps_or_epochs(prepared, queue, equal, steps, epochs):
    from test_stages import run

    folder = small_batch_folder(prepared, f"small_batch_{queue}_{equal}")

    run([sys.executable, "-m", "stages.small_batch", "--queue", str(queue), "--equal", equal, "--seed", "0"], folder)

    name = f"b4-q{queue}-{equal}-seed0"
    result = json.loads((folder / f"metrics/small_batch/{name}.json").read_text())
    assert (result["cell"], result["batch_size"], result["queue"], result["equal"], result["seed"]) == (name, 4, queue, equal, 0)
    assert result["budget"]["steps"] == steps and result["budget"]["epochs"] == epochs and result["budget"]["batch_size"] == 4
    assert result["budget"]["images_seen"] == steps * 4 * 2 and result["train_images"] == 160
    assert result["budget"]["probe_epochs"] == 2  # linear.epochs, as linear_eval trains it
    pretrained = checkpoint.load(folder / f"models/small_batch/{name}/supcon/last.pt")
    assert pretrained["config"]["supcon"]["batch_size"] == 4 and pretrained["config"]["supcon"]["memory"]["size"] == queue
    if queue:
        assert int(pretrained["method_state"]["queue.filled"]) == queue  # 40 steps of 8 keys filled it
    else:
        assert "method_state" not in pretrained


@pytest.mark.slow
def test_a_cell_params_do_not_list_exits_2_with_one_line(prepared):
    from test_reduced_cells import one_error_line
    from test_stages import run

    folder = small_batch_folder(prepared, "small_batch_unlisted")

    line = one_error_line(run([sys.executable, "-m", "stages.small_batch", "--queue", "64", "--equal", "steps", "--seed", "0"], folder, check=False))

    assert line == "error: small_batch.queues = 64 is not allowed: expected one of [0, 32] (the values params.yaml lists)"
    assert not (folder / "metrics").exists()


def test_dvc_names_each_cell_as_the_stage_does(tmp_path):
    import shutil

    import yaml
    from dvc.repo import Repo

    from stages.common import SmallBatchCell
    from test_stages import REPO

    shutil.copy(REPO / "dvc.yaml", tmp_path)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["run"]["seeds"], params["small_batch"]["queues"] = [0, 3], [0, 4096]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    Repo.init(tmp_path, no_scm=True)

    outs = {s.name: [out.def_path for out in s.outs] for s in Repo(tmp_path).index.stages if s.name.startswith("small_batch@")}

    assert len(outs) == 8
    for queue in (0, 4096):
        for equal in ("steps", "epochs"):
            cell = SmallBatchCell(32, queue, equal, 3)
            assert outs[f"small_batch@{queue}-{equal}-3"] == [str(cell.folder), f"metrics/{cell.output}.json", f"plots/{cell.output}.csv"]
