"""The pattern matcher follows folder links (ending loops), and check hints at a root
one level off."""

import os
from pathlib import Path

import numpy as np
from PIL import Image

from bench.readers import card_from_table
from bench.readers.check import check_dataset
from bench.readers.patterns import Pattern, one_level_off, walk


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_double_star_descends_into_linked_folders_and_stops_at_loops(tmp_path):
    real = tmp_path / "elsewhere"
    _touch(real / "a" / "img1.png")
    _touch(real / "a" / "deep" / "img2.png")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(real / "a", root / "linked")  # a root made of links to the data
    os.symlink(root, real / "a" / "deep" / "back")  # a loop back above
    os.symlink(root / "linked", root / "linked2")  # a second way to the same folder
    _touch(root / ".hidden" / "img9.png")
    found = Pattern("**/img{id}.png").find(root)
    rels = sorted(p.relative_to(root).as_posix() for p, _ in found)
    assert rels == ["linked/deep/img2.png", "linked/img1.png", "linked2/deep/img2.png",
                    "linked2/img1.png"]  # the loop 'back' is not entered again
    # pathlib's own glob does not enter the linked folders at all (Python 3.11)
    assert sorted(p.name for p in walk(root, "*/img*.png")) == ["img1.png", "img1.png"]


def test_one_level_off_prefers_the_folder_with_most_cases(tmp_path):
    counts = {tmp_path: 2, tmp_path / "x" / "b": 5}
    (tmp_path / "x" / "a").mkdir(parents=True)
    (tmp_path / "x" / "b").mkdir()
    assert one_level_off(tmp_path / "x", lambda f: counts.get(f, 0)) == (tmp_path / "x" / "b", 5)
    assert one_level_off(tmp_path / "x", lambda f: 0) is None


def test_check_names_the_folder_that_would_match(tmp_path):
    data = tmp_path / "download" / "skin"
    (data / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(data / "images" / "a1.png")
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 1
    Image.fromarray(mask).save(data / "images" / "a1_m.png")
    card = card_from_table({"name": "s", "reader": "pairs2d", "kind": "image-flow",
                            "targets": ["t"], "options": {"image": "images/a{id}.png",
                                                          "mask": "images/a{id}_m.png",
                                                          "fields": {"id": r"\d+"},
                                                          "labels": {"t": 1}}}, "s.toml")
    for wrong in (tmp_path / "download", data / "images"):  # one level up, one level down
        hints = [p.message for p in check_dataset(card, wrong) if "hint" in p.message]
        assert hints == [f"hint: the card's patterns match 1 cases under {data}: pass "
                         f"--root {data}"]
    assert not [p for p in check_dataset(card, data) if "hint" in p.message]
