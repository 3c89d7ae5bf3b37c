"""The inputs every metric takes, checked one way: masks, spacing and tolerance.

Used by :mod:`bench.metrics` and :mod:`bench.surface_dice`, so a mask, a
spacing or a tolerance is accepted or refused by the same rule (and message)
whichever metric reads it.
"""

from __future__ import annotations

import math

import numpy as np


def as_mask(a: object, name: str) -> np.ndarray:
    """``a`` as a boolean 2D or 3D array, or ValueError naming ``name``.

    Boolean arrays pass as they are; numbers must be 0 or 1 (NaN is refused
    with its own message).
    """
    arr = np.asarray(a)
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name}: expected a 2D or 3D mask, got ndim={arr.ndim}")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected a boolean mask, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name}: mask contains NaN")
    if ((arr != 0) & (arr != 1)).any():
        raise ValueError(f"{name}: expected a boolean mask (values 0/1), got other values")
    return arr.astype(bool)


def as_spacing(spacing: object, ndim: int) -> tuple[float, ...]:
    """``spacing`` as ``ndim`` finite positive floats (None: 1.0 per axis, pixel units),
    or ValueError naming what is wrong."""
    if spacing is None:
        return (1.0,) * ndim
    try:
        values = tuple(float(s) for s in spacing)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"spacing: expected {ndim} numbers, got {spacing!r}") from None
    if len(values) != ndim:
        raise ValueError(f"spacing: expected {ndim} values (one per axis), got {len(values)}")
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing: values must be finite and > 0, got {values}")
    return values


def as_tolerance(tolerance_mm: object) -> float:
    """``tolerance_mm`` as a finite float >= 0, or ValueError."""
    try:
        tol = float(tolerance_mm)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"tolerance_mm: expected a number, got {tolerance_mm!r}") from None
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tolerance_mm: expected a finite number >= 0, got {tolerance_mm!r}")
    return tol


__all__ = ["as_mask", "as_spacing", "as_tolerance"]
