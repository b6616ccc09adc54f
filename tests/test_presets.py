"""Every preset in configs/ runs whole, in miniature, through the commands a user types.

For each preset: `python -m stages.preset configs/<preset>.yaml`, then a second overlay applied
the same way that may change only sizes (epochs, warm-up, steps, batch, image size, images
scored) and what this machine lacks (no GPU: run.device; the fixture's folders; no download),
then `dvc repro`. Everything else the preset chooses stays: its encoder (at a tiny image size),
its dataset read from a fixture in the real on-disk format (CIFAR pickles, an ImageNet JPEG tree
read from its files), no val split, reduced-data cells (one of its fractions: the
smallest, on a fixture of 10 images per class), all 15 corruptions at 5 severities, and the released ImageNet-C tree where the preset names it. The ImageNet presets'
training stages run under torchrun with 2 gloo processes (synchronised BatchNorm across real
processes), are committed with `dvc commit`, and `dvc repro` does the rest, as the README says.

Miniature sizes (see `overlay`): 2 to 4 minutes per preset on one core of a 2-core machine;
the four presets, two at a time, in about 6 minutes.
"""

import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from fixtures_data import write_cifar10, write_cifar100_classes, write_imagenet_tree, write_released_cifar_c, write_released_imagenet_c
from readme_commands import readme_command, substituted, words

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# configs/study_*.yaml are studies, not presets of the paper's protocol: tests/test_study.py runs
# them whole, in miniature, through `python -m pipeline.study`.
PRESETS = sorted(p.stem for p in (REPO / "configs").glob("*.yaml") if not p.stem.startswith("study_"))
COMMON_CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
                      "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression")  # fmt: skip
WNIDS = ["n01440764", "n01443537"]
# Two presets at a time, one per core: each stage process runs one thread (a third lane was
# slower: the runs are CPU-bound, mostly process start-up). Longest first, as measured, so no
# lane starts a long run last; a new preset first.
LANES = 2
MEASURED_SECONDS = {"imagenet_resnet200": 192, "cifar10_resnet50": 176, "imagenet_resnet50": 127, "cifar100_resnet50": 121}
LONGEST_FIRST = sorted(PRESETS, key=lambda preset: -MEASURED_SECONDS.get(preset, float("inf")))
PROCESSES = 2  # torchrun's processes per node here: gloo on 2 cores, where the README has 8 GPUs

# What the miniature overlay may change: the sizes of the run, and where this machine is not the
# preset's (no GPU, the fixture's folders instead of downloads). Leaf keys, "*" any section.
SIZE_KEYS = {"*.epochs", "*.optimizer.warmup_epochs", "*.batch_size", "reduced.steps", "reduced.min_epochs", "reduced.fractions", "long_tail.factors", "data.image_size", "robustness.max_images", "run.seeds"}
TRAIN_PER_CLASS = 10  # the fixtures' train images per class: the smallest fraction a class keeps an image of is 0.1
MACHINE_KEYS = {"run.device", "run.threads", "data.root", "data.download", "data.loader_workers", "robustness.released_root"}


def overlay(preset: str, raw: Path) -> dict:
    """The miniature overlay of `preset`: one training seed (three would triple the cost; the
    seed statistics have tests of their own), one epoch per training stage with a warm-up of the
    same length, 2 optimizer steps per reduced cell (so the budget rule's epochs, not its steps,
    rule there), small batches, 8 px images (the smallest the config allows; the CIFAR stem), and
    one of the preset's reduced fractions (see `miniature_fractions`)."""
    imagenet = preset.startswith("imagenet")
    batch = 8 if imagenet else 32  # ImageNet's fixture: 20 images, 10 per process under torchrun
    train = {"epochs": 1, "batch_size": batch, "optimizer": {"warmup_epochs": 1}}
    sizes = {
        "run": {"device": "cpu", "threads": 1, "seeds": [0]},
        "data": {"root": str(raw / "data"), "download": False, "image_size": 8},
        "supcon": train,
        "ce": train,
        "linear": {"epochs": 1, "batch_size": batch},
        "reduced": {"steps": 2, "min_epochs": 1, "fractions": miniature_fractions(preset)},
        "long_tail": {"factors": miniature_factors(preset)},
        "robustness": {"max_images": 10} if not imagenet else {"released_root": str(raw / "imagenet-c")},
    }  # fmt: skip
    return sizes


def miniature_fractions(preset: str) -> list[float]:
    """One of the fractions the preset lists: the smallest that leaves every class of the fixture
    an image. It has fewer items than a batch, so the cell takes the budget rule's cut batch; a
    larger fraction runs the same code as the main stages (one process per cell is most of its
    cost), and a fraction of 1.0 is named as DVC renders it in tests/test_reduced_cells.py."""
    listed = yaml.safe_load((REPO / "configs" / f"{preset}.yaml").read_text())["reduced"]["fractions"]
    return [min(f for f in listed if round(f * TRAIN_PER_CLASS) >= 1)]


def miniature_factors(preset: str) -> list[float]:
    """One of the imbalance factors the preset lists (params.yaml's when it lists none): the
    smallest, if it leaves the fixture's tail class an image (factor <= TRAIN_PER_CLASS); else
    (ImageNet's 256) TRAIN_PER_CLASS, the largest the fixture allows. Its cells run reduced_data's
    code on a long tail under the same miniature budget."""
    listed = (yaml.safe_load((REPO / "configs" / f"{preset}.yaml").read_text()).get("long_tail") or yaml.safe_load((REPO / "params.yaml").read_text())["long_tail"])["factors"]
    return [min([f for f in listed if f <= TRAIN_PER_CLASS], default=TRAIN_PER_CLASS)]


def write_fixture(preset: str, raw: Path) -> None:
    """The preset's dataset in its real on-disk format, TRAIN_PER_CLASS train images per class,
    and the released corrupted set where the preset reads one."""
    if preset.startswith("cifar100"):
        write_cifar100_classes(raw / "data", classes=10, train_per_class=TRAIN_PER_CLASS, test_per_class=2)
    elif preset.startswith("cifar10"):
        written = write_cifar10(raw / "data", per_class_per_batch=TRAIN_PER_CLASS // 5, test_per_class=2)
        write_released_cifar_c(raw / "cifar-10-c", COMMON_CORRUPTIONS, written["test_labels"])
    else:
        write_imagenet_tree(raw / "data", WNIDS, train_per_class=TRAIN_PER_CLASS, val_per_class=4)
        write_released_imagenet_c(raw / "imagenet-c", WNIDS, COMMON_CORRUPTIONS, per_class=4)


def leaf_keys(mapping: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        keys |= leaf_keys(value, f"{path}.") if isinstance(value, dict) else {path}
    return keys


def allowed(key: str) -> bool:
    section, _, rest = key.partition(".")
    return key in SIZE_KEYS | MACHINE_KEYS or f"*.{rest}" in SIZE_KEYS


def env() -> dict[str, str]:
    from test_stages import env as stage_env

    return stage_env()


def run(cmd: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {done.returncode}\nstdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}")
    return done


def new_project(root: Path) -> Path:
    """A git + DVC repository holding the project as committed (params.yaml with its comments)."""
    repo = root / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, repo)
    for package in ("stages", "pipeline", "configs"):
        shutil.copytree(REPO / package, repo / package, ignore=shutil.ignore_patterns("__pycache__"))
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    # Outputs hardlinked from DVC's cache, not copied: a ResNet-200 preset writes gigabytes of checkpoints.
    run(["dvc", "config", "cache.type", "hardlink"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "project"], repo)
    return repo


def test_the_overlays_change_only_sizes_and_what_this_machine_lacks(tmp_path):
    for preset in PRESETS:
        touched = sorted(leaf_keys(overlay(preset, tmp_path)))
        assert [key for key in touched if not allowed(key)] == [], preset
        listed = yaml.safe_load((REPO / "configs" / f"{preset}.yaml").read_text())["reduced"]["fractions"]
        assert set(overlay(preset, tmp_path)["reduced"]["fractions"]) <= set(listed), preset  # fractions only from the preset's list
        factors = (yaml.safe_load((REPO / "configs" / f"{preset}.yaml").read_text()).get("long_tail") or yaml.safe_load((REPO / "params.yaml").read_text())["long_tail"])["factors"]
        fitting = [f for f in factors if f <= TRAIN_PER_CLASS]  # none of ImageNet's 256: the fixture's largest, a size cut
        assert set(overlay(preset, tmp_path)["long_tail"]["factors"]) <= set(fitting or [TRAIN_PER_CLASS]), preset


def declared_outputs(repo: Path) -> list[Path]:
    """Every out, metric and plot file dvc.lock records for the stages that ran."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return [repo / out["path"] for entry in lock.values() for out in entry.get("outs", [])]


def apply_preset(preset_file: str, repo: Path) -> None:
    """The README's `python -m stages.preset configs/cifar10_resnet50.yaml` with only the preset's
    file changed (`python` is this venv's: first on the stages' PATH)."""
    command = readme_command("python -m stages.preset configs/cifar10_resnet50.yaml")
    run(words(substituted(command, {"configs/cifar10_resnet50.yaml": preset_file})), repo)


def dvc_repro(repo: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """The README's `dvc repro` (this venv's dvc: first on the stages' PATH)."""
    return run(words(readme_command("dvc repro")), repo, timeout=timeout)


def miniature_run(preset: str, root: Path) -> dict:
    """The user's commands for one preset: apply it, apply the miniature overlay, (torchrun,) `dvc repro`."""
    started = time.time()
    raw = root / "raw"
    write_fixture(preset, raw)
    repo = new_project(root)
    apply_preset(f"configs/{preset}.yaml", repo)
    (repo / "miniature.yaml").write_text(yaml.safe_dump(overlay(preset, raw)))
    apply_preset("miniature.yaml", repo)
    if preset.startswith("imagenet"):
        trained_under_torchrun(repo)
    done = dvc_repro(repo, timeout=1500)
    robustness = json.loads((repo / "metrics/seeds/0/robustness.json").read_text())
    if preset == "cifar10_resnet50":
        scores_the_release_its_comment_offers(repo, raw)
    return {"repo": repo, "repro": done, "robustness": robustness, "seconds": time.time() - started}


@pytest.fixture(scope="module")
def miniature_runs(tmp_path_factory) -> dict:
    """Every preset's miniature run, checked and then deleted (checkpoints of ResNet-50/200 cells
    fill gigabytes), LANES at a time, longest first."""

    def attempt(preset: str) -> BaseException | str:
        root = tmp_path_factory.mktemp(preset)
        try:
            return check_whole_run(preset, miniature_run(preset, root))
        except BaseException as failure:  # pytest.fail raises a BaseException: report it in the preset's test
            return failure
        finally:
            shutil.rmtree(root, ignore_errors=True)

    with ThreadPoolExecutor(max_workers=LANES) as lanes:
        return dict(zip(LONGEST_FIRST, lanes.map(attempt, LONGEST_FIRST)))


@pytest.mark.parametrize("preset", PRESETS)
def test_the_preset_runs_whole_in_miniature(preset, miniature_runs):
    outcome = miniature_runs[preset]
    if isinstance(outcome, BaseException):
        raise outcome
    print(outcome)


def check_whole_run(preset: str, result: dict) -> str:
    """Every stage ran, every declared output exists, DVC is up to date, the report judges every claim."""
    repo, done = result["repo"], result["repro"]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    preset_values = yaml.safe_load((REPO / "configs" / f"{preset}.yaml").read_text())
    assert params["reduced"]["fractions"] == miniature_fractions(preset) and set(miniature_fractions(preset)) <= set(preset_values["reduced"]["fractions"])
    assert params["long_tail"]["factors"] == miniature_factors(preset)
    assert params["data"]["val_fraction"] == 0.0 and params["model"]["encoder"] == preset_values["model"]["encoder"]

    stages = run(["dvc", "stage", "list", "--name-only"], repo).stdout.split()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert sorted(lock) == sorted(stages), "a stage did not run"
    missing = [str(path.relative_to(repo)) for path in declared_outputs(repo) if not path.exists()]
    assert missing == []
    status = run(["dvc", "status"], repo).stdout
    assert "up to date" in status, status
    claims = report_claims(repo / "reports/summary.md")
    # top-1, each fraction, mCE, temperature, ECE, each long-tail factor, and the queue's one row (no small-batch cell listed)
    assert len(claims) == 3 + len(params["reduced"]["fractions"]) + 1 + len(params["long_tail"]["factors"]) + 1, claims
    robustness = result["robustness"]
    assert robustness["corruptions"] == list(COMMON_CORRUPTIONS) and robustness["severities"] == [1, 2, 3, 4, 5]
    assert robustness["source"] == (preset_values["robustness"].get("released") or "generated")
    assert "mCE" in robustness["supcon"] and "mCE" in robustness["ce"]
    return f"{preset}: {result['seconds']:.0f} s in all; dvc repro ran {done.stdout.count('Running stage')} stages"


def scores_the_release_its_comment_offers(repo: Path, raw: Path) -> None:
    """The CIFAR presets generate their corrupted sets; their comment offers the released one
    instead (`released: cifar10-c`): set, only the corrupted set and its scores are redone."""
    (repo / "release.yaml").write_text(yaml.safe_dump({"robustness": {"released": "cifar10-c", "released_root": str(raw / "cifar-10-c")}}))
    apply_preset("release.yaml", repo)
    done = dvc_repro(repo)
    assert sorted(line.split("'")[1] for line in done.stdout.splitlines() if line.startswith("Running stage")) == ["compare", "corrupt", "report", "robustness@0"]
    robustness = json.loads((repo / "metrics/seeds/0/robustness.json").read_text())
    assert robustness["source"] == "cifar10-c" and robustness["images_per_cell"] == 20 and "mCE" in robustness["supcon"]


def torchrun_commands() -> list[str]:
    """The README's torchrun lines (section "Several GPUs and machines"), changed only where this
    machine is not the README's: PROCESSES gloo processes for its 8 GPUs (the README says so), and
    this venv's torchrun."""
    lines = [
        readme_command("torchrun --nproc_per_node=8 -m stages.pretrain_supcon"),
        readme_command("torchrun --nproc_per_node=8 -m stages.linear_eval"),
        readme_command("torchrun --nproc_per_node=8 -m stages.train_ce"),
    ]
    changes = {"torchrun": str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node=8": f"--nproc_per_node={PROCESSES}"}
    return [substituted(line, changes) for line in lines]


def trained_under_torchrun(repo: Path) -> None:
    """The training stages under torchrun (2 gloo processes, synchronised BatchNorm) and `dvc
    commit`, as the README's torchrun section types them (seed 0, the miniature's seed; one
    machine: torchrun's own rendezvous on a free port); `dvc repro` must then not train them again."""
    run(words(readme_command("dvc repro prepare")), repo)
    for command in torchrun_commands():
        run(words(command), repo)
    run(words(readme_command("dvc commit -f pretrain_supcon@0")), repo)
    for name in ("supcon", "ce", "linear"):
        import torch

        state = torch.load(repo / f"models/seeds/0/{name}/last.pt", weights_only=False)
        assert state["config"]["world_size"] == PROCESSES, name
    status = run(["dvc", "status", "pretrain_supcon@0", "train_ce@0", "linear_eval@0"], repo).stdout
    assert "changed" not in status, status


def report_claims(path: Path) -> list[str]:
    """The rows of the report's claims table."""
    text = path.read_text()
    table = text.split("## Claims", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| claim ")]
    return [row for row in rows if not set(row) <= set("|- ")]
