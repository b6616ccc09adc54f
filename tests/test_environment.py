"""Run environment: every field is recorded, stable where it must be, and never breaks a run."""

import json
import time

import pytest

from pipeline import environment

REQUIRED_KEYS = {
    "env/python",
    "env/torch",
    "env/torchvision",
    "env/onednn",
    "env/cudnn",
    "env/cuda",
    "env/cpu_model",
    "env/cpu_isa",
    "env/aten_cpu_capability",
    "env/onednn_max_cpu_isa",
    "env/aten_cpu_capability_override",
    "env/threads",
    "env/gpu",
    "env/packages_sha256",
    "env/packages_count",
}

AVX2_CPUINFO = """\
processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi1 bmi2 sha_ni

processor\t: 1
model name\t: should not be read
"""

SAPPHIRE_RAPIDS_CPUINFO = """\
processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse sse2 avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni \
avx512_bf16 avx_vnni avx512_fp16 amx_bf16 amx_tile amx_int8 avx512vbmi
"""


class FakeDist:
    def __init__(self, name, version):
        self.metadata = {"Name": name}
        self.version = version


def _fake_dists(torch_version="2.14.1"):
    return [FakeDist("torch", torch_version), FakeDist("Typing_Extensions", "4.12.2"), FakeDist("numpy", "2.3.0")]


@pytest.fixture
def fresh_package_cache():
    environment.packages_fingerprint.cache_clear()
    yield
    environment.packages_fingerprint.cache_clear()


def test_all_keys_are_present_and_non_empty_strings():
    env = environment.run_environment()
    assert REQUIRED_KEYS <= env.keys()
    assert all(key.startswith("env/") for key in env)
    assert all(isinstance(value, str) and value for value in env.values())
    assert "env/hostname" not in env
    assert env["env/gpu"] == "none"  # no CUDA device was passed
    json.dumps(env)  # goes into a metrics JSON as it is


def test_a_second_call_is_fast():
    environment.run_environment()
    start = time.perf_counter()
    environment.run_environment()
    assert time.perf_counter() - start < 0.5


def test_packages_hash_ignores_iteration_order(monkeypatch, fresh_package_cache):
    monkeypatch.setattr(environment, "distributions", lambda: _fake_dists())
    forward = environment.packages_fingerprint()
    environment.packages_fingerprint.cache_clear()
    monkeypatch.setattr(environment, "distributions", lambda: list(reversed(_fake_dists())))
    assert environment.packages_fingerprint() == forward
    assert forward[1] == 3


def test_packages_hash_changes_with_a_version(monkeypatch, fresh_package_cache):
    monkeypatch.setattr(environment, "distributions", lambda: _fake_dists("2.14.1"))
    before = environment.run_environment()["env/packages_sha256"]
    environment.packages_fingerprint.cache_clear()
    monkeypatch.setattr(environment, "distributions", lambda: _fake_dists("2.14.2"))
    assert environment.run_environment()["env/packages_sha256"] != before


def test_package_names_are_normalised_and_deduplicated():
    dists = [FakeDist("Typing_Extensions", "1"), FakeDist("typing-extensions", "1"), FakeDist(None, "0")]
    assert environment.package_lines(dists) == ["typing-extensions==1"]


def test_cpu_isa_of_an_avx2_only_machine():
    assert environment.cpu_isa(AVX2_CPUINFO) == "avx2"
    assert environment.cpu_model(AVX2_CPUINFO) == "AMD EPYC 7B12"


def test_cpu_isa_of_an_avx512_amx_machine():
    assert environment.cpu_isa(SAPPHIRE_RAPIDS_CPUINFO) == (
        "avx2,avx512f,avx512_bf16,avx512_fp16,avx512_vnni,amx_tile,amx_bf16,amx_int8"
    )


def test_cpu_isa_without_cpuinfo_is_unknown_and_without_matches_is_none():
    assert environment.cpu_isa("") == "unknown"
    assert environment.cpu_isa("Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n") == "none"


def test_unreadable_cpuinfo_degrades_to_unknown(monkeypatch, tmp_path):
    monkeypatch.setattr(environment, "_CPUINFO", str(tmp_path / "missing"))
    env = environment.run_environment()
    assert env["env/cpu_isa"] == "unknown"
    assert env["env/cpu_model"]  # falls back to the platform module, never empty


def test_a_failing_probe_costs_one_field(monkeypatch):
    def broken():
        raise RuntimeError("no capability for you")

    monkeypatch.setattr(environment.torch.backends.cpu, "get_cpu_capability", broken)
    env = environment.run_environment()
    assert env["env/aten_cpu_capability"] == "unknown"
    assert env["env/torch"] != "unknown"


def test_onednn_version_is_parsed_from_the_build_summary():
    summary = "  - Intel(R) MKL-DNN v3.12.0 (Git Hash 80afa71049cd69a3df32adcccb623b12cd7baa22)\n"
    assert environment.parse_onednn_version(summary) == "3.12.0"
    assert environment.parse_onednn_version("  - oneDNN v3.7.1\n") == "3.7.1"
    assert environment.parse_onednn_version("no such line") == "unknown"


def test_env_var_overrides_are_reported(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    env = environment.run_environment()
    assert env["env/onednn_max_cpu_isa"] == "unset"
    assert env["env/aten_cpu_capability_override"] == "unset"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    env = environment.run_environment()
    assert env["env/onednn_max_cpu_isa"] == "AVX2"
    assert env["env/aten_cpu_capability_override"] == "avx2"


def test_machine_key_ignores_threads_but_not_the_isa():
    env = environment.run_environment()
    key = environment.machine_key(env)
    assert key == environment.machine_key(dict(env))
    assert environment.machine_key({**env, "env/threads": "123"}) == key
    assert environment.machine_key({**env, "env/packages_sha256": "0" * 16}) == key
    # another value than this machine's own (an AVX2-only CPU reports avx2 itself)
    other_isa = "avx512_bf16" if env["env/cpu_isa"] == "avx2" else "avx2"
    other_cap = "AVX512_CORE" if env["env/onednn_max_cpu_isa"] == "AVX2" else "AVX2"
    assert environment.machine_key({**env, "env/cpu_isa": other_isa}) != key
    assert environment.machine_key({**env, "env/onednn_max_cpu_isa": other_cap}) != key


def test_machine_key_of_a_partial_dict_does_not_raise():
    assert environment.machine_key({}) == environment.machine_key({"env/gpu": "unknown"})


def test_a_cuda_device_reports_its_gpu_and_cudnn(monkeypatch):
    # No GPU on CI: stand in for the CUDA calls to check which device's name is asked for.
    asked = []
    monkeypatch.setattr(environment.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(environment.torch.backends.cudnn, "version", lambda: 92400)
    monkeypatch.setattr(environment.torch.cuda, "get_device_name", lambda device: asked.append(device) or "NVIDIA H200")
    env = environment.run_environment(environment.torch.device("cuda", 1))
    assert env["env/gpu"] == "NVIDIA H200"
    assert env["env/cudnn"] == "92400"
    assert asked == [environment.torch.device("cuda", 1)]
    assert environment.run_environment(environment.torch.device("cpu"))["env/gpu"] == "none"
