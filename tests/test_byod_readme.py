"""The README's "Use your own dataset" commands run as written, on a folder made here."""

import shlex
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from bench.cli import main

# The commands of the README section "Use your own dataset", exactly as printed there.
README_COMMANDS = """
bench datasets new skin --images 'skin/images/*.png' --masks 'skin/masks/*_mask.png'
bench datasets check skin --root skin --cards cards
bench run --suite one-prompt --datasets skin --root skin=skin --cards cards --models registration,full-frame
"""  # noqa: E501 (the README line, verbatim)


def _skin(root: Path, count: int = 4) -> None:
    rng = np.random.default_rng(7)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        image = (rng.random((40, 48, 3)) * 200).astype(np.uint8)
        mask = np.zeros((40, 48), np.uint8)
        mask[10:25 + i, 12:30] = 255
        image[mask > 0] += 50
        Image.fromarray(image).save(root / "images" / f"ISIC_{i:04d}.png")
        Image.fromarray(mask).save(root / "masks" / f"ISIC_{i:04d}_mask.png")


def test_readme_commands_run_in_an_empty_folder(tmp_path, monkeypatch):
    _skin(tmp_path / "skin")
    monkeypatch.chdir(tmp_path)  # no bench.toml here or above: the built-in configuration
    monkeypatch.setenv("TQDM_DISABLE", "1")
    commands = [shlex.split(line) for line in README_COMMANDS.strip().splitlines()]
    assert len(commands) == 3 and all(c[0] == "bench" for c in commands)
    for command in commands:
        assert main(command[1:]) == 0, command
    assert (tmp_path / "cards" / "skin.toml").is_file()
    [run] = [p.parent for p in tmp_path.glob("**/metrics.csv")]
    metrics = pd.read_csv(run / "metrics.csv")
    dice = metrics[(metrics["metric"] == "dice") & (metrics["dataset"] == "skin")]
    assert sorted(set(dice["model"])) == ["full-frame", "registration"]
    # ISIC_0000 is the one-prompt template: given, not predicted, so not scored
    assert sorted(set(dice["case"])) == [f"ISIC_{i:04d}" for i in range(1, 4)]
