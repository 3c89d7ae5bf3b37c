"""Volume geometry: slicing axis, frame order, intensity window, spacing.

Readers return volumes in their source index order (NIfTI's ``(i, j, k)``);
:func:`volume_frames` turns one into ``(slice, row, col)`` frames with the
spacing in that order and records in ``meta`` how to go back
(``source_axes``: ``frames.transpose(source_axes)`` is in source order; see
:func:`to_source_order`), so that predictions can be written in the source
geometry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from bench.errors import ConfigError, DataError
from bench.readers.options import VolumeOptions


def slicing_axis(option: int | Literal["auto"], spacing: Sequence[float]) -> int:
    """The array axis to slice along: an int, or ``"auto"`` = largest spacing."""
    if option == "auto":
        values = list(spacing)
        top = max(values)
        # ties (isotropic) go to the last axis, NIfTI's usual through-plane axis
        return max(i for i, v in enumerate(values) if math.isclose(v, top, rel_tol=1e-3))
    return int(option)


def frame_order(axis: int, transpose: bool, fortran: bool = True) -> tuple[int, int, int]:
    """Permutation taking source index order to ``(slice, row, col)``.

    For volumes stored with the first index fastest (NIfTI, NRRD/MHA: the
    ``fortran`` storage) the in-plane axes come in descending order, as in
    SimpleITK's ``(z, y, x)`` arrays: for ``axis = 2`` rows run along ``j``
    and columns along ``i`` (and the reordering is a cheap contiguous copy).
    C-ordered volumes (``.npy``, stacks of 2D slices) keep their array order.
    ``transpose`` swaps rows and columns.
    """
    rest = [a for a in ((2, 1, 0) if fortran else (0, 1, 2)) if a != axis]
    if transpose:
        rest.reverse()
    return (axis, rest[0], rest[1])


def source_frame_order(options: VolumeOptions, spacing: Sequence[float] | None,
                       storage: str = "fortran") -> tuple[int, int, int]:
    """The frame order of a volume read with ``options`` (see :func:`frame_order`).

    ``storage`` is the reader's ``meta["storage"]``: ``"fortran"`` (NIfTI,
    ITK) or ``"c"`` (``.npy``, slice stacks).
    """
    axis = slicing_axis(options.axis, spacing or (1.0, 1.0, 1.0))
    return frame_order(axis, options.transpose, storage == "fortran")


def window_intensities(volume: np.ndarray, option: Sequence[float] | str | None,
                       percentiles: Sequence[float] | None, where: str
                       ) -> tuple[np.ndarray, list[float] | None]:
    """Clip and scale ``volume`` (float32, in place) to [0, 1] by the card's window.

    ``option`` is ``[low, high]``, ``"percentile"`` (of ``percentiles``,
    default [0.5, 99.5], taken on a sample of slices) or None (unchanged).
    """
    if option is None:
        return volume, None
    if option == "percentile":
        low_q, high_q = (percentiles or (0.5, 99.5))
        sample = volume[:: max(1, volume.shape[0] // 64)]  # percentiles of a slab sample
        low, high = (float(v) for v in np.percentile(sample, [low_q, high_q]))
    elif not isinstance(option, str) and len(option) == 2:
        low, high = float(option[0]), float(option[1])
    else:
        raise ConfigError(f"{where}.window: expected [low, high] or 'percentile', "
                          f"got {option!r}")
    if high <= low:
        high = low + 1.0
    np.clip(volume, low, high, out=volume)
    volume -= low
    volume /= high - low
    return volume, [low, high]


def volume_frames(image: np.ndarray, spacing: Sequence[float] | None, affine: np.ndarray | None,
                  options: VolumeOptions, meta: dict[str, Any], where: str
                  ) -> tuple[np.ndarray, tuple[float, ...] | None, np.ndarray | None]:
    """A source-order volume as windowed float32 ``(slice, row, col)`` frames.

    Parameters
    ----------
    image : ndarray
        3D volume in source index order.
    spacing : sequence of float or None
        Voxel size along the source axes; None for pixel units (e.g. slices
        stored as JPEG).
    affine : ndarray or None
        The source's voxel-to-world matrix, recorded in ``meta``.
    options : VolumeOptions
        Axis, transpose and window.
    meta : dict
        The case's metadata (``image``, ``storage``); updated in place with
        ``axis``, ``frame_order``, ``source_axes``, ``source_shape``,
        ``affine`` and ``window``.
    where : str
        Names the card's options in messages.

    Returns
    -------
    frames : ndarray of float32
    spacing : tuple of float or None
        In frame order.
    source : ndarray or None
        With a window: the intensities before it (e.g. Hounsfield units), in
        frame order; in the stored dtype for 8- and 16-bit integers (CT's
        int16), else float32 like the frames; for adapters whose own
        preprocessing starts from them. None without a window.

    Raises
    ------
    DataError
        Not a 3D volume, or NaN / infinite intensities.
    """
    path = str(meta.get("image", "image"))
    if image.ndim != 3:
        raise DataError(path, f"expected a 3D volume, got shape {image.shape} (4D images "
                              "need options.channel)")
    order = source_frame_order(options, spacing, meta.get("storage", "fortran"))
    # one copy: reorder and convert in the same step, then window in place
    volume = np.ascontiguousarray(np.transpose(image, order), dtype=np.float32)
    if not np.isfinite(volume).all():
        raise DataError(path, "NaN or infinite values in the image")
    source = None
    if options.window is not None:
        # The intensities before the window, for recipes that start from them (their own
        # CT window, MR percentiles). Small integers (CT's int16) are exact in float32, so
        # they are cast back from the reordered frames (a fast contiguous pass, half the
        # size); anything else is kept as the float32 the frames were made from.
        small_int = image.dtype.kind in "iu" and image.dtype.itemsize <= 2
        source = volume.astype(image.dtype) if small_int else volume.copy()
    volume, window = window_intensities(volume, options.window, options.percentiles, where)
    meta.update(
        axis=order[0],
        frame_order=order,
        source_axes=tuple(int(a) for a in np.argsort(order)),
        source_shape=tuple(int(s) for s in image.shape),
        affine=affine,
        window=window,
    )
    if spacing is None:
        return volume, None, source
    return volume, tuple(float(spacing[a]) for a in order), source


def affine_parts(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A voxel-to-world affine as ``(origin, direction, spacing)``.

    ``affine[:3, :3] = direction @ diag(spacing)``: the spacing is each
    column's length and the direction its unit vector; the origin is the
    world position of voxel (0, 0, 0).
    """
    linear = np.asarray(affine, dtype=float)[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    direction = linear / np.where(spacing > 0, spacing, 1.0)
    return np.asarray(affine, dtype=float)[:3, 3].copy(), direction, spacing


def geometry_difference(affine: np.ndarray, reference: np.ndarray, atol: float = 1e-3,
                        rtol: float = 1e-4) -> str:
    """What differs between two affines, for a message: each part with both values.

    Parameters
    ----------
    affine : ndarray
        The file's 4x4 voxel-to-world (mm) matrix (a mask's).
    reference : ndarray
        The matrix it should match (the image's).
    atol, rtol : float
        Tolerances in mm (origin, spacing) and relative; the direction, a unit
        matrix, uses ``rtol`` as an absolute tolerance.

    Returns
    -------
    str
        E.g. ``"origin (0, 0, 0.5) mm vs the image's (0, 0, 0) mm"``, the
        differing parts of origin, direction and spacing joined by ``"; "``
        (all three shown when no single part is beyond its tolerance).
    """
    mine, theirs = affine_parts(affine), affine_parts(reference)
    names = ("origin", "direction", "spacing")
    close = (
        np.allclose(mine[0], theirs[0], rtol=rtol, atol=atol),
        np.allclose(mine[1], theirs[1], rtol=0.0, atol=rtol),
        np.allclose(mine[2], theirs[2], rtol=rtol, atol=atol),
    )
    parts = [i for i in range(3) if not close[i]] or [0, 1, 2]
    return "; ".join(f"{names[i]} {_shown(i, mine[i])} vs the image's {_shown(i, theirs[i])}"
                     for i in parts)


def _shown(part: int, value: np.ndarray) -> str:
    """Origin and spacing in mm; a direction as its rows and axis codes (e.g. LPS)."""
    if part == 1:
        rows = ", ".join("(" + ", ".join(_number(v) for v in row) + ")" for row in value)
        return f"({rows}) [{_axis_codes(value)}]"
    return "(" + ", ".join(_number(v) for v in value) + ") mm"


def _number(value: float) -> str:
    return f"{float(value) + 0.0:.6g}"  # + 0.0: no "-0"


def _axis_codes(direction: np.ndarray) -> str:
    """Where each voxel axis points most (RAS world): ``"RAS"``, ``"LPS"``, ..."""
    codes = ("LR", "PA", "IS")
    found = []
    for column in np.asarray(direction).T:
        axis = int(np.argmax(np.abs(column)))
        found.append(codes[axis][int(column[axis] > 0)])
    return "".join(found)


def to_source_order(volume: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
    """Put a ``(slice, row, col)`` array back in the source file's index order."""
    axes = meta.get("source_axes")
    return np.transpose(volume, axes) if axes is not None else volume


__all__ = ["affine_parts", "frame_order", "geometry_difference", "slicing_axis",
           "source_frame_order", "to_source_order", "volume_frames", "window_intensities"]
