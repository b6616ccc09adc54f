"""The momentum-key queue inside SupCon training (supcon.memory; pipeline/methods/key_memory.py).

The loss itself is tested against a float64 reference in test_losses_memory.py and the queue and
key encoder in test_memory_queue.py; here: what training does with them. Off (size 0) is the plain
loss; on, the first step (empty queue) is the plain loss too and later steps are not; the queue
fills in training, is capped at the training images, is checkpointed, and a resume is bit-exact.
Two processes against one: tests/test_multiprocess.py.
"""

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline import checkpoint
from pipeline.config import MemoryConfig, ModelConfig, OptimizerConfig, SupConConfig
from pipeline.data.prepared import PreparedDataset, Split
from pipeline.losses import supcon_loss
from pipeline.methods.key_memory import KeyMemory
from pipeline.run_context import RunContext
from pipeline.training import train

CPU = torch.device("cpu")
MODEL = ModelConfig(encoder="small_resnet", width=4, depth=2, blocks=1, feat_dim=8)
SGD = OptimizerConfig(name="sgd", lr=0.05, scale_lr=False, momentum=0.9, weight_decay=1e-4, warmup_epochs=0)


def _dataset(n: int = 48) -> PreparedDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 12, 12), dtype=torch.uint8, generator=generator)
    labels = torch.arange(n) % 3
    manifest = {"class_names": ["a", "b", "c"], "image_shape": [1, 12, 12], "mean": [0.5], "std": [0.25]}
    empty = Split(torch.zeros(0, 1, 12, 12, dtype=torch.uint8), torch.zeros(0, dtype=torch.long))
    return PreparedDataset(Path("synthetic"), Split(images, labels), empty, empty, manifest, {})


def _config(size: int, epochs: int = 2, momentum: float = 0.9) -> SupConConfig:
    return SupConConfig(epochs=epochs, batch_size=8, knn_every=0, optimizer=SGD, memory=MemoryConfig(size=size, momentum=momentum))


def _train(config: SupConConfig, path: Path | None = None, **run):
    context = RunContext(seed=0, device=CPU, checkpoint_path=path, config={"test": 1}, checkpoint_every_steps=1, **run)
    data = _dataset()
    return train("supcon", data, data.train, config=config, model_config=MODEL, run=context)


def _embedding() -> nn.Module:
    torch.manual_seed(0)
    linear = nn.Linear(5, 4)
    return nn.Sequential(linear, nn.Flatten(), _Normalize())


class _Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1)


def _step_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(12, 5, generator=generator), torch.randint(0, 3, (6,), generator=generator)


def test_the_first_step_meets_an_empty_queue_and_equals_the_plain_loss_and_gradient():
    model = _embedding()
    memory = KeyMemory(model, size=32, momentum=0.9, dim=4)
    inputs, labels = _step_inputs(1)

    with_queue = memory.loss(model(inputs).view(6, 2, 4), labels, inputs, temperature=0.1)
    with_queue.backward()
    grad_with_queue = model[0].weight.grad.clone()
    model.zero_grad()
    plain = supcon_loss(model(inputs).view(6, 2, 4), labels, temperature=0.1)
    plain.backward()

    assert torch.equal(with_queue, plain) and torch.equal(grad_with_queue, model[0].weight.grad)
    assert memory.queue.contents()[0].shape == (12, 4)  # the batch's keys went in after the loss


def test_the_second_step_contrasts_the_first_steps_keys():
    model = _embedding()
    memory = KeyMemory(model, size=32, momentum=0.9, dim=4)
    memory.loss(model(_step_inputs(1)[0]).view(6, 2, 4), _step_inputs(1)[1], _step_inputs(1)[0], temperature=0.1)
    inputs, labels = _step_inputs(2)
    keys, key_labels = memory.queue.contents()

    second = memory.loss(model(inputs).view(6, 2, 4), labels, inputs, temperature=0.1)
    by_hand = supcon_loss(model(inputs).view(6, 2, 4), labels, temperature=0.1)

    assert not torch.allclose(second, by_hand)
    assert torch.equal(key_labels, _step_inputs(1)[1].repeat_interleave(2))  # one key per view, image-major
    assert torch.allclose(keys, model(_step_inputs(1)[0]))  # momentum copy before any update: the online model


def test_queue_off_adds_no_state_and_on_trains_differently(tmp_path):
    off = _train(_config(0), tmp_path / "off.pt")
    on = _train(_config(32))
    assert "method_state" not in checkpoint.load(tmp_path / "off.pt")
    assert any(not torch.equal(a, b) for a, b in zip(off.model.state_dict().values(), on.model.state_dict().values(), strict=True))


def test_queue_in_training_is_checkpointed_full_and_its_encoder_lags_the_online_one(tmp_path):
    _train(_config(20), tmp_path / "last.pt")
    state = checkpoint.load(tmp_path / "last.pt")
    assert int(state["method_state"]["queue.filled"]) == 20  # 6 steps of 16 keys, FIFO of 20
    weights = [k for k in state["model"] if k.endswith("weight")]
    assert weights and all(f"key_encoder.model.{k}" in state["method_state"] for k in weights)
    lagging = [k for k in weights if not torch.equal(state["method_state"][f"key_encoder.model.{k}"], state["model"][k])]
    assert lagging == weights  # momentum 0.9: every weight of the key encoder trails the online one


def test_queue_is_capped_at_the_training_images(capsys):
    trained = _train(_config(10_000, epochs=1))
    assert "supcon.memory.size 10000 is more than the 48 training images: the queue holds 48 keys" in capsys.readouterr().out
    assert trained.history


class _Stop(Exception):
    pass


def _stop_at(epoch: int):
    def on_epoch(done: int, metrics: dict) -> None:
        if done == epoch:
            raise _Stop  # "killed" after the epoch-1 checkpoint, before epoch 2's
    return on_epoch


def test_a_resumed_run_with_a_queue_equals_an_uninterrupted_one_bit_for_bit(tmp_path):
    config = _config(20, epochs=3)
    whole = _train(config, tmp_path / "whole" / "last.pt")
    (tmp_path / "split").mkdir()
    with pytest.raises(_Stop):
        _train(config, tmp_path / "split" / "last.pt", on_epoch=_stop_at(2))
    saved = checkpoint.load(tmp_path / "split" / "last.pt")
    assert saved["epoch"] == 1
    torch.manual_seed(12345)  # a fresh process's RNG must not matter
    resumed = _train(config, tmp_path / "split" / "last.pt", resume=saved)

    expected, got = checkpoint.load(tmp_path / "whole" / "last.pt"), checkpoint.load(tmp_path / "split" / "last.pt")
    for part in ("model", "method_state"):
        for name, tensor in expected[part].items():
            assert torch.equal(got[part][name], tensor), f"{part}.{name}"
    strip = lambda rows: [{k: v for k, v in r.items() if "time" not in k and "images_per_s" not in k} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(whole.history)


def test_memory_section_defaults_to_off():
    assert SupConConfig().memory == MemoryConfig(size=0, momentum=0.99)
    assert dataclasses.asdict(SupConConfig())["memory"] == {"size": 0, "momentum": 0.99}
