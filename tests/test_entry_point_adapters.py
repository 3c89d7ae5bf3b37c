"""A separately installed package adds a model through the ``medsam2_bench.adapters`` entry point.

The package is written here, installed with pip into a folder put on
``sys.path`` (as a real installation into site-packages would be), and run in a
suite end to end, in the driver and in spawned worker processes. Broken entry
points are each one warning line naming the distribution and entry point, and
never hide the built-in models.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import bench.adapters.base as base
import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.readers import load_card, read_flows

ROOT = Path(__file__).resolve().parents[1]

PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "tiny-bench-model"
version = "0.3.1"

[project.entry-points."medsam2_bench.adapters"]
tiny-constant = "tiny_bench_model:Constant"

[tool.setuptools]
packages = ["tiny_bench_model"]
"""

# The user's model: no @register and no edit to this repository; the entry point adds it.
PLUGIN = '''
import numpy as np

from bench.adapters import Adapter, Capabilities
from bench.frames import frame_shapes
from bench.settings import Settings
from bench.types import Prediction


class Constant(Adapter):
    """Predicts the whole frame (foreground = true) or nothing."""

    name = "tiny-constant"
    description = "Test plugin: a constant mask."
    capabilities = Capabilities(prompt_kinds=frozenset({"point", "box"}),
                                flow_kinds=frozenset({"image-flow"}))

    class Options(Settings):
        foreground: bool = False

    def predict(self, flow, prompts):
        shapes = frame_shapes(flow.frames)
        value = self.options.foreground
        return Prediction(masks={p.target: [np.full(s[:2], value) for s in shapes]
                                 for p in prompts})
'''

# Four broken entry points, hand-made metadata (importlib.metadata reads a bare .dist-info).
BROKEN_ENTRY_POINTS = """
[medsam2_bench.adapters]
needs-missing = broken_bench_missing:Missing
not-an-adapter = broken_bench_plugin:NotAnAdapter
full-frame = broken_bench_plugin:FullFrame
wrong-name = broken_bench_plugin:WrongName
"""
BROKEN_PLUGIN = '''
from bench.adapters import Adapter


class NotAnAdapter:
    name = "not-an-adapter"


class FullFrame(Adapter):
    name = "full-frame"


class WrongName(Adapter):
    name = "another-name"
'''

SUITE = """
[models.tiny-constant]
foreground = true

[suites.plugin]
description = "A plugin model on the built-in demo fundus images."
reproduces = "none (synthetic)"
protocol = "one-prompt"
datasets = ["demo-fundus"]
demo = ["demo-fundus"]
models = ["tiny-constant"]

[suites.plugin.protocol_params]
template = "first"
"""


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """A folder holding tiny-bench-model as pip installs it (package and .dist-info)."""
    work = tmp_path_factory.mktemp("plugin")
    source = work / "src"
    (source / "tiny_bench_model").mkdir(parents=True)
    (source / "pyproject.toml").write_text(PYPROJECT)
    (source / "tiny_bench_model" / "__init__.py").write_text(PLUGIN)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                    "--no-index", "--disable-pip-version-check", "-q", "--target",
                    str(work / "site"), str(source)], check=True, capture_output=True)
    return work / "site"


@pytest.fixture
def broken_site(tmp_path):
    """A folder with a hand-made distribution whose four entry points are each broken."""
    site = tmp_path / "broken-site"
    info = site / "broken_bench_plugin-2.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-bench-plugin\n"
                                   "Version: 2.0\n")
    (info / "entry_points.txt").write_text(BROKEN_ENTRY_POINTS)
    (site / "broken_bench_plugin.py").write_text(BROKEN_PLUGIN)
    # needs-missing's module imports a module that is not there.
    (site / "broken_bench_missing.py").write_text("import no_such_module_xyz  # noqa\n")
    return site


def _fresh_registry(monkeypatch, *sites):
    """Reload the registry's entry points with ``sites`` on sys.path; restored afterwards."""
    base.registered()  # the built-ins, imported once per process, are in the snapshot
    snapshot = dict(base._REGISTRY)
    for site in sites:
        monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(base, "_loaded", False)
    monkeypatch.setattr(base, "_SOURCES", {})
    monkeypatch.setattr(base, "_PROBLEMS", [])
    for module in ("tiny_bench_model", "broken_bench_plugin", "broken_bench_missing"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    return snapshot


@pytest.fixture
def registry(monkeypatch):
    """Calls ``load(*sites)``; the registry is put back as it was after the test."""
    snapshots = []

    def load(*sites):
        snapshots.append(_fresh_registry(monkeypatch, *sites))
        return base.registered()

    yield load
    if snapshots:
        base._REGISTRY.clear()
        base._REGISTRY.update(snapshots[0])


def _workspace(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "datasets", folder / "datasets")
    config = folder / "bench.toml"
    config.write_text((ROOT / "bench.toml").read_text() + SUITE)
    return config


def _full_frame_dice() -> dict[tuple[str, str], float]:
    """Dice of an all-foreground mask per (case, target), counted from the ground truth.

    Dice = 2|G| / (|G| + N) for a mask of N pixels holding |G| target pixels; the
    one-prompt template (first image holding the target) is not scored.
    """
    expected = {}
    flow = next(read_flows(load_card(ROOT / "datasets" / "demo-fundus.toml"), None, 6))
    for target in flow.targets:
        template = next(i for i, m in enumerate(flow.masks[target]) if np.any(m))
        for index, (case, mask) in enumerate(zip(flow.case_ids, flow.masks[target],
                                                 strict=True)):
            if index != template:
                g, n = int(np.sum(mask)), int(np.size(mask))
                expected[(case, target)] = 2 * g / (g + n)
    return expected


def _run(config: Path, out: Path, capsys, *extra: str) -> pd.DataFrame:
    code = main(["--config", str(config), "run", "--suite", "plugin", "--limit", "6",
                 "--no-cache", "--out", str(out), *extra])
    assert code == 0, capsys.readouterr()
    return pd.read_csv(out / "metrics.csv")


def test_an_installed_package_adds_a_model_that_runs_in_a_suite(plugin_site, registry,
                                                                  tmp_path, capsys):
    models = registry(plugin_site)
    assert models["tiny-constant"].__module__ == "tiny_bench_model"
    assert base.source("tiny-constant") == "tiny-bench-model 0.3.1"
    assert base.source("full-frame") == base.BUILTIN
    assert base.plugin_problems() == []

    table = _run(_workspace(tmp_path / "work"), tmp_path / "run", capsys)
    assert set(table["model"]) == {"tiny-constant"} and (table["status"] == "ok").all()
    # foreground = true in [models.tiny-constant]: the whole frame (the default is empty).
    dice = table[table["metric"] == "dice"].set_index(["case", "target"])["value"].to_dict()
    expected = _full_frame_dice()
    assert dice.keys() == expected.keys() and len(expected) == 10
    for key, value in expected.items():
        assert dice[key] == pytest.approx(value, rel=1e-9), key


@pytest.mark.slow
def test_spawned_workers_find_the_installed_model(plugin_site, registry, tmp_path, capsys):
    registry(plugin_site)
    config = _workspace(tmp_path / "work")
    local = _run(config, tmp_path / "local", capsys)
    spawned = _run(config, tmp_path / "processes", capsys, "--executor", "processes",
                   "--workers", "2")
    pd.testing.assert_frame_equal(spawned, local)


def test_list_models_shows_where_each_model_comes_from(plugin_site, registry, capsys):
    registry(plugin_site)
    capsys.readouterr()
    assert main(["list", "models"]) == 0
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in capsys.readouterr().out.splitlines() if line.startswith("│")}
    assert rows["tiny-constant"] == "tiny-bench-model 0.3.1"
    assert rows["full-frame"] == "built-in" and rows["registration"] == "built-in"


def test_broken_entry_points_are_one_line_each_and_hide_nothing(plugin_site, broken_site,
                                                                registry, capsys):
    builtin = {name for name, cls in base._REGISTRY.items()
               if cls.__module__.startswith("bench.")}
    full_frame = base._REGISTRY["full-frame"]
    models = registry(broken_site, plugin_site)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 4 and len(err.strip().splitlines()) == 4
    assert all("broken-bench-plugin 2.0" in line for line in warnings)
    by_name = {name: next(line for line in warnings if f"'{name} = broken_bench_" in line)
               for name in ("needs-missing", "not-an-adapter", "full-frame", "wrong-name")}
    assert "ModuleNotFoundError: No module named 'no_such_module_xyz'" in by_name["needs-missing"]
    assert "not a subclass of bench.adapters.Adapter" in by_name["not-an-adapter"]
    assert "already taken by a built-in model" in by_name["full-frame"]
    assert "'another-name'" in by_name["wrong-name"]
    assert base.plugin_problems() == [line.removeprefix("warning: ") for line in warnings]
    # The built-ins, and the working plugin beside the broken one, are all there.
    assert builtin <= set(models) and models["full-frame"] is full_frame
    assert "tiny-constant" in models and "another-name" not in models
    assert main(["list", "models"]) == 0


def test_the_readme_documents_the_entry_point_and_the_interface():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Your own model"):]
    section = section[:section.index("\n## ", 1)]
    assert '[project.entry-points."medsam2_bench.adapters"]' in section
    for name in ("predict", "capabilities", "Options", "unavailable", "fingerprint",
                 "bench list models"):
        assert name in section, name
