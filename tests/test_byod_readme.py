"""The README's "Use your own dataset" commands run as written, on replicas made here.

The commands are read from the README itself (its first two code blocks of that
section), so the README and this test cannot drift apart.
"""

import re
import shlex
from pathlib import Path

import pandas as pd
import pytest
from test_own_data_layouts import _drive, _image, _lesion

from bench.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def _section_blocks() -> list[list[list[str]]]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Use your own dataset"):text.index("## Your own model")]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [[shlex.split(line) for line in block.strip().splitlines()] for block in blocks]


def _ph2(root: Path) -> None:
    from PIL import Image

    for i in range(3):
        case = f"IMD{i + 2:03d}"
        (root / case / f"{case}_Dermoscopic_Image").mkdir(parents=True)
        (root / case / f"{case}_lesion").mkdir()
        Image.fromarray(_image(_lesion(i), i)).save(
            root / case / f"{case}_Dermoscopic_Image" / f"{case}.bmp")
        Image.fromarray(_lesion(i)).convert("1").save(
            root / case / f"{case}_lesion" / f"{case}_lesion.bmp")


@pytest.mark.parametrize("layout", ["case folders", "split folders"])
def test_readme_commands_run_in_an_empty_folder(tmp_path, monkeypatch, layout):
    blocks = _section_blocks()
    assert len(blocks) >= 2
    commands, name, cases = {
        "case folders": (blocks[0], "ph2", ["IMD003", "IMD004"]),
        "split folders": (blocks[1], "drive", ["test/02", "test/03", "training/22",
                                               "training/23"]),
    }[layout]
    if layout == "case folders":
        _ph2(tmp_path / "PH2 Dataset images")
    else:
        _drive(tmp_path / "DRIVE")
    monkeypatch.chdir(tmp_path)  # no bench.toml here or above: the built-in configuration
    assert len(commands) == 2 and all(c[0] == "bench" for c in commands)
    for command in commands:
        assert main(command[1:]) == 0, command
    assert (tmp_path / "cards" / f"{name}.toml").is_file()
    [run] = [p.parent for p in tmp_path.glob("runs/**/metrics.csv")]
    metrics = pd.read_csv(run / "metrics.csv")
    dice = metrics[(metrics["metric"] == "dice") & (metrics["dataset"] == name)]
    assert sorted(set(dice["model"])) == ["full-frame", "registration"]
    # each flow's first image is its one-prompt template: given, not predicted, not scored
    assert sorted(set(dice["case"])) == cases
