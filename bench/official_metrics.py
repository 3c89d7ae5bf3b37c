"""The official MedSAM-2 code's Dice and IoU, under their own names (issue 12 item 3).

``dice_official`` and ``iou_official`` reproduce the scorers of the official
repository (MedicineToken/Medical-SAM2: ``func_2d/utils.py`` ``eval_seg`` and the
3D validation of ``func_3d/function.py``). They are computed from a model's *logits*, never from
binary masks, and are never mixed with the harness's ``dice`` / ``iou``
(:mod:`bench.metrics`), which score binary masks at the source resolution.

Per (frame, object), with ``A`` the predicted foreground and ``B`` the
reference, both at 1024 x 1024 px:

- Dice = (2|A∩B| + 1e-4) / (|A| + |B| + 1e-4)  (``func_*/utils.py::DiceCoeff``)
- IoU = (|A∩B| + 1e-6) / (|A∪B| + 1e-6)  (``func_*/utils.py::iou``)

so empty/empty scores 1 and a single false-positive pixel on an empty
reference scores about 0.

- Image flows (``func_2d/function.py::validation_sam``): the decoder's logits
  are upsampled to 1024 px with *nearest* (``F.interpolate``'s default) and
  thresholded once at logit > 0.5 (:data:`THRESHOLD_2D`); one value per image.
- Volumes (``func_3d/function.py::validation_sam``): the logits are upsampled
  to 1024 px *bilinearly* (the video predictor's ``_get_orig_video_res_output``)
  and, for each of the five thresholds 0.1, 0.3, 0.5, 0.7, 0.9
  (:data:`THRESHOLDS_3D`, applied to raw logits, no sigmoid), scored per
  slice; the value of a slice is the mean over the thresholds and the value of
  a (volume, object) is the mean over the scored slices. The official
  per-volume number is the flat mean over (slice, object) pairs, which equals
  the mean of the volume's per-object values because every object is scored
  on the same slices.

References are upsampled to 1024 px with PIL's nearest rule (centre
sampling), as the official 3D loader does (mask -> PIL mode "1" ->
``resize``). The official 2D loader builds its reference from each rater's
mask resized *bilinearly* to 1024 px and then voted; the harness only has the
voted mask at native size and upsamples that with nearest (a documented
difference, see the fidelity notes).

The resizing functions follow the index arithmetic of
``torch.nn.functional.interpolate`` (nearest; bilinear with
``align_corners=False``, no antialiasing) and of PIL's nearest, in NumPy, so
the metrics need no torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "OFFICIAL_SIZE",
    "THRESHOLDS_3D",
    "THRESHOLD_2D",
    "official_image_scores",
    "official_overlap",
    "official_volume_scores",
    "resize_bilinear",
    "resize_nearest",
    "resize_nearest_pil",
]

OFFICIAL_SIZE = 1024
THRESHOLD_2D = 0.5
THRESHOLDS_3D: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
_DICE_EPS = 1e-4
_IOU_EPS = 1e-6


def _as_2d(array: object, name: str, dtype: type) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2D array, got shape {a.shape}")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected numbers, got dtype {a.dtype}")
    if a.dtype.kind == "f" and np.isnan(a).any():
        # -inf / +inf logits are legitimate (e.g. gated masks); NaN is not
        raise ValueError(f"{name}: contains NaN")
    return a.astype(dtype, copy=False)


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    # torch 'nearest': src = floor(dst * (in / out)), computed in float32
    scale = np.float32(n_in / n_out)
    index = np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(index, n_in - 1)


def _pil_nearest_index(n_in: int, n_out: int) -> np.ndarray:
    # PIL NEAREST samples at pixel centres: src = floor((dst + 0.5) * (in / out))
    index = np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64)
    return np.minimum(index, n_in - 1)


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2D array with ``torch.nn.functional.interpolate(mode="nearest")``'s rule."""
    a = np.asarray(array)
    rows = _nearest_index(a.shape[0], size[0])
    cols = _nearest_index(a.shape[1], size[1])
    return a[np.ix_(rows, cols)]


def resize_nearest_pil(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2D array with PIL's ``Image.resize(..., NEAREST)`` rule (``size`` = rows, cols)."""
    a = np.asarray(array)
    rows = _pil_nearest_index(a.shape[0], size[0])
    cols = _pil_nearest_index(a.shape[1], size[1])
    return a[np.ix_(rows, cols)]


def _linear_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # torch linear, align_corners=False: src = max((dst + 0.5) * in/out - 0.5, 0), in float32
    scale = np.float32(n_in / n_out)
    half = np.float32(0.5)
    src = np.maximum((np.arange(n_out, dtype=np.float32) + half) * scale - half, np.float32(0))
    low = np.minimum(src.astype(np.int64), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    frac = (src - low.astype(np.float32)).astype(np.float64)
    return low, high, frac


def resize_bilinear(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2D float array as ``interpolate(mode="bilinear", align_corners=False)``.

    No antialiasing (torch's default); the result is float64.
    """
    a = np.asarray(array, dtype=np.float64)
    low, high, frac = _linear_weights(a.shape[0], size[0])
    a = a[low] * (1.0 - frac)[:, None] + a[high] * frac[:, None]
    low, high, frac = _linear_weights(a.shape[1], size[1])
    return a[:, low] * (1.0 - frac)[None, :] + a[:, high] * frac[None, :]


def official_overlap(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """``(dice, iou)`` of two boolean masks with the official code's smoothing terms.

    Dice = (2|A∩B| + 1e-4) / (|A| + |B| + 1e-4); IoU = (|A∩B| + 1e-6) / (|A∪B| + 1e-6).
    Empty/empty gives (1, 1).
    """
    a = _as_2d(pred, "pred", bool)
    b = _as_2d(ref, "ref", bool)
    if a.shape != b.shape:
        raise ValueError(f"pred and ref: shape mismatch {a.shape} vs {b.shape}")
    inter = int(np.count_nonzero(a & b))
    n_a, n_b = int(np.count_nonzero(a)), int(np.count_nonzero(b))
    dice = (2.0 * inter + _DICE_EPS) / (n_a + n_b + _DICE_EPS)
    iou = (inter + _IOU_EPS) / (n_a + n_b - inter + _IOU_EPS)
    return dice, iou


def _at_official_size(logits: object, ref: object, mode: str,
                      size: int) -> tuple[np.ndarray, np.ndarray]:
    lg = _as_2d(logits, "logits", np.float64)
    rf = _as_2d(ref, "ref", bool)
    shape = (size, size)
    resized = resize_bilinear(lg, shape) if mode == "bilinear" else resize_nearest(lg, shape)
    return resized, resize_nearest_pil(rf, shape)


def official_image_scores(logits: np.ndarray, ref: np.ndarray, *,
                          size: int = OFFICIAL_SIZE) -> tuple[float, float]:
    """``(dice_official, iou_official)`` of one 2D image (func_2d scoring).

    Parameters
    ----------
    logits : ndarray of float, 2D
        The decoder's logits for the image at any resolution (typically the
        256 x 256 low-res output); upsampled to ``size`` with nearest.
    ref : ndarray of bool, 2D
        The reference at the image's own resolution; upsampled with PIL's nearest.
    size : int
        The official image size, 1024.
    """
    pred, reference = _at_official_size(logits, ref, "nearest", size)
    return official_overlap(pred > THRESHOLD_2D, reference)


def official_volume_scores(logits: Sequence[np.ndarray], refs: Sequence[np.ndarray], *,
                           thresholds: Sequence[float] = THRESHOLDS_3D,
                           size: int = OFFICIAL_SIZE) -> tuple[float, float]:
    """``(dice_official, iou_official)`` of one object over the scored slices of a volume.

    Each slice: logits bilinear to ``size``, reference nearest (PIL) to
    ``size``; Dice and IoU at every threshold (``logits > th``) averaged over
    the thresholds. The result is the mean over the slices (func_3d scoring).

    Parameters
    ----------
    logits : sequence of 2D float arrays
        One per scored slice, any resolution (typically 256 x 256).
    refs : sequence of 2D bool arrays
        The reference of each of those slices at its own resolution.
    thresholds : sequence of float
        Logit thresholds; the official five by default.

    Raises
    ------
    ValueError
        No slices, or different numbers of logits and references.
    """
    if len(logits) != len(refs):
        raise ValueError(f"{len(logits)} logit slices for {len(refs)} reference slices")
    if not len(logits):
        raise ValueError("no slices to score")
    if not len(thresholds):
        raise ValueError("no thresholds")
    dices, ious = [], []
    for slice_logits, slice_ref in zip(logits, refs, strict=True):
        resized, reference = _at_official_size(slice_logits, slice_ref, "bilinear", size)
        pairs = [official_overlap(resized > th, reference) for th in thresholds]
        dices.append(np.mean([d for d, _ in pairs]))
        ious.append(np.mean([i for _, i in pairs]))
    return float(np.mean(dices)), float(np.mean(ious))
