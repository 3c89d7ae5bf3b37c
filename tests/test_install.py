"""Install anywhere: a wheel built from the source runs from an empty folder.

The wheel is built offline (no build isolation) from a copy of the files a
source distribution carries, through a real sdist, so that ``MANIFEST.in``
and the ``setup.py`` build hook are both exercised. It is installed into a
fresh virtual environment that borrows this interpreter's installed
dependencies through a ``.pth`` file (the environment's own site-packages
comes first, so ``bench`` is imported from the wheel, not from the source).
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.resources import CARDS_FOLDER, CONFIG_NAME, PACKAGED, REPORTS_FOLDER

ROOT = Path(__file__).resolve().parents[1]
# What a source distribution must hold to build the wheel (MANIFEST.in adds the data).
SOURCE = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "bench", "adapters",
          CONFIG_NAME, CARDS_FOLDER, REPORTS_FOLDER)
BUILTIN = [CONFIG_NAME, *(f"{CARDS_FOLDER}/{p.name}" for p in (ROOT / CARDS_FOLDER).glob("*.toml")),
           *(f"{REPORTS_FOLDER}/{p.name}" for p in (ROOT / REPORTS_FOLDER).glob("*.csv"))]


def _clean_env() -> dict[str, str]:
    # Nothing may point back at the source tree or the user's site.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(argv: list, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], cwd=cwd, env=_clean_env(), text=True,
                            capture_output=True, timeout=timeout)
    assert result.returncode == 0, f"{argv}: exit {result.returncode}\n{result.stderr[-3000:]}"
    return result


def _build_wheel(work: Path) -> Path:
    """sdist from a copy of the source, then a wheel from the unpacked sdist."""
    source = work / "source"
    source.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "_builtin")
    for name in SOURCE:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    code = ("import sys; from setuptools import build_meta; "
            "print(build_meta.build_sdist(sys.argv[1]))")
    name = _run([sys.executable, "-c", code, work / "sdist"], source).stdout.split()[-1]
    with tarfile.open(work / "sdist" / name) as archive:
        archive.extractall(work / "unpacked", filter="data")
    (unpacked,) = (work / "unpacked").iterdir()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "--disable-pip-version-check", "-q", "-w", work / "wheels", unpacked],
         work)
    (wheel,) = (work / "wheels").glob("medsam2_bench-*.whl")
    return wheel


def _make_venv(work: Path, wheel: Path) -> Path:
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], work)
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     work).stdout.strip())
    # This interpreter's packages (numpy, torch, pip, ...) come after the venv's own.
    borrowed = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "borrowed-dependencies.pth").write_text("\n".join(borrowed) + "\n")
    # --ignore-installed: never touch the medsam2-bench installed in the borrowed site.
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed",
          "--disable-pip-version-check", "-q", wheel], work)
    return venv


def _package_files(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def _top_level_names(wheel: Path) -> set[str]:
    """The import names a wheel installs, from both ``top_level.txt`` and its file list.

    A folder or module at the wheel's root is importable under that name once
    installed (``adapters/`` would shadow AdapterHub's ``adapters``); the
    ``.dist-info`` folder is metadata.
    """
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        declared = set(archive.read(top_level).decode().split())
    roots = {name.split("/")[0] for name in names}
    installed = {Path(root).stem if root.endswith((".py", ".so", ".pyd")) else root
                 for root in roots if not root.endswith((".dist-info", ".data"))}
    assert declared == installed, f"top_level.txt {declared} vs the wheel's files {installed}"
    return installed


def _check_installed_provenance(run_dir: Path) -> None:
    """An installed copy records its version and no git commit; the report never says None."""
    expected = version("medsam2-bench")  # this checkout's (editable) install
    config = json.loads((run_dir / "config.json").read_text())
    assert config["provenance"]["version"] == expected
    assert "git" not in config["provenance"]
    report = (run_dir / "report.md").read_text()
    provenance = report[report.index("## Provenance"):]
    assert f"medsam2-bench {expected}" in provenance
    assert "None" not in provenance and "git commit" not in provenance


@pytest.mark.slow
def test_a_wheel_installed_anywhere_lists_the_cards_and_runs_the_demo(tmp_path):
    wheel = _build_wheel(tmp_path / "build")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"bench/{PACKAGED}/{path}" for path in BUILTIN} <= names
    assert not any(n.startswith(("benchmarks/", "tests/")) for n in names)
    assert _top_level_names(wheel) == {"bench"}
    venv = _make_venv(tmp_path, wheel)

    empty = tmp_path / "empty"
    empty.mkdir()
    python, bench = venv / "bin" / "python", venv / "bin" / "bench"
    where = _run([python, "-c", "import bench, bench.resources as r; print(bench.__file__); "
                  "print(r.builtin_root()); print(r.source_checkout())"], empty).stdout.split()
    package = Path(where[0]).parent
    assert package.is_relative_to(venv)
    assert where[1:] == [str(package / PACKAGED), "None"]
    before = _package_files(package)

    listing = _run([bench, "list", "datasets"], empty).stdout
    listed = {line.split("│")[1].strip() for line in listing.splitlines()
              if line.startswith("│") and line.split("│")[1].strip()}
    assert listed == {p.stem for p in (ROOT / CARDS_FOLDER).glob("*.toml")}

    _run([bench, "run", "--suite", "demo", "--limit", "2", "--no-cache"], empty)
    (run_dir,) = (empty / "runs" / "demo").iterdir()
    installed = pd.read_csv(run_dir / "metrics.csv")
    assert set(installed["model"]) == {"registration", "full-frame"}
    assert (installed["status"] == "ok").all()
    # The same run from the source tree gives the same numbers, row for row (for the
    # quick model only: the installed code and cards are what is compared).
    reference = tmp_path / "reference"
    assert main(["--config", str(ROOT / CONFIG_NAME), "run", "--suite", "demo", "--limit", "2",
                 "--models", "full-frame", "--no-cache", "--out", str(reference)]) == 0
    expected = pd.read_csv(reference / "metrics.csv")
    quick = installed[installed["model"] == "full-frame"].reset_index(drop=True)
    assert set(expected["dataset"]) == {p.stem for p in (ROOT / CARDS_FOLDER).glob("demo-*")}
    pd.testing.assert_frame_equal(quick, expected)
    _check_installed_provenance(run_dir)
    # Nothing was written into the installed package; the run went to the working folder.
    assert _package_files(package) == before
    assert {p.name for p in empty.iterdir()} == {"runs"}


def test_provenance_of_a_checkout_records_its_commit_and_version():
    from bench.provenance import describe, provenance

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    record = provenance()
    assert record["version"] == version("medsam2-bench")
    assert record["git"]["commit"] == head
    assert describe(record).startswith(f"medsam2-bench {record['version']}, git commit `{head}`")


def test_provenance_without_a_commit_names_the_version_only(monkeypatch):
    import bench.provenance as provenance

    monkeypatch.setattr(provenance, "source_checkout", lambda: None)  # as from a wheel
    record = provenance.provenance()
    assert "git" not in record
    assert provenance.describe(record) == f"medsam2-bench {version('medsam2-bench')}"
    # Records written before the version had its own key: the versions table has it;
    # an unknown commit is left out rather than shown as None.
    old = {"versions": {"medsam2-bench": "0.0.9"}, "git": {"commit": None, "dirty": None}}
    assert provenance.describe(old) == "medsam2-bench 0.0.9"
    assert provenance.describe({}) == "medsam2-bench (version unknown)"
