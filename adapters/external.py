"""Score an external model through its saved predictions.

``predictions`` reads masks that another program wrote (nnU-Net, TransUNet,
MedSegDiff, or another run of this harness) and hands them to the scorer like
any adapter's output, so every model of the paper's tables is scored by the
same code under the same protocol. It ignores the prompts' content.

Settings (``[models.predictions]``)
-----------------------------------
folder : str
    Where the predictions are. ``{dataset}`` in the path is replaced by the
    dataset name; without it, each dataset's predictions are in the
    subfolder ``<folder>/<dataset>`` (the dataset name made file-safe with
    :func:`bench.store.safe_name`). A relative path is taken from the current
    working directory.
layout : {"bench", "nnunet"}
    ``"bench"`` (default), the run layout of :mod:`bench.store`: the folder
    ``predictions/<model>/seed<k>`` of a run, holding per dataset one binary
    PNG ``<target>/<case>.png`` per image and one binary NIfTI
    ``<flow>__<target>.nii.gz`` per volume and target.
    ``"nnunet"``: one label map per case, named by the case id, as nnU-Net
    writes them: ``<case>.nii.gz`` for a volume, ``<case>.png`` for an image
    (override with ``suffix``); ``labels`` maps each target to its value(s).
labels : table, target -> int or list of int
    ``"nnunet"`` layout only: the label value(s) of each target, e.g.
    ``{ disc = [1, 2], cup = 2 }`` when the disc includes the cup.
suffix : str
    ``"nnunet"`` layout only: file suffix, e.g. ``".nii.gz"``, ``".png"``.
check_affine : bool
    For NIfTI volumes whose reader recorded the source affine: refuse a file
    whose affine differs (another orientation or spacing). Default true.

Geometry
--------
Adapters never see ground truth, so every file is checked against the
frames: an image's mask must have the image's shape; a volume's array, put
back from its source axis order (the reader's ``source_axes``) into
``(slice, row, col)``, must have the frames' shape, and its affine must
match the source affine. A mismatch is one error naming the file. NIfTI
volumes are expected in the source image's own array order, as nnU-Net and
this harness write them.

Targets: every prompted target must have a file. Unprompted targets are read
too when a file exists (``"bench"``) or always (``"nnunet"``, every target in
``labels``), so an automatic model's false positives on a target absent from
the flow are scored rather than dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from bench.adapters.base import Adapter, Capabilities, register
from bench.adapters.reference import frame_sizes, prompted_targets
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from bench.errors import ConfigError
from bench.frames import PackedMasks
from bench.prompts.alpnet import KIND as SUPPORT_VOLUME
from bench.readers.files import image_file_errors, volume_file_errors
from bench.settings import Settings
from bench.store import file_stem, image_path, safe_name, volume_path
from bench.types import PROMPT_KINDS, FlowFrames, Prediction, Prompt


def _label_value(value: Any) -> Any:
    # One clear message for every wrong value (pydantic would name a union member).
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise PydanticCustomError("label", "expected an integer or a list of integers")
    return value


LabelValue = Annotated[int | list[int], BeforeValidator(_label_value)]


class PredictionsOptions(Settings):
    """``[models.predictions]``: see the module docstring."""

    folder: str = ""
    layout: Literal["bench", "nnunet"] = "bench"
    labels: dict[str, LabelValue] = {}
    suffix: str | None = None
    check_affine: bool = True

# Tolerance (mm, and unitless for the rotation part) when comparing affines.
AFFINE_ATOL = 1e-3


class PredictionFileError(ValueError):
    """A saved prediction is missing, unreadable or of the wrong geometry (names the file)."""


# ------------------------------------------------------------------------------ reading


def read_mask_png(path: Path) -> np.ndarray:
    """Read a PNG (or other 2D image) mask as an integer label array ``(H, W)``.

    Grey images are returned as they are; RGB(A) images are accepted only when
    their colour channels are equal (a grey mask saved as colour).
    """
    from skimage.io import imread

    try:
        image = np.asarray(imread(path))
    except (*image_file_errors(), RuntimeError) as err:  # RuntimeError: SimpleITK's plugin
        raise PredictionFileError(f"{path}: cannot read image ({err})") from None
    if image.ndim == 3 and image.shape[2] in (3, 4):
        colour = image[..., :3]
        if not (np.array_equal(colour[..., 0], colour[..., 1])
                and np.array_equal(colour[..., 0], colour[..., 2])):
            raise PredictionFileError(f"{path}: expected a grey mask, got a colour image")
        image = colour[..., 0]
    if image.ndim != 2:
        raise PredictionFileError(f"{path}: expected a 2D mask, got shape {image.shape}")
    return image


def read_mask_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI mask: ``(array, affine)``; trailing singleton axes beyond 3D are dropped."""
    import nibabel as nib

    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except volume_file_errors() as err:
        raise PredictionFileError(f"{path}: cannot read NIfTI ({err})") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    return data, np.asarray(image.affine, dtype=float)


def to_frame_order(data: np.ndarray, geometry: Mapping[str, Any], n_frames: int,
                   frame_hw: tuple[int, int], path: Path) -> np.ndarray:
    """Put a volume read in source array order into ``(slice, row, col)``; check its shape.

    Parameters
    ----------
    data : ndarray
        The file's array, in the source image's axis order.
    geometry : mapping
        The flow's geometry (``source_axes``: ``frames.transpose(source_axes)``
        is in source order).
    n_frames, frame_hw
        The shape the result must have: ``(n_frames, *frame_hw)``.
    path : Path
        Named in errors.
    """
    expected = (n_frames, *frame_hw)
    axes = geometry.get("source_axes")
    axes = tuple(int(a) for a in axes) if axes is not None else (0, 1, 2)
    expected_source = tuple(expected[a] for a in axes)
    if data.shape != expected_source:
        raise PredictionFileError(
            f"{path}: shape {tuple(data.shape)} does not match the flow's frames, which "
            f"need {expected_source} in the source image's axis order"
        )
    return np.transpose(data, np.argsort(axes))


def label_values(labels: Mapping[str, int | list[int]], target: str, where: str) -> list[int]:
    """The label value(s) of ``target`` in a label map (values checked by the settings)."""
    if target not in labels:
        raise ConfigError(f"{where}.labels: no value for target {target!r} "
                          f"(has {', '.join(labels) or 'none'})")
    value = labels[target]
    return [int(v) for v in (value if isinstance(value, list) else [value])]


# ------------------------------------------------------------------------------ adapter


@register
@dataclass
class PredictionsAdapter(Adapter):
    """Reads an external model's saved masks (see the module docstring)."""

    name = "predictions"
    description = (
        "External model: masks read from saved predictions (this harness's run layout, or "
        "nnU-Net-style label maps per case), checked against the frames' geometry; the "
        "prompts are ignored. The scores are those of whatever model wrote the folder."
    )
    capabilities = Capabilities(prompt_kinds=frozenset({*PROMPT_KINDS, "empty-mask",
                                                       SUPPORT_VOLUME}), prompt_free=True)
    Options: ClassVar[type[Settings]] = PredictionsOptions

    def __post_init__(self) -> None:
        super().__post_init__()
        where = self.where
        opts = self.options
        if not opts.folder:
            raise ConfigError(f"{where}.folder: set it to the folder of saved predictions")
        if opts.layout == "nnunet" and not opts.labels:
            raise ConfigError(f"{where}.labels: the 'nnunet' layout needs a value per target")
        if opts.layout != "nnunet" and (opts.labels or opts.suffix is not None):
            key = "labels" if opts.labels else "suffix"
            raise ConfigError(f"{where}.{key}: only used with layout = 'nnunet'")
        self.folder = opts.folder
        self.layout = opts.layout
        self.labels = dict(opts.labels)
        self.check_affine = opts.check_affine

    def fingerprint(self) -> dict[str, Any]:
        folder = str(Path(self.folder).resolve())
        # The settings as written (not the defaults): what the user pointed the adapter at.
        return {"adapter": self.name,
                "description": f"{self.description} Read from {folder} ({self.layout} layout).",
                "folder": folder, "settings": self.options.model_dump(exclude_unset=True)}

    def dataset_folder(self, dataset: str) -> Path:
        """The folder holding ``dataset``'s predictions."""
        if "{dataset}" in self.folder:
            return Path(self.folder.replace("{dataset}", dataset))
        return Path(self.folder) / safe_name(dataset)

    def predict(self, flow: FlowFrames, prompts: Sequence[Prompt]) -> Prediction:
        folder = self.dataset_folder(flow.dataset)
        if not folder.is_dir():
            raise PredictionFileError(
                f"{folder}: no predictions folder for dataset {flow.dataset!r} "
                f"({self.where}.folder = {self.folder!r})"
            )
        required = prompted_targets(prompts)
        if self.layout == "nnunet":
            optional = [t for t in self.labels if t not in required]
            masks = self._read_label_maps(flow, folder, [*required, *optional])
        else:
            masks = self._read_bench(flow, folder, required)
        return Prediction(masks=masks)

    # -- the run layout of bench.store

    def _read_bench(self, flow: FlowFrames, folder: Path,
                    required: list[str]) -> dict[str, Sequence[np.ndarray]]:
        shapes = frame_sizes(flow.frames)
        if flow.kind == "volume":
            prefix, suffix = f"{file_stem(flow.id)}__", ".nii.gz"
            stems = [p.name[len(prefix): -len(suffix)] for p in folder.glob(f"{prefix}*{suffix}")]
            return {
                target: self._read_volume(
                    flow, volume_path(folder, flow.id, target), shapes, None)
                for target in _with_extra_targets(required, stems)
            }
        case_ids = _case_ids(flow)
        complete = [
            p.name for p in sorted(folder.iterdir())
            if p.is_dir() and all((p / f"{file_stem(c)}.png").is_file() for c in case_ids)
        ]
        return {
            target: PackedMasks(self._read_image(image_path(folder, target, case), shape, None)
                                for case, shape in zip(case_ids, shapes, strict=True))
            for target in _with_extra_targets(required, complete)
        }

    # -- nnU-Net style label maps

    def _read_label_maps(self, flow: FlowFrames, folder: Path,
                         targets: list[str]) -> dict[str, Sequence[np.ndarray]]:
        shapes = frame_sizes(flow.frames)
        values = {t: label_values(self.labels, t, self.where) for t in targets}
        case_ids = _case_ids(flow)
        if flow.kind == "volume":
            path = _case_file(folder, case_ids[0], _given(self.options.suffix, ".nii.gz"))
            label_map = self._read_volume(flow, path, shapes, "labels")
            return {t: list(np.isin(label_map, v)) for t, v in values.items()}
        suffix = _given(self.options.suffix, ".png")
        masks = {t: PackedMasks() for t in values}
        for case, shape in zip(case_ids, shapes, strict=True):  # one label map at a time
            label_map = self._read_image(_case_file(folder, case, suffix), shape, "labels")
            for target, target_values in values.items():
                masks[target].append(np.isin(label_map, target_values))
        return masks

    # -- one file

    def _read_volume(self, flow: FlowFrames, path: Path, shapes: list[tuple[int, int]],
                     mode: str | None) -> np.ndarray:
        """A volume file as ``(slice, row, col)``: bool, or int labels when ``mode``."""
        if not path.is_file():
            raise PredictionFileError(f"{path}: prediction file not found")
        if path.name.endswith((".png", ".jpg", ".bmp", ".tif", ".tiff")):
            raise PredictionFileError(f"{path}: flow {flow.id} is a volume; expected NIfTI")
        data, affine = read_mask_nifti(path)
        source_affine = flow.geometry.get("affine")
        if self.check_affine and source_affine is not None:
            source_affine = np.asarray(source_affine, dtype=float)
            if source_affine.shape != affine.shape or not np.allclose(
                    affine, source_affine, atol=AFFINE_ATOL):
                raise PredictionFileError(
                    f"{path}: affine differs from the source image's (another orientation or "
                    f"spacing?); set {self.where}.check_affine = false to accept it"
                )
        volume = to_frame_order(data, flow.geometry, len(shapes), shapes[0], path)
        return np.rint(volume).astype(np.int64) if mode else volume != 0

    def _read_image(self, path: Path, shape: tuple[int, int], mode: str | None) -> np.ndarray:
        if not path.is_file():
            raise PredictionFileError(f"{path}: prediction file not found")
        if path.name.endswith((".nii", ".nii.gz")):
            # Image readers take 2D images through PIL; a 2D NIfTI's axis order is ambiguous.
            raise PredictionFileError(f"{path}: image predictions must be 2D image files "
                                      "(PNG), not NIfTI")
        image = read_mask_png(path)
        if image.shape != tuple(shape):
            raise PredictionFileError(
                f"{path}: mask shape {tuple(image.shape)} differs from the image's {tuple(shape)}"
            )
        return image.astype(np.int64) if mode else image != 0


def _case_ids(flow: FlowFrames) -> list[str]:
    expected = 1 if flow.kind == "volume" else len(flow.frames)
    if len(flow.case_ids) != expected:
        raise ValueError(f"flow {flow.id}: needs its {expected} case id(s) to find prediction "
                         f"files, got {len(flow.case_ids)}")
    return list(flow.case_ids)


def _given(value: str | None, default: str) -> str:
    return default if value is None else value


def _case_file(folder: Path, case: str, suffix: str) -> Path:
    """``<folder>/<case><suffix>``: the case id as a relative path, else made file-safe."""
    candidates = [folder / f"{case}{suffix}", folder / f"{safe_name(case)}{suffix}"]
    for path in candidates:
        if path.is_file():
            return path
    raise PredictionFileError(f"{candidates[-1]}: prediction file not found for case {case!r}")


def _with_extra_targets(required: list[str], found: Sequence[str]) -> list[str]:
    """The prompted targets, then the other targets that have files (by file-safe name).

    Only names that are already file-safe (and hold no ``__``) can be mapped
    back from a file name to a target; others are left out.
    """
    taken = {safe_name(t) for t in required}
    extra = sorted({name for name in found
                    if name not in taken and safe_name(name) == name and "__" not in name})
    return [*required, *extra]
