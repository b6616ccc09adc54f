"""params validation: every rule names the key, the value and what is allowed."""

from pathlib import Path

import pytest
import yaml

from pipeline.config import COMMON_CORRUPTIONS, Params, parse_params
from pipeline.config_schema import flatten
from pipeline.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def params_with(**sections) -> dict:
    return {name: dict(values) for name, values in sections.items()}


def assert_rejected(raw: dict, key: str, allowed_fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_params(raw)
    message = str(caught.value)
    assert caught.value.key == key, message
    assert message.startswith(f"{key} = "), message
    assert allowed_fragment in message, message
    assert "\n" not in message


def test_repository_params_yaml_is_valid():
    params = parse_params(yaml.safe_load((REPO / "params.yaml").read_text()))
    assert isinstance(params, Params)
    assert params.data.dataset == "fashion_mnist"


def test_every_preset_validates_on_top_of_params():
    from stages.preset import merged_params

    presets = sorted((REPO / "configs").glob("*.yaml"))
    assert presets, "configs/ should hold presets"
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    for preset in presets:
        merged = merged_params(base, yaml.safe_load(preset.read_text()))
        parse_params(merged)  # their data is not on this machine: prepare checks it, not params


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_dvc_args_of_a_preset_give_back_its_values(preset, capsys):
    import shlex

    from pipeline.config_schema import flatten
    from stages.preset import main

    main([str(REPO / "configs" / preset), "--dvc-args"])

    words = shlex.split(capsys.readouterr().out)
    flags = dict(word.split("=", 1) for word in words[1::2])
    assert words[::2] == ["-S"] * len(flags)
    assert not [value for value in flags.values() if "\n" in value]  # one line to copy (a lone scalar used to end in "\n...")
    expected = flatten(yaml.safe_load((REPO / "configs" / preset).read_text()))
    assert {key: yaml.safe_load(value) for key, value in flags.items()} == expected  # as `dvc exp run -S` parses them


def test_a_preset_is_previewed_before_its_data_exists_and_prepare_says_what_is_missing(tmp_path):
    import subprocess
    import sys

    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    preview = subprocess.run([sys.executable, "-m", "stages.preset", str(REPO / "configs/cifar10_resnet50.yaml"), "--print"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert preview.returncode == 0 and "root: data/raw/cifar10" in preview.stdout, preview.stderr
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["data"].update(dataset="cifar10", root=str(tmp_path / "data/raw/cifar10"), download=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    done = subprocess.run([sys.executable, "-m", "stages.prepare"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"error: data.root: {tmp_path / 'data/raw/cifar10'} does not exist; set data.download: true to fetch")
    assert not [path for path in (tmp_path / "data").rglob("*") if path.is_file()]  # nothing half-written


def _comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


def _key_paths(text: str) -> list[str]:
    return list(flatten(yaml.safe_load(text)))


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_applying_a_preset_keeps_the_comments_key_order_and_untouched_lines_of_params_yaml(preset, tmp_path, monkeypatch):
    from pipeline.yaml_merge import merged
    from stages.preset import main

    before = (REPO / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(before)
    monkeypatch.chdir(tmp_path)
    main([str(REPO / "configs" / preset)])

    after = (tmp_path / "params.yaml").read_text()
    values = yaml.safe_load((REPO / "configs" / preset).read_text())
    assert yaml.safe_load(after) == merged(yaml.safe_load(before), values)
    assert _comments(after) == _comments(before)  # every comment, in its place among the others
    new_keys = [key for key in _key_paths(after) if key not in _key_paths(before)]
    assert [key for key in _key_paths(after) if key not in new_keys] == _key_paths(before)  # the old keys, in their order
    changed = {key for key, value in flatten(values).items() if flatten(yaml.safe_load(before)).get(key, object()) != value}
    removed = [line for line in before.splitlines() if line not in after.splitlines()]
    assert len(removed) <= len(changed)  # only lines of values the preset changes are rewritten
    assert "weight_decay: 1.0e-4" in after  # a value the preset repeats keeps its spelling (not 0.0001)
    assert "zoom_blur,\n                snow," in after  # the hand-wrapped corruption list stays wrapped


def test_the_usage_line_names_the_command_people_type(capsys):
    from stages.preset import main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    usage = " ".join(capsys.readouterr().out.split("\n\n")[0].split())  # argparse wraps it to the terminal
    assert usage == "usage: python -m stages.preset [-h] [--print | --dvc-args | --estimate] [preset]"
    with pytest.raises(SystemExit) as done:
        main([])  # a preset is needed unless --estimate
    assert done.value.code == 2 and "python -m stages.preset: error: the preset is required" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "changes", "expected"),
    [
        ("a: 1  # why a\nb: 2\n", {"a": 3}, "a: 3  # why a\nb: 2\n"),
        ("root:\nx: 1\n", {"root": "data/raw"}, "root: data/raw\nx: 1\n"),  # an empty value
        ("s:\n  k: [1,\n      2]\n  # about t\nt: 0\n", {"s": {"k": [3], "new": None}}, "s:\n  k: [3]\n  new: null\n  # about t\nt: 0\n"),
        ("s: {p: none}\n", {"s": {"q": [0.2, 1.0]}}, "s: {p: none, q: [0.2, 1.0]}\n"),
        ("s:\n  - 1\n  - 2\n# after\nt: 1\n", {"s": [5]}, "s: [5]\n# after\nt: 1\n"),  # a block list becomes a flow one
        ("a: 1.0e-4\nb: 1\n", {"a": 0.0001, "b": 1.0, "c": {"d": True}}, "a: 1.0e-4\nb: 1.0\nc: {d: true}\n"),  # 1 and 1.0 differ in type
        ("", {"a": {"b": 1}}, "a: {b: 1}\n"),
    ],
)
def test_merging_into_yaml_text_rewrites_only_changed_values(text, changes, expected):
    from pipeline.yaml_merge import merge_text

    assert merge_text(text, changes) == expected


def test_empty_mapping_gives_defaults():
    assert parse_params({}) == Params()


@pytest.mark.parametrize(
    ("raw", "key", "allowed"),
    [
        ({"bogus": {}}, "bogus", "a known key of params"),
        ({"supcon": {"temprature": 0.1}}, "supcon.temprature", "temperature"),
        ({"supcon": {"optimizer": {"learning_rate": 1}}}, "supcon.optimizer.learning_rate", "lr"),
    ],
)
def test_unknown_keys_are_rejected(raw, key, allowed):
    assert_rejected(raw, key, allowed)


@pytest.mark.parametrize(
    ("raw", "key", "allowed"),
    [
        (params_with(supcon={"temperature": "hot"}), "supcon.temperature", "a number"),
        (params_with(supcon={"epochs": 1.5}), "supcon.epochs", "an integer"),
        (params_with(supcon={"epochs": True}), "supcon.epochs", "an integer"),
        (params_with(run={"compile": "yes"}), "run.compile", "true or false"),
        (params_with(data={"dataset": 3}), "data.dataset", "a string"),
        (params_with(reduced={"fractions": 0.1}), "reduced.fractions", "a list of"),
        (params_with(run={"device": "tpu"}), "run.device", "'auto', 'cpu', 'cuda'"),
        (params_with(model={"head": "deep"}), "model.head", "'mlp', 'linear'"),
        (params_with(supcon={"variant": "both"}), "supcon.variant", "'out', 'in'"),
        ({"supcon": [1, 2]}, "supcon", "a mapping"),
    ],
)
def test_wrong_types_are_rejected(raw, key, allowed):
    assert_rejected(raw, key, allowed)


@pytest.mark.parametrize(
    ("raw", "key", "allowed"),
    [
        (params_with(supcon={"temperature": 0}), "supcon.temperature", "> 0"),
        (params_with(supcon={"temperature": -0.5}), "supcon.temperature", "> 0"),
        (params_with(supcon={"base_temperature": 0.0}), "supcon.base_temperature", "> 0"),
        (params_with(supcon={"batch_size": 1}), "supcon.batch_size", ">= 2"),
        (params_with(ce={"batch_size": 0}), "ce.batch_size", ">= 2"),
        (params_with(linear={"batch_size": 1}), "linear.batch_size", ">= 2"),
        (params_with(supcon={"epochs": 0}), "supcon.epochs", ">= 1"),
        (params_with(supcon={"views": 0}), "supcon.views", ">= 1"),
        (params_with(reduced={"fractions": [0.1, 0.0]}), "reduced.fractions[1]", "(0, 1]"),
        (params_with(reduced={"fractions": [1.5]}), "reduced.fractions[0]", "(0, 1]"),
        (params_with(data={"train_fraction": 0}), "data.train_fraction", "(0, 1]"),
        (params_with(data={"val_fraction": 1.0}), "data.val_fraction", "[0, 1)"),
        (params_with(data={"files_above": -1}), "data.files_above", ">= 0"),
        (params_with(data={"loader_workers": -2}), "data.loader_workers", ">= 0"),
        (params_with(data={"storage": "npz"}), "data.storage", "'files'"),
        (params_with(supcon={"optimizer": {"lr": 0}}), "supcon.optimizer.lr", "> 0"),
        (params_with(ce={"optimizer": {"momentum": 1.0}}), "ce.optimizer.momentum", "[0, 1)"),
        (params_with(ce={"optimizer": {"weight_decay": -1}}), "ce.optimizer.weight_decay", ">= 0"),
        (params_with(supcon={"augmentation": {"crop_scale": [0.9, 0.2]}}), "supcon.augmentation.crop_scale", "min <= max"),
        (params_with(robustness={"severities": [0]}), "robustness.severities[0]", "1..5"),
        (params_with(robustness={"corruptions": ["rain"]}), "robustness.corruptions[0]", "gaussian_noise"),
        (params_with(robustness={"corruptions": ["fog", "fog"]}), "robustness.corruptions", "without repeats"),
        (params_with(robustness={"severities": [3, 1]}), "robustness.severities", "increasing"),
        (params_with(robustness={"severities": []}), "robustness.severities", "non-empty"),
        (params_with(robustness={"released": "cifar10c"}), "robustness.released", "'cifar10-c'"),
        (params_with(robustness={"batch_size": 0}), "robustness.batch_size", ">= 1"),
        (params_with(sweep={"num_samples": 0}), "sweep.num_samples", ">= 1"),
        (params_with(run={"seeds": []}), "run.seeds", "non-empty"),
        (params_with(run={"seeds": [0, 0]}), "run.seeds", "without repeats"),
        (params_with(run={"checkpoint_every_steps": 0}), "run.checkpoint_every_steps", ">= 1"),
        (params_with(run={"checkpoint_every_minutes": 0}), "run.checkpoint_every_minutes", "> 0"),
        (params_with(supcon={"memory": {"size": -1}}), "supcon.memory.size", ">= 0"),
        (params_with(supcon={"memory": {"momentum": 1.0}}), "supcon.memory.momentum", "[0, 1)"),
        (params_with(supcon={"memory": {"momentum": -0.1}}), "supcon.memory.momentum", "[0, 1)"),
        (params_with(data={"imbalance": {"factor": 0.5}}), "data.imbalance.factor", ">= 1"),
        (params_with(data={"imbalance": {"profile": "linear"}}), "data.imbalance.profile", "'exponential', 'step'"),
    ],
)
def test_out_of_range_values_are_rejected(raw, key, allowed):
    assert_rejected(raw, key, allowed)


@pytest.mark.parametrize(
    ("raw", "key", "registered"),
    [
        (params_with(data={"dataset": "mnist2"}), "data.dataset", "fashion_mnist"),
        (params_with(model={"encoder": "vgg16"}), "model.encoder", "resnet50"),
        (params_with(supcon={"augmentation": {"policy": "mixup"}}), "supcon.augmentation.policy", "simaugment"),
        (params_with(linear={"optimizer": {"name": "adam"}}), "linear.optimizer.name", "lars"),
    ],
)
def test_unregistered_names_are_rejected_with_the_registered_ones(raw, key, registered):
    assert_rejected(raw, key, registered)


def test_a_data_root_that_does_not_exist_yet_is_valid_params(tmp_path):
    # prepare checks it (tests/test_stages.py): presets are applied before their data exists
    assert parse_params(params_with(data={"root": str(tmp_path / "nowhere"), "download": True})).data.root == str(tmp_path / "nowhere")


def test_ints_are_accepted_where_numbers_are_expected():
    params = parse_params(params_with(supcon={"temperature": 1, "optimizer": {"lr": 2}}))
    assert params.supcon.temperature == 1.0 and isinstance(params.supcon.temperature, float)


def test_yaml_exponent_without_sign_is_a_number():
    # PyYAML reads 1.0e6 as the string "1.0e6"; users write it that way.
    raw = yaml.safe_load("supcon:\n  optimizer:\n    lr: 1.0e6\n")
    assert parse_params(raw).supcon.optimizer.lr == 1e6


def test_corruption_names_match_imagecorruptions():
    from imagecorruptions import get_corruption_names

    assert tuple(get_corruption_names("common")) == COMMON_CORRUPTIONS


def test_flatten_gives_dotted_keys():
    flat = flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None})
    assert flat == {"a.b": 1, "a.c.d": [1, 2], "e": None}


def test_stage_cli_prints_one_line_and_exits_2(tmp_path):
    import subprocess
    import sys

    (tmp_path / "params.yaml").write_text("supcon:\n  temperature: -1\n")
    result = subprocess.run(
        [sys.executable, "-m", "stages.prepare"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "supcon.temperature = -1" in result.stderr
    assert "Traceback" not in result.stderr
