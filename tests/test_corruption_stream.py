"""The corrupt stage streams a generated set to disk: a few chunks in memory, never the whole set.

On a tiny Fashion-MNIST written in its real IDX format and prepared by the prepare stage; the
memory checks replace the corruption with a cheap one so that they can use enough images for the
whole corrupted set to dwarf the chunks a streaming writer holds.
"""

import io
import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import yaml

from fixtures_data import write_fashion_mnist
from pipeline.config import parse_params
from pipeline.corruption import generate
from pipeline.corruption.generate import CHUNK, corrupt_chunk
from stages.corrupt import corrupt
from stages.prepare import prepare

REPO = Path(__file__).resolve().parents[1]
TEST_IMAGES = 2000  # 200 per class
IMAGE_BYTES = 28 * 28  # uint8 [1, 28, 28]
STORE = Path("data/corrupted/fashion_mnist")


def _raw_params(raw: Path, **robustness) -> dict:
    return {"run": {"seed": 0, "threads": 1}, "data": {"root": str(raw)}, "robustness": robustness}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    """A folder holding data/prepared/fashion_mnist with TEST_IMAGES test images."""
    root = tmp_path_factory.mktemp("stream")
    raw = root / "raw"
    write_fashion_mnist(raw, train_per_class=4, test_per_class=TEST_IMAGES // 10)
    folder = root / "prepared"
    folder.mkdir()
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        prepare(parse_params(_raw_params(raw)))
    finally:
        os.chdir(cwd)
    return {"root": root, "raw": raw, "prepared": folder / "data" / "prepared"}


@pytest.fixture
def workdir(project, tmp_path, monkeypatch) -> Path:
    shutil.copytree(project["prepared"], tmp_path / "data" / "prepared")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _shifted(image: np.ndarray, corruption: str, severity: int) -> np.ndarray:
    """A cheap stand-in for corrupt_image with the same contract: uint8 [C, H, W] -> uint8 [C, H, W]."""
    return image + np.uint8(10 * severity + len(corruption))


def _peak_traced_bytes(run) -> int:
    """Peak bytes Python and numpy allocated during run() (memory maps are not allocations)."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_corrupting_holds_a_few_chunks_never_the_corrupted_set(project, workdir, monkeypatch):
    monkeypatch.setattr(generate, "corrupt_image", _shifted)
    names, levels = ["gaussian_noise", "fog", "snow", "contrast"], [1, 2, 3, 4, 5]
    params = parse_params(_raw_params(project["raw"], corruptions=names, severities=levels, max_images=None))
    corrupt(params)  # once untraced, so imports and caches are not counted

    peak = _peak_traced_bytes(lambda: corrupt(params))

    clean = TEST_IMAGES * IMAGE_BYTES
    corrupted_set = len(names) * len(levels) * clean  # 31 MB: held at once before streaming
    bound = clean + 4 * CHUNK * IMAGE_BYTES  # the clean images once, and a few chunks
    assert bound < corrupted_set / 10
    assert peak < bound, f"peak {peak / 1e6:.1f} MB, bound {bound / 1e6:.1f} MB, whole corrupted set {corrupted_set / 1e6:.1f} MB"
    stored = np.load(workdir / STORE / "clean.npy")
    fog = np.load(workdir / STORE / "fog.npy", mmap_mode="r")
    assert fog.shape == (5, TEST_IMAGES, 1, 28, 28)
    for i, level in enumerate(levels):
        assert np.array_equal(fog[i], stored + np.uint8(10 * level + 3)), level


def test_an_interrupted_write_leaves_the_old_store_and_no_temp_files(project, workdir, monkeypatch):
    monkeypatch.setattr(generate, "corrupt_image", _shifted)
    corrupt(parse_params(_raw_params(project["raw"], corruptions=["fog"], severities=[1], max_images=300)))
    before = {path.name: path.read_bytes() for path in (workdir / STORE).iterdir()}
    calls = iter(range(10**6))

    def interrupted(image, corruption, severity):
        if next(calls) == CHUNK + 10:  # in the second chunk: the first is in its file already
            raise KeyboardInterrupt
        return _shifted(image, corruption, severity)

    monkeypatch.setattr(generate, "corrupt_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        corrupt(parse_params(_raw_params(project["raw"], corruptions=["fog", "snow"], severities=[2, 4], max_images=None)))
    assert {path.name: path.read_bytes() for path in (workdir / STORE).iterdir()} == before
    assert [path.name for path in (workdir / STORE).parent.iterdir()] == ["fashion_mnist"]


def test_the_stage_cli_with_two_processes_writes_the_files_corrupt_chunk_gives(project, tmp_path):
    """Byte for byte what the in-memory generation wrote: every task's chunk with its own seed, saved with np.save."""
    shutil.copytree(project["prepared"], tmp_path / "data" / "prepared")
    names, levels = ["gaussian_noise", "impulse_noise"], [2, 5]
    raw = _raw_params(project["raw"], corruptions=names, severities=levels, max_images=260)  # two chunks: 250 + 10
    raw["run"]["threads"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

    done = subprocess.run([sys.executable, "-m", "stages.corrupt"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 corruptions x 2 severities of 260 test images, 2 processes" in done.stdout
    store = tmp_path / STORE
    clean = np.load(store / "clean.npy")
    assert clean.shape == (260, 1, 28, 28)
    for name in names:
        expected = np.stack([np.concatenate([corrupt_chunk(clean, name, level, 0, start) for start in (0, CHUNK)]) for level in levels])
        saved = io.BytesIO()
        np.save(saved, expected)
        assert (store / f"{name}.npy").read_bytes() == saved.getvalue(), name
