"""Predictions on disk: PNG per image for image flows, NIfTI per target for volumes.

The folder of one model, seed and dataset is :func:`prediction_folder`
(:meth:`bench.rundir.RunDir.prediction_folder`); inside it, :func:`volume_path`
and :func:`image_path` name the files. Volumes are written back in source
geometry: readers put the source ``affine`` in ``flow.meta`` and, when they
reordered axes to slice the volume, the permutation ``source_axes`` such that
``mask.transpose(source_axes)`` is in the source file's array order;
:func:`read_volume` undoes it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.atomic import atomic_path
from bench.errors import DataError
from bench.types import Flow, Prediction


def safe_name(text: str) -> str:
    """A file-system-safe version of an identifier (keeps it readable)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


def file_stem(text: str) -> str:
    """A distinct file name for an identifier: itself when safe, else with a hash suffix.

    ``safe_name`` collapses ``a b``, ``a_b`` and ``a&b`` into ``a_b``; the
    suffix (8 hex digits of the identifier's sha256) keeps their files apart,
    so two cases never share a prediction file.
    """
    safe = safe_name(text)
    if safe == text:
        return text
    return f"{safe}~{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def prediction_folder(run_dir: Path, model: str, seed: int, dataset: str) -> Path:
    """The folder of one model's predictions for one dataset and seed in a run directory."""
    return Path(run_dir) / "predictions" / safe_name(model) / f"seed{seed}" / safe_name(dataset)


def volume_path(folder: Path, flow_id: str, target: str) -> Path:
    """The NIfTI file of one target of a volume flow."""
    return Path(folder) / f"{file_stem(flow_id)}__{file_stem(target)}.nii.gz"


def image_path(folder: Path, target: str, case: str) -> Path:
    """The PNG file of one target of one image (case) of an image flow."""
    return Path(folder) / file_stem(target) / f"{file_stem(case)}.png"


def write_prediction(folder: Path, flow: Flow, prediction: Prediction) -> list[Path]:
    """Write every predicted mask of ``flow`` under ``folder``; return the paths.

    Raises
    ------
    DataError
        Two masks of the flow would share a file (e.g. a repeated case id):
        nothing is overwritten.
    """
    _check_distinct(folder, flow, prediction)
    written: list[Path] = []
    for target, masks in prediction.masks.items():
        if flow.kind == "volume":
            path = volume_path(folder, flow.id, target)
            _write_nifti(path, np.stack([np.asarray(m, dtype=np.uint8) for m in masks]), flow)
            written.append(path)
        else:
            for case, mask in zip(flow.case_ids, masks, strict=True):
                path = image_path(folder, target, case)
                _write_png(path, np.asarray(mask, dtype=bool))
                written.append(path)
    return written


def _check_distinct(folder: Path, flow: Flow, prediction: Prediction) -> None:
    owners: dict[Path, str] = {}
    for target in prediction.masks:
        names = [flow.id] if flow.kind == "volume" else list(flow.case_ids)
        for name in names:
            path = (volume_path(folder, name, target) if flow.kind == "volume"
                    else image_path(folder, target, name))
            owner = f"{name!r} target {target!r}"
            if path in owners:
                raise DataError(path, f"prediction file of {owner} and of {owners[path]} of "
                                f"flow {flow.id!r}: case ids must be distinct")
            owners[path] = owner


def _write_png(path: Path, mask: np.ndarray) -> None:
    """Encode in memory, then write the bytes with a file this function closes.

    An image library writing to the file itself keeps it open when the disk is
    full; closing it at exit fails again and prints a traceback after the
    one-line error. (PIL's encoder gives the bytes skimage's imsave wrote.)
    """
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
    with atomic_path(path) as temp:
        with open(temp, "wb") as handle:
            handle.write(buffer.getvalue())


def _write_nifti(path: Path, mask: np.ndarray, flow: Flow) -> None:
    import nibabel as nib

    axes = flow.meta.get("source_axes")
    if axes is not None:
        mask = np.transpose(mask, axes)
    affine = flow.meta.get("affine")
    if affine is None:
        spacing = flow.spacing or (1.0,) * mask.ndim
        affine = np.diag([*spacing, 1.0])
    image = nib.Nifti1Image(mask.astype(np.uint8), np.asarray(affine, dtype=float))
    with atomic_path(path) as temp:
        nib.save(image, temp)


def read_image(path: Path) -> np.ndarray:
    """A predicted mask written by :func:`write_prediction` for one image (boolean).

    Raises
    ------
    DataError
        The file is missing or cannot be read as an image.
    """
    from skimage.io import imread

    if not Path(path).is_file():
        raise DataError(path, "no prediction file")
    try:
        image = np.asarray(imread(path))
    except (OSError, ValueError) as err:  # what imageio/PIL raise for a damaged file
        raise DataError(path, f"unreadable prediction ({err})") from None
    return (image.max(axis=-1) if image.ndim == 3 else image) > 0


def read_volume(path: Path, meta: Mapping[str, Any]) -> np.ndarray:
    """A predicted volume in the flow's array order (undoing ``source_axes`` of ``meta``).

    Raises
    ------
    DataError
        The file is missing or cannot be read as NIfTI.
    """
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    if not Path(path).is_file():
        raise DataError(path, "no prediction file")
    try:
        data = np.asarray(nib.load(str(path)).dataobj) > 0
    except (OSError, EOFError, ImageFileError) as err:  # a damaged or truncated file
        raise DataError(path, f"unreadable prediction ({err})") from None
    axes = meta.get("source_axes")
    if axes is not None:
        data = np.transpose(data, np.argsort(axes))
    return data
