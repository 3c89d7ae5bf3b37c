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
import math
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
    except OSError as err:  # only trying tells: /proc, a file in the way, a read-only mount
        reason = _ENVIRONMENT.get(err.errno) or f"choose another location ({err.strerror})"
        raise RunError(f"cannot write {path}: cannot create the folder "
                       f"{err.filename or path.parent}: {reason}") from None
    try:
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
    """Write ``data`` as indented, key-sorted, strict JSON, atomically.

    NaN and infinities become ``null`` (:func:`strict_json`): bare ``NaN`` is
    not JSON, and other tools' parsers refuse it. Readers that expect numbers
    turn ``null`` back into NaN (:func:`nan_for_null`).
    """
    write_text(path, dumps_strict(data, indent=2, sort_keys=True) + "\n")


def dumps_strict(data: Any, **options: Any) -> str:
    """``json.dumps`` of :func:`strict_json` ``(data)``; never writes NaN or Infinity."""
    return json.dumps(strict_json(data), allow_nan=False, default=_json_default, **options)


def strict_json(value: Any) -> Any:
    """``value`` with NumPy values as Python ones and every NaN or infinity as None.

    Dicts, lists and tuples are converted recursively (tuples become lists, as
    JSON has no tuple); anything else is returned as is.
    """
    import numpy as np

    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    if isinstance(value, np.ndarray):
        return strict_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def nan_for_null(value: Any) -> float:
    """A number read back from strict JSON: ``None`` (``null``) becomes NaN."""
    return float("nan") if value is None else value


def read_json(path: Path) -> Any:
    """The JSON in ``path``; ``null`` stays None (see :func:`nan_for_null`)."""
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
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")
