"""tests/conftest.py: in CI (``CI=true``) a skip for something CI provides is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")

MODULE_SKIP = """
import pytest
pytest.importorskip("no_such_model_package_xyz")

def test_never_runs():
    pass
"""

TEST_SKIPS = """
import pytest

def test_torch_missing():
    pytest.skip("could not import 'torch': No module named 'torch'")

@pytest.mark.skipif(True, reason="no Chromium installed (apt-get install -y chromium)")
def test_browser_missing():
    pass

@pytest.mark.skipif(True, reason="real sample data not found at /x (set BENCH_SHARED_DATA)")
def test_shared_data_missing():
    pass

@pytest.mark.skipif(True, reason="pdflatex not installed: the .tex report is not compiled in CI")
def test_latex():
    pass

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False

def test_passes():
    pass
"""


def _run(tmp_path: Path, ci: str | None, *files: tuple[str, str]) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    for name, text in files:
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def _outcomes(stdout: str) -> dict[str, str]:
    # -rA summary lines: "PASSED test_x.py::test_y", "SKIPPED [1] test_x.py:3: reason", ...
    found = {}
    for line in stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("PASSED", "FAILED", "ERROR", "XFAIL"):
            found[rest.split(" ")[0].split("::")[-1]] = word
    return found


@pytest.mark.parametrize("ci", ["true", "1"])
def test_in_ci_a_provided_thing_missing_fails_and_allowed_skips_stay_skips(tmp_path, ci):
    result = _run(tmp_path, ci, ("test_skips.py", TEST_SKIPS))
    got = _outcomes(result.stdout)
    assert result.returncode == 1, result.stdout
    assert got["test_torch_missing"] == "FAILED"
    assert got["test_browser_missing"] in ("FAILED", "ERROR")  # a skipif fails at setup
    assert got["test_passes"] == "PASSED" and got["test_expected_failure"] == "XFAIL"
    assert "test_shared_data_missing" not in got and "test_latex" not in got
    assert "2 skipped" in result.stdout
    assert "CI=true: this would be skipped (could not import 'torch'" in result.stdout


def test_in_ci_a_module_level_importorskip_fails(tmp_path):
    result = _run(tmp_path, "true", ("test_module.py", MODULE_SKIP))
    assert result.returncode != 0
    assert "could not import 'no_such_model_package_xyz'" in result.stdout
    assert "CI=true: this would be skipped" in result.stdout


def test_outside_ci_skips_stay_skips(tmp_path):
    result = _run(tmp_path, None, ("test_skips.py", TEST_SKIPS), ("test_module.py", MODULE_SKIP))
    assert result.returncode == 0, result.stdout
    assert "5 skipped" in result.stdout  # four tests and the module
    assert "CI=true" not in result.stdout
