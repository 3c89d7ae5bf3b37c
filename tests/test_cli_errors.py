"""How a command ends on an error: the project's errors as one line, bugs with a traceback."""

from __future__ import annotations

import pytest

import bench.commands
from bench.cli import BUG_LINE, main
from bench.errors import ConfigError, RunError


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_a_config_error_is_one_line_and_exit_2(tmp_path, capsys):
    config = tmp_path / "bench.toml"
    config.write_text("[defaults]\nsed = 1\n")
    (tmp_path / "datasets").mkdir()
    assert main(["--config", str(config), "list", "suites"]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "[defaults]: unknown key 'sed' (did you mean 'seed'?)" in err[0]
    assert "Traceback" not in err[0]


def test_a_data_error_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = _lines(capsys.readouterr().err)
    assert err == [f"error: {tmp_path / 'nowhere' / 'metrics.csv'}: no metrics table; is "
                   f"{tmp_path / 'nowhere'} a finished run?"]


@pytest.mark.parametrize("error", [ConfigError("--x: bad value"), RunError("cannot resume")])
def test_every_bench_error_is_one_line(monkeypatch, capsys, error):
    def fail(args):
        raise error

    monkeypatch.setattr(bench.commands, "cmd_list", fail)
    assert main(["list", "models"]) == 2
    assert _lines(capsys.readouterr().err) == [f"error: {error}"]


def test_any_other_exception_shows_its_traceback_and_asks_for_a_report(monkeypatch, capsys):
    def broken(args):
        return {}["missing key"]  # a bug: a KeyError no one meant to raise

    monkeypatch.setattr(bench.commands, "cmd_list", broken)
    assert main(["list", "models"]) == 3
    err = capsys.readouterr().err
    lines = _lines(err)
    assert lines[0] == "Traceback (most recent call last):"
    assert "in broken" in err and lines[-2] == "KeyError: 'missing key'"
    assert lines[-1] == BUG_LINE
    assert "medsam2-bench" in BUG_LINE and "report" in BUG_LINE
