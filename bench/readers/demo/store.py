"""Generated demo arrays kept on disk, so that a rerun loads rather than draws them.

Drawing a demo flow costs far more than loading its arrays (about 1.2 s for the
demo suite against a few milliseconds), which dominates a rerun whose units all
come from the prediction cache. Inside :func:`stored_flows` (the ``bench run``
command opens it on the run's cache folder) the arrays of each generated flow
(frames, masks, source intensities) live in ``FOLDER/demo-flows/ab/KEY.npz``,
where the key names everything they depend on: the generator's options, the
flow index, :data:`~bench.readers.demo.reader.DEMO_VERSION`, the source of the
generator modules and the versions of numpy and scipy (the random streams and
filters). Only arrays are stored; ids, cases and metadata are rebuilt by the
reader. An unreadable or foreign entry is drawn again; a full or read-only folder
costs speed, never a flow; ``bench cache prune`` removes entries unused for its
number of days. Outside the block (workers, tests, the library) nothing
is stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench.atomic import atomic_path
from bench.errors import RunError

_FOLDER: list[Path] = []  # the active folder (empty: off)
_CODE: list[str] = []
#: Modules whose code decides the generated arrays.
_MODULES = ("readers/demo/cells.py", "readers/demo/ct.py", "readers/demo/dermoscopy.py",
            "readers/demo/draw.py", "readers/demo/fundus.py", "readers/demo/reader.py",
            "readers/demo/ultrasound.py", "readers/geometry.py")


@contextmanager
def stored_flows(folder: str | Path | None) -> Iterator[None]:
    """Keep generated demo arrays under ``folder/demo-flows`` in this block (None: off)."""
    if folder is None:
        yield
        return
    _FOLDER.append(Path(folder) / "demo-flows")
    try:
        yield
    finally:
        _FOLDER.pop()


def code_digest() -> str:
    """sha256 of the generator modules' source and of the numpy and scipy versions."""
    if not _CODE:
        import scipy

        root = Path(__file__).resolve().parents[2]
        digest = hashlib.sha256(f"numpy {np.__version__} scipy {scipy.__version__}".encode())
        for name in _MODULES:
            digest.update(f"|{name}|".encode())
            digest.update((root / name).read_bytes())
        _CODE.append(digest.hexdigest())
    return _CODE[0]


Arrays = dict[str, Any]  # name -> ndarray, list of ndarrays, dict of those, or None


def stored_arrays(identity: Mapping[str, Any], draw: Callable[[], Arrays]) -> Arrays:
    """``draw()``, or the arrays it gave before for the same ``identity`` (JSON-able)."""
    if not _FOLDER:
        return draw()
    key = hashlib.sha256(json.dumps({**identity, "code": code_digest()}, sort_keys=True)
                         .encode()).hexdigest()
    path = _FOLDER[-1] / key[:2] / f"{key}.npz"
    loaded = _load(path)
    if loaded is not None:
        return loaded
    arrays = draw()
    _save(path, arrays)
    return arrays


def _encode(value: Any, name: str, out: dict[str, np.ndarray]) -> Any:
    """The layout of ``value`` (arrays moved to ``out``); ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        out[name] = value
        return {"array": name}
    if isinstance(value, list):
        return {"list": [_encode(v, f"{name}.{i}", out) for i, v in enumerate(value)]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        # key order kept: it is the flow's target order
        return {"dict": [[k, _encode(v, f"{name}.{i}", out)]
                         for i, (k, v) in enumerate(value.items())]}
    raise ValueError(f"cannot store a {type(value).__name__}")


def _decode(layout: Any, data: Any) -> Any:
    if layout is None:
        return None
    if "array" in layout:
        return data[layout["array"]]
    if "list" in layout:
        return [_decode(v, data) for v in layout["list"]]
    return {k: _decode(v, data) for k, v in layout["dict"]}


def _save(path: Path, arrays: Arrays) -> None:
    out: dict[str, np.ndarray] = {}
    try:
        layout = _encode(arrays, "a", out)
    except ValueError:
        return  # not plain arrays: drawn every time
    if any(a.dtype == object for a in out.values()):
        return
    out["layout"] = np.frombuffer(json.dumps(layout).encode(), dtype=np.uint8)
    try:
        with atomic_path(path) as temp:
            np.savez(temp, **out)
    except (OSError, RunError):  # a full or read-only cache costs speed, never a flow
        pass


def _load(path: Path) -> Arrays | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        layout = json.loads(arrays.pop("layout").tobytes().decode())
        loaded = _decode(layout, arrays)
    except (OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError, TypeError):
        return None  # damaged or foreign: drawn again
    try:
        os.utime(path)  # "last used", as prediction entries (PredictionCache.prune)
    except OSError:
        pass
    return loaded
