"""The training loop: it learns, it resumes bit-for-bit on the CPU, and it stops on NaN."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline import checkpoint
from pipeline.augment import build_augmentation
from pipeline.batches import TensorBatches
from pipeline.engine import Loop, TrainingDiverged, fit
from pipeline.errors import UserError
from pipeline.models import build_ce_model
from pipeline.optim import build_optimizer, build_scheduler
from pipeline.preprocess import Normalize
from pipeline.methods.cross_entropy import cross_entropy_loss
from pipeline.run_context import RunContext

CPU = torch.device("cpu")
TIMING = ("train/images_per_s", "train/epoch_time_s")


def _images(n: int = 48, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [n, 1, size, size] with labels [n] in 0..3."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=generator)
    return images, torch.arange(n) % 4


def _resnet_spec(tmp_path: Path, epochs: int, config: dict | None = None) -> tuple[Loop, RunContext]:
    """A width-4 small ResNet trained with CE on augmented 8x8 images: every random part of a
    real run (init, batch order, augmentation, momentum, schedule) in a second of CPU time."""
    torch.manual_seed(0)
    model = build_ce_model("small_resnet", in_channels=1, image_size=8, num_classes=4, width=4, depth=2, blocks=1)
    augment = build_augmentation("simaugment", image_size=8, channels=1, strength=0.5, crop_scale=(0.2, 1.0))
    optimizer = build_optimizer(model, "sgd", lr=0.05, weight_decay=1e-4, momentum=0.9)
    total = 3 * 3  # 48 items, batch 16: 3 steps per epoch; 3 epochs
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
    run = RunContext(seed=3, device=CPU, checkpoint_path=tmp_path / "last.pt", config=config if config is not None else {"lr": 0.05, "seed": 3})
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
