"""Training learns, and never looks at the test split.

The library's own training entry points (SupCon, SimCLR, CE, the linear probe) on a synthetic
dataset that a small encoder separates easily once trained: four textures (horizontal stripes,
vertical stripes, a checkerboard, blobs) with random phase, contrast and noise, which survive
SimAugment's crops, flips and colour changes, under a brightness that varies more than they do. The test split is poisoned: any read of it while
training or selecting a model raises.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures_data import Poisoned
from pipeline.config import CrossEntropyConfig, LinearConfig, ModelConfig, OptimizerConfig, SupConConfig
from pipeline.data.prepared import PreparedDataset, Split
from pipeline.run_context import RunContext
from pipeline.training import train

CPU = torch.device("cpu")
SIZE, CLASSES = 16, 4
EPOCHS = 24
CHANCE = 1 / CLASSES


def _textures(n: int, seed: int) -> Split:
    """uint8 images [n, 1, SIZE, SIZE]: class 0 horizontal stripes, 1 vertical, 2 checkerboard, 3 blobs."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % CLASSES
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    images = np.empty((n, 1, SIZE, SIZE), dtype=np.uint8)
    for i, label in enumerate(labels):
        period, phase = rng.uniform(3, 5), rng.uniform(0, 2 * np.pi)
        wave = {
            0: np.sin(2 * np.pi * y / period + phase),
            1: np.sin(2 * np.pi * x / period + phase),
            2: np.sin(2 * np.pi * x / period + phase) * np.sin(2 * np.pi * y / period + phase),
            3: np.exp(-((x - rng.uniform(4, 12)) ** 2 + (y - rng.uniform(4, 12)) ** 2) / 8.0) * 2 - 1,
        }[int(label)]
        # Brightness and contrast vary more than the texture: an untrained encoder's features
        # follow them; SimAugment's colour jitter and the labels teach the encoder to ignore them.
        pixels = 128 + rng.uniform(-70, 70) + rng.uniform(15, 50) * wave + rng.normal(0, 12, wave.shape)
        images[i, 0] = np.clip(pixels, 0, 255)
    return Split(torch.from_numpy(images), torch.from_numpy(labels).long())


def _dataset() -> PreparedDataset:
    train, val = _textures(384, seed=0), _textures(128, seed=1)
    manifest = {"class_names": ["h", "v", "check", "blob"], "image_shape": [1, SIZE, SIZE], "mean": [0.5], "std": [0.25]}
    return PreparedDataset(Path("synthetic"), train, val, Split(Poisoned(), Poisoned()), manifest, {})


MODEL = ModelConfig(encoder="small_resnet", width=8, depth=2, blocks=1, feat_dim=32)
SGD = dict(name="sgd", lr=0.05, scale_lr=False, momentum=0.9, weight_decay=1e-4, warmup_epochs=1)


def _run(checkpoint_path: Path | None = None) -> RunContext:
    return RunContext(seed=0, device=CPU, checkpoint_path=checkpoint_path)


def _untrained_knn(data: PreparedDataset, method: str) -> float:
    config = SupConConfig(method=method, epochs=1, batch_size=64, knn_every=1, knn_k=10, optimizer=OptimizerConfig(**{**SGD, "lr": 1e-9}))
    history = train("supcon", data, data.train, config=config, model_config=MODEL, run=_run()).history
    return history[-1]["val/knn_top1"]


@pytest.mark.parametrize("method", ["supcon", "simclr"])
def test_contrastive_pretraining_learns_features_a_knn_separates(method):
    data = _dataset()
    config = SupConConfig(method=method, epochs=EPOCHS, batch_size=64, temperature=0.2, knn_every=EPOCHS, knn_k=10, optimizer=OptimizerConfig(**SGD))

    history = train("supcon", data, data.train, config=config, model_config=MODEL, run=_run()).history

    learned, untrained = history[-1]["val/knn_top1"], _untrained_knn(data, method)
    print(f"{method}: kNN top-1 {learned:.3f} trained, {untrained:.3f} untrained")
    assert learned >= 0.8, history  # chance is 0.25
    assert learned >= untrained + 0.15, f"kNN top-1 {learned:.2f} after training, {untrained:.2f} with lr 1e-9"
    assert history[-1]["train/loss"] < history[0]["train/loss"]


def test_cross_entropy_learns_and_the_linear_probe_selects_on_val_only(tmp_path):
    data = _dataset()
    config = CrossEntropyConfig(epochs=EPOCHS, batch_size=64, optimizer=OptimizerConfig(**SGD))

    trained = train("ce", data, data.train, config=config, model_config=MODEL, run=_run())
    history = trained.history

    assert history[-1]["val/top1"] >= 0.75 and history[0]["val/top1"] < history[-1]["val/top1"], history
    # The probe on the CE encoder (any encoder will do): trained and selected without the test split.
    probe_config = LinearConfig(epochs=4, batch_size=64, augmentation=dataclasses.replace(LinearConfig().augmentation, policy="none"),
                                optimizer=OptimizerConfig(name="sgd", lr=0.5, scale_lr=False, warmup_epochs=0))  # fmt: skip
    probe = train("linear", data, data.train, config=probe_config, encoder=trained.model.encoder, run=_run(checkpoint_path=tmp_path / "last.pt"))
    probe_history = probe.history
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    val = [row["val/top1"] for row in probe_history]
    assert best["val_top1"] == max(val) and best["epoch"] == 1 + val.index(max(val))
    assert max(val) > CHANCE + 0.4
