"""Predictions on disk: PNG per image for image flows, NIfTI per target for volumes.

Volumes are written back in source geometry: readers put the source ``affine``
in ``flow.meta`` and, when they reordered axes to slice the volume, the
permutation ``source_axes`` such that ``mask.transpose(source_axes)`` is in
the source file's array order.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from bench.atomic import atomic_path
from bench.types import Flow, Prediction


def safe_name(text: str) -> str:
    """A file-system-safe version of an identifier (keeps it readable)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


def prediction_folder(run_dir: Path, model: str, seed: int, dataset: str) -> Path:
    return Path(run_dir) / "predictions" / safe_name(model) / f"seed{seed}" / safe_name(dataset)


def write_prediction(folder: Path, flow: Flow, prediction: Prediction) -> list[Path]:
    """Write every predicted mask of ``flow`` under ``folder``; return the paths."""
    written: list[Path] = []
    for target, masks in prediction.masks.items():
        if flow.kind == "volume":
            path = folder / f"{safe_name(flow.id)}__{safe_name(target)}.nii.gz"
            _write_nifti(path, np.stack([np.asarray(m, dtype=np.uint8) for m in masks]), flow)
            written.append(path)
        else:
            for case, mask in zip(flow.case_ids, masks, strict=True):
                path = folder / safe_name(target) / f"{safe_name(case)}.png"
                _write_png(path, np.asarray(mask, dtype=bool))
                written.append(path)
    return written


def _write_png(path: Path, mask: np.ndarray) -> None:
    from skimage.io import imsave

    with atomic_path(path) as temp:
        imsave(temp, mask.astype(np.uint8) * 255, check_contrast=False)


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
