"""The data types that the pipeline stages pass to each other.

Data flow (DESIGN section 3)::

    reader -> Flow -> protocol -> Prompt (ledger) -> adapter -> Prediction
           -> metrics -> tidy rows -> aggregate -> report

A :class:`Flow` carries ground truth; an adapter only ever sees the
:class:`FlowFrames` view of it, which has no masks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

FlowKind = Literal["volume", "image-flow"]
PROMPT_KINDS: tuple[str, ...] = ("point", "point-random", "box", "box-jitter", "mask")
GEOMETRY_KEYS: tuple[str, ...] = ("affine", "source_axes", "source_shape")
"""``Flow.meta`` entries that adapters may see: how to write a volume back to its source."""


@dataclass(frozen=True)
class FlowFrames:
    """What a model adapter may see of a flow: its frames, never its masks.

    Attributes
    ----------
    id : str
        Flow identifier, unique within its dataset.
    dataset : str
        Dataset name (card name).
    kind : {"volume", "image-flow"}
        A volume has frames of one shape along a slicing axis; an image flow is
        a set of 2D images of the same target, possibly of mixed shapes.
    frames : sequence of ndarray
        2D frames, ``(H, W)`` grey or ``(H, W, 3)`` RGB. For a volume this is
        usually a 3D array ``(n, H, W)`` indexed along its first axis; for an
        image flow read from files, :class:`bench.frames.LazyFrames` (each
        frame read when indexed: use :func:`bench.frames.frame_shapes` for
        shapes, and index a frame once per use).
    spacing : tuple of float or None
        For a volume, ``(slice, row, col)`` in mm; for an image flow the
        in-plane ``(row, col)`` spacing when all images share it; None when
        unknown (metrics then use pixel units).
    case_ids : tuple of str
        The flow's case ids (see :class:`Flow`), so that adapters reading
        saved predictions can find each case's file; empty when unknown.
    geometry : mapping
        The entries of ``Flow.meta`` named in :data:`GEOMETRY_KEYS` (source
        affine, axis order and shape), never source paths, which could name
        ground-truth files.
    modality : str
        The dataset card's ``modality`` (free text, e.g. ``"CT"``), so that an
        adapter whose preprocessing is modality-specific can refuse the wrong
        one; empty when the card gives none.
    source_frames : sequence of ndarray or None
        When the card's ``window`` scaled the frames: the intensities before
        it (e.g. Hounsfield units), indexed like ``frames``, for an adapter
        whose own preprocessing starts from them (``medsam2-ma``'s CT
        window); None when the frames are the source intensities.
    """

    id: str
    dataset: str
    kind: FlowKind
    frames: Sequence[np.ndarray]
    spacing: tuple[float, ...] | None = None
    case_ids: tuple[str, ...] = ()
    geometry: Mapping[str, Any] = field(default_factory=dict)
    modality: str = ""
    source_frames: Sequence[np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class Flow:
    """One flow read from a dataset: frames, ground truth and geometry.

    Attributes
    ----------
    id, dataset, kind, frames, spacing
        As in :class:`FlowFrames`.
    masks : mapping of str to sequence of ndarray
        One boolean mask per target per frame (same indexing as ``frames``);
        for a volume usually a 3D boolean array per target; for an image flow
        read from files, :class:`bench.frames.PackedMasks`.
    case_ids : list of str
        The scoring units. A volume is one case scored in 3D (``[id]``); each
        image of an image flow is its own case (one id per frame).
    patient_ids : list of str
        The patient behind each case, for resampling patients rather than
        slices in confidence intervals. Defaults to ``case_ids``.
    meta : dict
        Reader-specific metadata needed to write predictions back in source
        geometry (e.g. the NIfTI ``affine``) and provenance (source paths).
    source_frames : sequence of ndarray or None
        As in :class:`FlowFrames`.
    """

    id: str
    dataset: str
    kind: FlowKind
    frames: Sequence[np.ndarray]
    masks: Mapping[str, Sequence[np.ndarray]]
    spacing: tuple[float, ...] | None = None
    case_ids: list[str] = field(default_factory=list)
    patient_ids: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    source_frames: Sequence[np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.case_ids:
            if self.kind == "volume":
                self.case_ids = [self.id]
            else:
                self.case_ids = [f"{self.id}/{i:04d}" for i in range(len(self.frames))]
        if not self.patient_ids:
            self.patient_ids = list(self.case_ids)
        expected = 1 if self.kind == "volume" else len(self.frames)
        if len(self.case_ids) != expected:
            raise ValueError(
                f"flow {self.id}: {len(self.case_ids)} case ids for {expected} cases"
            )
        if self.source_frames is not None and len(self.source_frames) != len(self.frames):
            raise ValueError(f"flow {self.id}: {len(self.source_frames)} source frames for "
                             f"{len(self.frames)} frames")
        for target, masks in self.masks.items():
            if len(masks) != len(self.frames):
                raise ValueError(
                    f"flow {self.id}: target {target!r} has {len(masks)} masks "
                    f"for {len(self.frames)} frames"
                )

    @property
    def targets(self) -> list[str]:
        return list(self.masks)

    def view(self, modality: str = "") -> FlowFrames:
        """The ground-truth-free view handed to model adapters (``modality``: the card's)."""
        geometry = {key: self.meta[key] for key in GEOMETRY_KEYS if key in self.meta}
        return FlowFrames(self.id, self.dataset, self.kind, self.frames, self.spacing,
                          tuple(self.case_ids), geometry, modality, self.source_frames)


@dataclass(frozen=True)
class Prompt:
    """One prompt on one frame for one target, in the frame's own pixels.

    Attributes
    ----------
    target : str
    frame : int
        Index of the prompted frame in the flow.
    kind : str
        One of :data:`PROMPT_KINDS`, or ``"empty-mask"`` for the official-code
        profile's prompt that declares a target absent.
    points : tuple of (x, y)
        Click coordinates (column, row).
    labels : tuple of int
        1 for a positive click, 0 for a negative one; one per point.
    box : (x0, y0, x1, y1) or None
        Inclusive pixel box.
    mask : ndarray or None
        Boolean mask for mask prompts (not serialised in the ledger: the ledger
        records its sha256 and the runner re-derives it from ground truth).
    z_range : (z_min, z_max) or None
        ``box3d`` prompts (``cvpr25-interactive``): the inclusive range of
        frames the 3D box spans; ``frame`` is its middle slice and ``box`` the
        2D box there (:mod:`bench.prompts.cvpr25`). ``support-volume`` prompts
        (``alpnet-protocol``): the inclusive range of this flow's frames the
        support slice serves.
    source : str or None
        ``support-volume`` prompts only: the id of the flow (the support
        volume) that ``frame``, ``mask`` and ``image`` come from
        (:mod:`bench.prompts.alpnet`).
    image : ndarray or None
        ``support-volume`` prompts only: the support slice's frame, as the
        model sees frames (the card's intensities), filled in by the runner.
    """

    target: str
    frame: int
    kind: str
    points: tuple[tuple[int, int], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[int, int, int, int] | None = None
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)
    z_range: tuple[int, int] | None = None
    source: str | None = None
    image: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass
class Prediction:
    """What an adapter returns for one flow.

    Attributes
    ----------
    masks : dict of str to sequence of ndarray
        One boolean mask per frame per prompted target, frame shapes as input
        (a list, or :class:`bench.frames.PackedMasks` for long image flows).
    scores : dict of str to list of float or None
        Per-frame model confidence where the model has one (e.g. an IoU head).
    logits : dict of str to list of ndarray, or None
        Optional: per prompted target, one 2D float array per frame holding
        the model's raw mask logits (before any threshold or sigmoid), either
        the decoder's low-res output as it is (e.g. 256 x 256, preferred: the
        official metrics resize it themselves, as the official code does) or
        at the frame's own shape. Only the official metrics
        (``dice_official``, ``iou_official``, :mod:`bench.official_metrics`)
        use them; None (the default) means the model exposes no logits, and
        those metrics are then reported as not available.
    """

    masks: dict[str, Sequence[np.ndarray]]
    scores: dict[str, list[float | None]] = field(default_factory=dict)
    logits: dict[str, list[np.ndarray]] | None = None
