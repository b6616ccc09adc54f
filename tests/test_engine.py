"""The training loop: it learns, it resumes bit-for-bit on the CPU, it stops on NaN, and it
checkpoints (and logs) by steps and time, not every epoch."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline import checkpoint, engine
from pipeline.augment import build_augmentation
from pipeline.batches import TensorBatches
from pipeline.engine import Loop, TrainingDiverged, fit
from pipeline.errors import UserError
from pipeline.models import build_ce_model
from pipeline.optim import build_optimizer, build_scheduler
from pipeline.preprocess import Normalize
from pipeline.methods.cross_entropy import cross_entropy_loss
from pipeline.methods.selection import BestOnVal
from pipeline.run_context import RunContext

CPU = torch.device("cpu")
TIMING = ("train/images_per_s", "train/epoch_time_s")


def _images(n: int = 48, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [n, 1, size, size] with labels [n] in 0..3."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=generator)
    return images, torch.arange(n) % 4


def _resnet_spec(tmp_path: Path, epochs: int, config: dict | None = None, *, schedule_epochs: int = 3, every_steps: int = 1) -> tuple[Loop, RunContext]:
    """A width-4 small ResNet trained with CE on augmented 8x8 images: every random part of a
    real run (init, batch order, augmentation, momentum, schedule) in a second of CPU time.
    3 steps per epoch; a checkpoint every `every_steps` steps (1: every epoch)."""
    torch.manual_seed(0)
    model = build_ce_model("small_resnet", in_channels=1, image_size=8, num_classes=4, width=4, depth=2, blocks=1)
    augment = build_augmentation("simaugment", image_size=8, channels=1, strength=0.5, crop_scale=(0.2, 1.0))
    optimizer = build_optimizer(model, "sgd", lr=0.05, weight_decay=1e-4, momentum=0.9)
    total = 3 * schedule_epochs  # 48 items, batch 16: 3 steps per epoch
    scheduler = build_scheduler(optimizer, total_steps=total, warmup_steps=2, schedule="cosine")
    images, labels = _images()
    loss = cross_entropy_loss(augment, Normalize([0.5], [0.25]), 0.0)
    loop = Loop(
        name="tiny",
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=lambda inputs, labels: loss(model, inputs, labels),
        batches=TensorBatches(images, labels, batch_size=16, seed=3),
        epochs=epochs,
        spec={"kind": "ce"},
    )
    run = RunContext(
        seed=3, device=CPU, checkpoint_path=tmp_path / "last.pt", config=config if config is not None else {"lr": 0.05, "seed": 3},
        checkpoint_every_steps=every_steps,
    )  # fmt: skip
    return loop, run


def _without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def test_fit_reduces_the_loss_of_a_linear_model():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(128, 16, generator=generator)
    labels = (inputs @ torch.randn(16, 3, generator=generator)).argmax(dim=1)  # linearly separable
    torch.manual_seed(0)
    model = nn.Linear(16, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loop = Loop(
        name="linear", model=model, optimizer=optimizer, scheduler=scheduler,
        loss_fn=lambda x, y: F.cross_entropy(model(x), y), batches=TensorBatches(inputs, labels, batch_size=32, seed=0), epochs=8,
    )  # fmt: skip

    history = fit(loop, RunContext(seed=0, device=CPU))

    assert [row["epoch"] for row in history] == list(range(1, 9))
    assert history[-1]["train/loss"] < 0.5 * history[0]["train/loss"]
    assert all(row["train/lr"] == 0.5 for row in history)
    assert all(row["train/images_per_s"] > 0 for row in history)


def test_fit_calls_evaluate_and_on_epoch_once_per_epoch(tmp_path):
    loop, run = _resnet_spec(tmp_path, epochs=2)
    seen = []
    loop.evaluate = lambda epoch: {"val/fake": float(epoch)}
    run.on_epoch = lambda epoch, metrics: seen.append((epoch, metrics["val/fake"], math.isfinite(metrics["train/loss"])))

    history = fit(loop, run)

    assert seen == [(1, 1.0, True), (2, 2.0, True)]
    assert [row["val/fake"] for row in history] == [1.0, 2.0]
    state = checkpoint.load(tmp_path / "last.pt")
    assert state["epoch"] == 2 and state["history"] == history and state["spec"] == {"kind": "ce"}


def test_evaluate_runs_before_the_checkpoint_and_a_resumed_run_neither_repeats_nor_skips_it(tmp_path):
    def recording(loop: Loop, calls: list) -> None:
        def evaluate(epoch: int) -> dict[str, float]:
            on_disk = checkpoint.load(tmp_path / "last.pt")
            calls.append((epoch, on_disk["epoch"] if on_disk else 0))  # the checkpoint of the epoch before
            return {"val/fake": float(epoch)}

        loop.evaluate = evaluate

    first, first_run = _resnet_spec(tmp_path, epochs=3)
    first.epochs, calls = 1, []  # "killed" after epoch 1
    recording(first, calls)
    fit(first, first_run)
    assert calls == [(1, 0)]

    second, second_run = _resnet_spec(tmp_path, epochs=3)
    second_run.resume = checkpoint.resumable(tmp_path / "last.pt", second_run.config)[0]
    recording(second, calls)
    history = fit(second, second_run)

    assert calls == [(1, 0), (2, 1), (3, 2)]
    assert [row["val/fake"] for row in history] == [1.0, 2.0, 3.0]
    assert checkpoint.load(tmp_path / "last.pt")["history"] == history  # each epoch's metrics saved with it


@pytest.mark.parametrize("stop_after", [1, 2])
def test_resumed_run_matches_an_uninterrupted_one_exactly(tmp_path, stop_after):
    whole, whole_run = _resnet_spec(tmp_path / "whole", epochs=3)
    expected = fit(whole, whole_run)

    first, first_run = _resnet_spec(tmp_path / "split", epochs=3)
    first.epochs = stop_after  # the run is "killed" after `stop_after` epochs
    fit(first, first_run)
    # A new process: fresh objects, the same config, and whatever the checkpoint holds.
    torch.manual_seed(12345)  # the global RNG state of a fresh process must not matter
    second, second_run = _resnet_spec(tmp_path / "split", epochs=3)
    resume, notice = checkpoint.resumable(tmp_path / "split" / "last.pt", second_run.config)
    assert resume is not None and resume["epoch"] == stop_after and notice is None
    second_run.resume = resume
    resumed = fit(second, second_run)

    assert _without_timing(resumed) == _without_timing(expected)
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[name], tensor), name
    assert second.scheduler.state_dict()["last_epoch"] == whole.scheduler.state_dict()["last_epoch"] == 9


def test_finished_checkpoint_resumes_to_no_more_training(tmp_path):
    history = fit(*_resnet_spec(tmp_path, epochs=2))
    again, again_run = _resnet_spec(tmp_path, epochs=2)
    calls = []
    again.loss_fn = lambda *batch: calls.append(batch)  # must never run
    again_run.resume = checkpoint.resumable(tmp_path / "last.pt", again_run.config)[0]
    assert fit(again, again_run) == history
    assert calls == []


def test_checkpoint_of_another_run_is_not_resumed_and_the_notice_says_what_differs(tmp_path):
    key = {"supcon": {"temperature": 0.1}, "seed": 3, "code": {"pipeline.losses": "aaaa", "pipeline.engine": "bbbb"}, "inputs": {"prepared": "cccc"}}
    fit(*_resnet_spec(tmp_path, epochs=1, config=key))
    path = tmp_path / "last.pt"
    state, notice = checkpoint.resumable(path, key)
    assert state["epoch"] == 1 and notice is None

    edited = {**key, "code": {**key["code"], "pipeline.losses": "dddd"}}
    state, notice = checkpoint.resumable(path, edited)
    assert state is None and "code (pipeline.losses)" in notice and "starting over" in notice
    other_data = {**key, "inputs": {"prepared": "eeee"}}
    assert "inputs (prepared)" in checkpoint.resumable(path, other_data)[1]
    other_params = {**key, "supcon": {"temperature": 0.5}}
    assert "params (supcon.temperature)" in checkpoint.resumable(path, other_params)[1]
    assert checkpoint.resumable(tmp_path / "missing.pt", key) == (None, None)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "pickled_code"])
def test_unreadable_checkpoint_gives_a_notice_and_a_fresh_start(tmp_path, damage):
    fit(*_resnet_spec(tmp_path, epochs=1))
    path = tmp_path / "last.pt"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a checkpoint" * 50)
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a checkpoint that would run code when unpickled must be refused (weights_only)
        torch.save({"format": checkpoint.FORMAT, "hook": print}, path)

    state, notice = checkpoint.resumable(path, {"lr": 0.05, "seed": 3})

    assert state is None and notice.startswith(f"{path}: not a readable checkpoint") and "starting over" in notice
    assert "\n" not in notice
    with pytest.raises(checkpoint.CheckpointUnreadable, match="delete it and rerun"):
        checkpoint.load(path)
    # and training starts over and writes a good checkpoint
    fit(*_resnet_spec(tmp_path, epochs=1))
    assert checkpoint.load(path)["epoch"] == 1


def test_checkpoint_of_an_older_format_is_not_resumed(tmp_path):
    fit(*_resnet_spec(tmp_path, epochs=1))
    path = tmp_path / "last.pt"
    state = checkpoint.load(path)
    torch.save({**state, "format": 1}, path)
    state, notice = checkpoint.resumable(path, {"lr": 0.05, "seed": 3})
    assert state is None and "older version" in notice


def test_fingerprint_ignores_key_order_but_not_values():
    assert checkpoint.fingerprint({"a": 1, "b": {"c": 2}}) == checkpoint.fingerprint({"b": {"c": 2}, "a": 1})
    assert checkpoint.fingerprint({"a": 1}) != checkpoint.fingerprint({"a": 2})


def test_nan_loss_raises_training_diverged_naming_epoch_and_step_and_keeps_epoch_one(tmp_path):
    spec, run = _resnet_spec(tmp_path, epochs=3)
    real_loss = spec.loss_fn
    calls = {"n": 0}

    def loss_fn(images, labels):
        calls["n"] += 1
        loss = real_loss(images, labels)
        return loss * float("nan") if calls["n"] == 5 else loss  # epoch 2 (3 steps each), step 2

    spec.loss_fn = loss_fn

    with pytest.raises(TrainingDiverged) as caught:
        fit(spec, run)

    assert isinstance(caught.value, UserError)
    message = str(caught.value)
    assert "epoch 2" in message and "step 2 of 3" in message and str(tmp_path / "last.pt") in message
    assert (caught.value.epoch, caught.value.step) == (2, 2)
    assert "\n" not in message
    state = checkpoint.load(tmp_path / "last.pt")
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_infinite_loss_in_the_first_epoch_says_no_checkpoint_was_written(tmp_path):
    spec, run = _resnet_spec(tmp_path, epochs=2)
    spec.loss_fn = lambda images, labels: spec.model(images.float()).sum() * float("inf")

    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 1 of 3; no checkpoint was written"):
        fit(spec, run)
    assert not (tmp_path / "last.pt").exists()


def test_batch_larger_than_the_data_is_a_user_error(tmp_path):
    spec, run = _resnet_spec(tmp_path, epochs=1)
    spec.batches.batch_size = 64
    with pytest.raises(UserError, match="batch_size 64 is larger than the 48 training items"):
        fit(spec, run)


# ---- checkpoints by steps and time (a reduced-data run can have 20,000 one-step epochs) ----


def _record_writes(monkeypatch) -> list[tuple[str, int]]:
    """("last", epoch) for every last.pt and ("best", best epoch) for every best.pt written, in order."""
    writes: list[tuple[str, int]] = []
    save, save_best = checkpoint.save, checkpoint.save_best

    def recording_save(path, **state):
        writes.append(("last", state["epoch"]))
        save(path, **state)

    def recording_save_best(path, **state):
        writes.append(("best", state["epoch"]))
        save_best(path, **state)

    monkeypatch.setattr(checkpoint, "save", recording_save)
    monkeypatch.setattr(checkpoint, "save_best", recording_save_best)
    return writes


def test_checkpoint_once_the_steps_pass_the_threshold_and_after_the_last_epoch(tmp_path, monkeypatch, capsys):
    writes = _record_writes(monkeypatch)
    loop, run = _resnet_spec(tmp_path, epochs=5, schedule_epochs=5, every_steps=7)  # 3 steps an epoch
    each_epoch, batches = [], []
    run.on_epoch = lambda epoch, metrics: each_epoch.append(epoch)
    run.log_epochs = lambda rows: batches.append([row["epoch"] for row in rows])

    history = fit(loop, run)

    assert [row["train/steps"] for row in history] == [3, 6, 9, 12, 15]
    assert writes == [("last", 3), ("last", 5)]  # 9 >= 7 steps after the start; 15 is the end (6 < 7)
    assert checkpoint.load(tmp_path / "last.pt")["history"] == history
    assert each_epoch == [1, 2, 3, 4, 5]  # a sweep trial still hears every epoch as it ends
    assert batches == [[1, 2, 3], [4, 5]]  # MLflow gets every epoch, once per checkpoint
    printed = [(line.split(":")[0], line.split(", ")[-1]) for line in capsys.readouterr().out.splitlines()]
    assert printed == [("tiny epoch 1/5", "step 3"), ("tiny epoch 3/5", "step 9"), ("tiny epoch 5/5", "step 15")]


def test_checkpoint_after_the_epoch_that_passes_the_minutes(tmp_path, monkeypatch):
    writes = _record_writes(monkeypatch)
    now = [100.0]
    monkeypatch.setattr(engine, "clock", lambda: now[0])
    loop, run = _resnet_spec(tmp_path, epochs=5, schedule_epochs=5, every_steps=1000)
    run.checkpoint_every_minutes = 1.0

    def forty_seconds_an_epoch(epoch: int) -> dict[str, float]:
        now[0] += 40.0
        return {}

    loop.evaluate = forty_seconds_an_epoch
    fit(loop, run)

    assert writes == [("last", 2), ("last", 4), ("last", 5)]  # 80 s >= 60 s, then 80 s after that one; the end


def test_resume_from_a_checkpoint_epochs_back_matches_an_uninterrupted_run_exactly(tmp_path):
    whole, whole_run = _resnet_spec(tmp_path / "whole", epochs=5, schedule_epochs=5, every_steps=7)
    expected = fit(whole, whole_run)

    first, first_run = _resnet_spec(tmp_path / "split", epochs=5, schedule_epochs=5, every_steps=7)

    def killed_in_epoch_5(epoch: int) -> dict[str, float]:
        if epoch == 5:
            raise KeyboardInterrupt  # after epoch 4 ended; the checkpoint on disk is epoch 3's
        return {}

    first.evaluate = killed_in_epoch_5
    with pytest.raises(KeyboardInterrupt):
        fit(first, first_run)
    torch.manual_seed(12345)  # a fresh process
    second, second_run = _resnet_spec(tmp_path / "split", epochs=5, schedule_epochs=5, every_steps=7)
    second_run.resume = checkpoint.resumable(tmp_path / "split" / "last.pt", second_run.config)[0]
    assert second_run.resume["epoch"] == 3
    resumed = fit(second, second_run)

    assert _without_timing(resumed) == _without_timing(expected)
    assert [row["train/steps"] for row in resumed] == [3, 6, 9, 12, 15]  # the count goes on after a resume
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[name], tensor), name


def test_diverging_before_the_first_checkpoint_says_none_was_written_and_logs_the_good_epochs(tmp_path):
    loop, run = _resnet_spec(tmp_path, epochs=3, every_steps=1000)
    real_loss, calls, logged = loop.loss_fn, {"n": 0}, []

    def loss_fn(images, labels):
        calls["n"] += 1
        return real_loss(images, labels) * (float("nan") if calls["n"] == 5 else 1.0)  # epoch 2, step 2

    loop.loss_fn = loss_fn
    run.log_epochs = lambda rows: logged.extend(row["epoch"] for row in rows)
    with pytest.raises(TrainingDiverged, match="epoch 2, step 2 of 3; no checkpoint was written"):
        fit(loop, run)
    assert not (tmp_path / "last.pt").exists()
    assert logged == [1]


def test_diverging_names_the_epoch_of_the_checkpoint_it_keeps(tmp_path):
    loop, run = _resnet_spec(tmp_path, epochs=3, every_steps=6)  # a checkpoint after epoch 2
    real_loss, calls = loop.loss_fn, {"n": 0}

    def loss_fn(images, labels):
        calls["n"] += 1
        return real_loss(images, labels) * (float("nan") if calls["n"] == 8 else 1.0)  # epoch 3, step 2

    loop.loss_fn = loss_fn
    with pytest.raises(TrainingDiverged, match=rf"epoch 3, step 2 of 3; the last good checkpoint \(epoch 2\) stays at {tmp_path}"):
        fit(loop, run)


# ---- model selection writes best.pt at the checkpoints only ----


def _selecting(loop: Loop, run: RunContext, scores: list[float] | None, *, first_epoch: int = 1) -> BestOnVal:
    """loop selects on a val top-1 that follows `scores` (one per epoch from first_epoch on; None: no val)."""
    upcoming = iter(scores[first_epoch - 1 :]) if scores is not None else None
    selection = BestOnVal(loop.model, (lambda: next(upcoming)) if upcoming else None, run.checkpoint_path, fresh=run.resume is None)
    loop.evaluate, loop.on_save = selection, selection.save
    return selection


def test_best_is_written_just_before_last_at_checkpoints_only(tmp_path, monkeypatch):
    writes = _record_writes(monkeypatch)
    loop, run = _resnet_spec(tmp_path, epochs=5, schedule_epochs=5, every_steps=7)  # checkpoints after epochs 3 and 5
    weights = {}
    run.on_epoch = lambda epoch, metrics: weights.update({epoch: {k: v.clone() for k, v in loop.model.state_dict().items()}})
    selection = _selecting(loop, run, [0.5, 0.7, 0.6, 0.8, 0.8])

    fit(loop, run)

    assert writes == [("best", 2), ("last", 3), ("best", 4), ("last", 5)]  # a tie keeps the earlier epoch
    best = checkpoint.best_so_far(tmp_path / "best.pt")
    assert (best["epoch"], best["val_top1"]) == (4, 0.8)
    model = selection.load_best()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights[4].items())


def test_without_val_best_is_the_weights_at_each_checkpoint(tmp_path, monkeypatch):
    writes = _record_writes(monkeypatch)
    loop, run = _resnet_spec(tmp_path, epochs=5, schedule_epochs=5, every_steps=7)
    _selecting(loop, run, None)

    fit(loop, run)

    assert writes == [("best", 3), ("last", 3), ("best", 5), ("last", 5)]
    best, last = checkpoint.best_so_far(tmp_path / "best.pt"), checkpoint.load(tmp_path / "last.pt")
    assert best["val_top1"] is None and best["epoch"] == 5
    assert all(torch.equal(best["model"][k], v) for k, v in last["model"].items())


def test_a_resumed_run_continues_the_same_selection(tmp_path):
    scores = [0.5, 0.9, 0.6, 0.7, 0.8, 0.6]  # best: epoch 2; a run that forgot it would pick epoch 5
    whole, whole_run = _resnet_spec(tmp_path / "whole", epochs=6, schedule_epochs=6, every_steps=7)  # checkpoints: 3, 6
    expected = _selecting(whole, whole_run, scores)
    fit(whole, whole_run)

    first, first_run = _resnet_spec(tmp_path / "split", epochs=6, schedule_epochs=6, every_steps=7)
    _selecting(first, first_run, scores)

    def killed_after_epoch_4(epoch: int, metrics: dict[str, float]) -> None:
        if epoch == 4:
            raise KeyboardInterrupt  # on disk: last.pt of epoch 3, best.pt of epoch 2

    first_run.on_epoch = killed_after_epoch_4
    with pytest.raises(KeyboardInterrupt):
        fit(first, first_run)
    second, second_run = _resnet_spec(tmp_path / "split", epochs=6, schedule_epochs=6, every_steps=7)
    second_run.resume = checkpoint.resumable(tmp_path / "split" / "last.pt", second_run.config)[0]
    assert second_run.resume["epoch"] == 3
    resumed = _selecting(second, second_run, scores, first_epoch=4)
    fit(second, second_run)

    assert resumed.best()["epoch"] == expected.best()["epoch"] == 2
    assert checkpoint.best_so_far(tmp_path / "split" / "best.pt")["epoch"] == 2
    for name, tensor in expected.load_best().state_dict().items():
        assert torch.equal(resumed.load_best().state_dict()[name], tensor), name
