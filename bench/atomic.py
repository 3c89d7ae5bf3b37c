"""Atomic file writes: a killed run never leaves a half-written file.

Every writer goes through :func:`atomic_path`, which yields a temporary path in
the destination folder and renames it over the destination only once the
content is complete. Temporary names carry :data:`PARTIAL_MARK`, so that a run
killed with SIGKILL (where no cleanup code runs) leaves leftovers that
:func:`remove_partials` can find and delete on resume.

A write that the environment refuses (a full disk, a read-only or forbidden
folder) raises :class:`bench.errors.RunError` naming the file, never a
traceback: the files already written stay valid and the run can be resumed.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.errors import RunError

PARTIAL_MARK = ".partial-"
# errno values that the environment, not the harness, causes; with what to do about them.
_ENVIRONMENT = {
    errno.ENOSPC: "no space left on the device; free some space, then rerun with --resume "
                  "(completed units are kept)",
    errno.EDQUOT: "disk quota exceeded; free some space, then rerun with --resume "
                  "(completed units are kept)",
    errno.EROFS: "the file system is read-only; choose another --out folder",
    errno.EACCES: "permission denied; choose a folder you may write to",
    errno.EPERM: "operation not permitted; choose a folder you may write to",
}


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it to ``path`` on success.

    The temporary name keeps the destination's suffixes (``.nii.gz``, ``.png``)
    so that libraries choosing a format by extension write the right one.
    """
    path = Path(path)
    temp = path.with_name(f"{PARTIAL_MARK}{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield temp
        os.replace(temp, path)
    except OSError as err:
        if err.errno not in _ENVIRONMENT:
            raise
        raise RunError(f"cannot write {path}: {_ENVIRONMENT[err.errno]}") from None
    finally:
        try:
            if temp.exists():
                temp.unlink()
        except OSError:  # e.g. a folder that became unreadable: the partial is swept on resume
            pass


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as temp:
        with open(temp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented, key-sorted JSON, atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def remove_partials(folder: Path) -> int:
    """Delete temporaries left by a killed run under ``folder``; return how many."""
    removed = 0
    for leftover in Path(folder).rglob(f"{PARTIAL_MARK}*"):
        if leftover.is_file():
            leftover.unlink()
            removed += 1
    return removed


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")
