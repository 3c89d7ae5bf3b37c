"""Layout guarantees of the project (design card)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_datasets_is_huggingface_from_the_project_root():
    # Run from the repository root, where a top-level `datasets/` folder of
    # dataset cards exists; `python -c` puts the working directory first on sys.path.
    code = "import datasets; print(datasets.__file__); print(hasattr(datasets, 'load_dataset'))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    path, has_loader = result.stdout.split()
    assert (ROOT / "datasets").is_dir()
    assert not (ROOT / "datasets" / "__init__.py").exists()
    assert Path(path).parent.name == "datasets" and "site-packages" in path
    assert has_loader == "True"


def test_cli_help_explains_every_command():
    for command in ([], ["run"], ["list"], ["report"]):
        result = subprocess.run([sys.executable, "-m", "bench.cli", *command, "--help"],
                                cwd=ROOT, capture_output=True, text=True, check=True)
        assert "usage: bench" in result.stdout
    run_help = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--help"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout
    for option in ("--suite", "--models", "--datasets", "--limit", "--seed", "--out", "--resume"):
        assert option in run_help


def test_messages_with_brackets_survive_the_console(tmp_path):
    # TOML tables and extras are written in brackets; rich must not eat them as markup.
    config = tmp_path / "bench.toml"
    config.write_text("[defaults]\nsed = 1\n")
    (tmp_path / "datasets").mkdir()
    result = subprocess.run([sys.executable, "-m", "bench.cli", "--config", str(config), "list",
                             "suites"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "[defaults]: unknown key 'sed'" in result.stderr
