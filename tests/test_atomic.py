"""Atomic writes leave either the old file or the new one, never a partial."""

import pytest

from bench import atomic


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "table.csv"
    atomic.write_text(path, "old\n")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(path) as temp:
            temp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [path]


def test_temporary_keeps_the_suffix_and_is_swept_by_remove_partials(tmp_path):
    path = tmp_path / "sub" / "mask.nii.gz"
    with atomic.atomic_path(path) as temp:
        assert temp.name.endswith(".nii.gz") and temp.parent == path.parent
        # Simulate a SIGKILL: a leftover that no cleanup code removed.
        leftover = temp.with_name(temp.name.replace("mask", "other"))
        leftover.write_text("x")
        temp.write_text("done")
    assert path.read_text() == "done"
    assert atomic.remove_partials(tmp_path) == 1
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["mask.nii.gz"]


def test_json_round_trip_with_numpy_values(tmp_path):
    import numpy as np

    path = tmp_path / "x.json"
    atomic.write_json(path, {"a": np.float64(0.5), "b": np.arange(3)})
    assert atomic.read_json(path) == {"a": 0.5, "b": [0, 1, 2]}
