"""Rendered figures by the content they draw, so that a rerun does not draw them again.

A rerun of a suite whose predictions all come from the prediction cache
(:mod:`bench.cache`) writes the same tables as the run before it, and so the
same figures; drawing them (matplotlib's layout and PNG encoding) was a large
part of what such a rerun cost. While a :func:`figure_cache` is active (``bench
run`` turns it on beside the prediction cache, under ``ROOT/figures/``), each
memoised figure is looked up by a key over everything its pixels depend on:

- the drawing function's name and its inputs (tables by their exact values,
  index, columns and dtypes; other arguments by value; the output path is
  not part of it);
- the source of the modules that draw (:mod:`bench.report.figures`,
  :mod:`bench.report.gallery`, this one) or read the predictions drawn
  (:mod:`bench.store`), and the versions of matplotlib, Pillow and NumPy
  (a ``matplotlibrc`` or fonts changed in between are not seen).

Entries are not counted or pruned by ``bench cache info|prune`` (which look
at predictions only); ``ROOT/figures/`` can be deleted at any time.

A hit copies the stored PNG to the output path (byte-identical to drawing
it: Agg's PNG output carries no date); a miss draws and stores it. A
function that drew nothing (returned None) is remembered as such. Without an
active cache (``bench report``, ``--no-cache``) figures are drawn as always.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from bench.atomic import atomic_path, write_text
from bench.errors import RunError

FIGURE_CACHE_VERSION = 1
#: Sources (relative to this folder) whose code changes the pixels: drawing, and reading
#: the predictions a gallery shows.
_DRAWING_MODULES = ("figures.py", "gallery.py", "figure_cache.py", "../store.py")
_ACTIVE: list[Path] = []

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def figure_cache(folder: str | Path | None) -> Iterator[None]:
    """Memoise figures under ``folder / "figures"`` inside the block (None: off)."""
    if folder is None:
        yield
        return
    _ACTIVE.append(Path(folder) / "figures")
    try:
        yield
    finally:
        _ACTIVE.pop()


def active() -> bool:
    """Whether a figure cache is on."""
    return bool(_ACTIVE)


def cached_figure(kind: str, parts: Any, path: Path, draw: Callable[[], Path | None], *,
                  keep: Callable[[], bool] = lambda: True) -> Path | None:
    """``draw()``'s figure at ``path``, from the cache when ``parts`` were drawn before.

    Parameters
    ----------
    kind : str
        What is drawn (a function's name); part of the key.
    parts : any
        Everything else the figure's pixels depend on (tables, numbers, text).
    path : Path
        Where the PNG goes; ``draw`` writes it there.
    draw : callable
        Draws the figure at ``path``; returns the path, or None when there was
        nothing to draw.
    keep : callable
        Called after a miss: whether to store what ``draw`` made (False: a
        figure that left something out, which the next run must say again).
    """
    if not _ACTIVE:
        return draw()
    folder = _ACTIVE[-1]
    key = figure_key(kind, parts)
    stored, nothing = folder / key[:2] / f"{key}.png", folder / key[:2] / f"{key}.none"
    if nothing.exists():
        return None
    if stored.exists():
        with atomic_path(Path(path)) as temp:
            shutil.copyfile(stored, temp)
        return Path(path)
    drawn = draw()
    if not keep():
        return drawn
    try:
        if drawn is None:
            write_text(nothing, "")
        else:
            with atomic_path(stored) as temp:
                shutil.copyfile(drawn, temp)
    except (RunError, OSError):  # a full or read-only cache costs speed, never the report
        pass
    return drawn


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def memoised(function: F) -> F:
    """Decorate a figure function ``f(data, path, **options) -> Path | None``."""
    @functools.wraps(function)
    def wrapper(data: Any, path: Path, *args: Any, **options: Any) -> Path | None:
        if not _ACTIVE:
            return function(data, path, *args, **options)
        return cached_figure(function.__qualname__, {"data": data, "args": args,
                                                     "options": options}, path,
                             lambda: function(data, path, *args, **options))
    return wrapper  # type: ignore[return-value]


def figure_key(kind: str, parts: Any) -> str:
    """sha256 over the cache version, the drawing code, the libraries, ``kind`` and
    ``parts``."""
    digest = hashlib.sha256()
    digest.update(f"figure|{FIGURE_CACHE_VERSION}|{kind}|{_code_digest()}|".encode())
    _feed(digest, parts)
    return digest.hexdigest()


@functools.cache
def _code_digest() -> str:
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in _DRAWING_MODULES:
        digest.update(f"|{name}|".encode())
        digest.update((here / name).read_bytes())
    for package in ("matplotlib", "pillow", "numpy"):
        try:
            digest.update(f"|{package} {version(package)}".encode())
        except PackageNotFoundError:
            digest.update(f"|{package} none".encode())
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    """Add ``value`` to ``digest`` exactly (floats by their bits, tables by every value)."""
    if isinstance(value, pd.DataFrame):
        digest.update(f"|frame|{json.dumps([str(c) for c in value.columns])}|"
                      f"{json.dumps([str(t) for t in value.dtypes])}|{len(value)}|".encode())
        digest.update(pd.util.hash_pandas_object(value, index=True).to_numpy().tobytes())
    elif isinstance(value, pd.Series):
        _feed(digest, value.to_frame())
    elif isinstance(value, np.ndarray):
        digest.update(f"|array|{value.dtype.str}|{value.shape}|".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, Mapping):
        digest.update(f"|map|{len(value)}|".encode())
        for key in sorted(value, key=str):
            _feed(digest, str(key))
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"|seq|{len(value)}|".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, float):
        digest.update(f"|float|{value.hex()}|".encode())
    elif value is None or isinstance(value, (str, int, bool, Path)):
        digest.update(f"|{type(value).__name__}|{value}|".encode())
    else:
        raise TypeError(f"figure cache: cannot key a {type(value).__name__}")
