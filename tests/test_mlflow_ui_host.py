"""`python -m stages.mlflow_ui` binds 127.0.0.1 unless told otherwise, and says so in one line when
told to serve the unauthenticated UI beyond this machine."""

import pytest

from stages.mlflow_ui import exposure_warning, runs_page


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_addresses_need_no_warning(host):
    assert exposure_warning(host, 5000) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.1", "node0.example.org"])
def test_any_other_address_warns_in_one_line_naming_host_port_and_the_safe_way(host):
    warning = exposure_warning(host, 5123)
    assert warning is not None and "\n" not in warning
    assert warning.startswith(f"warning: --host {host} ") and "5123" in warning and "without authentication" in warning and "SSH tunnel" in warning


def test_a_wildcard_bind_prints_an_address_a_browser_can_open():
    assert runs_page("0.0.0.0", 5000, "7") == "http://127.0.0.1:5000/#/experiments/7/runs"
