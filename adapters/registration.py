"""Weight-free one-shot baseline: propagate the template mask by deformable registration.

The classical atlas approach. The prompted (template) frame's mask is carried
to every other frame of the flow by TV-L1 optical flow
(:func:`skimage.registration.optical_flow_tvl1`) and a warp:

- image flow: the template frame is registered directly to each other frame
  (the images have no order);
- volume: the mask is propagated slice to slice outward from the template in
  both directions. The slice-to-slice displacement fields are composed, so the
  template mask is interpolated once per slice: the same chain as warping the
  previous slice's mask at each step, without re-thresholding (and blurring)
  the mask at every step.

Registration runs on grey frames (RGB -> luminance, robust 1-99 percentile
normalisation per frame) resized to a common working size, so an image flow of
mixed shapes works; masks are warped at each frame's own resolution.

The method has no notion of target absence: every frame receives the warped
template mask, including slices past the end of an organ.

Prompts other than masks are first turned into a template mask by a classical
step that is part of this baseline (:mod:`bench.adapters.template_masks`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, ClassVar

import numpy as np
from bench.adapters.base import Adapter, Capabilities, Number, register
from bench.adapters.reference import frame_shape, frame_sizes
from bench.adapters.template_masks import box_to_mask, points_to_mask
from pydantic import Field
from scipy import ndimage as ndi
from skimage.registration import optical_flow_tvl1
from skimage.transform import resize

from bench.frames import PackedMasks
from bench.progress import frames_done
from bench.settings import Settings
from bench.types import PROMPT_KINDS, FlowFrames, Prediction, Prompt


class RegistrationOptions(Settings):
    """``[models.registration]``: TV-L1 parameters and the working size."""

    attachment: Annotated[Number, Field(gt=0)] = 15.0
    tightness: Annotated[Number, Field(gt=0)] = 0.3
    num_warp: Annotated[int, Field(ge=1)] = 5
    size: Annotated[int, Field(ge=8)] = 128



# ----------------------------------------------------------------------------- frames


def to_grey(frame: np.ndarray, index: int = 0) -> np.ndarray:
    """Grey float32 frame normalised to [0, 1] by its 1st and 99th percentiles.

    RGB frames are reduced to luminance (Rec. 709 weights, as
    :func:`skimage.color.rgb2gray`). A constant frame becomes all zeros.
    """
    frame = np.asarray(frame)
    frame_shape(frame, index)
    grey = frame.astype(np.float64)
    if grey.ndim == 3:
        grey = grey @ np.array([0.2125, 0.7154, 0.0721])
    lo, hi = np.percentile(grey, (1.0, 99.0))
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.zeros(grey.shape, dtype=np.float32)
    return np.clip((grey - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def working_shape(shapes: Sequence[tuple[int, int]], size: int) -> tuple[int, int]:
    """The common registration shape of a flow.

    The most common frame shape (ties: the first seen), scaled so that its
    longest side is ``size``; frames are never upsampled.
    """
    height, width = Counter(shapes).most_common(1)[0][0]
    scale = min(1.0, size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (anti-aliased when shrinking) to ``shape``, float32."""
    if image.shape == tuple(shape):
        return image.astype(np.float32, copy=False)
    shrink = image.shape[0] > shape[0] or image.shape[1] > shape[1]
    out = resize(image, shape, order=1, anti_aliasing=shrink, preserve_range=True)
    return out.astype(np.float32)


# ----------------------------------------------------------------------- registration


def identity_map(shape: tuple[int, int]) -> np.ndarray:
    """Coordinate map ``(2, H, W)`` that sends every pixel to itself."""
    rows, cols = np.meshgrid(
        np.arange(shape[0], dtype=np.float32), np.arange(shape[1], dtype=np.float32),
        indexing="ij",
    )
    return np.stack([rows, cols])


def flow_map(
    reference: np.ndarray,
    moving: np.ndarray,
    *,
    attachment: float = 15.0,
    tightness: float = 0.3,
    num_warp: int = 5,
) -> np.ndarray:
    """Register ``moving`` onto ``reference`` by TV-L1 optical flow.

    Returns
    -------
    ndarray, shape (2, H, W)
        For each ``reference`` pixel, its (row, col) position in ``moving``:
        ``moving`` sampled there looks like ``reference``.
    """
    flow = optical_flow_tvl1(
        reference, moving, attachment=attachment, tightness=tightness, num_warp=num_warp
    )
    return identity_map(reference.shape) + flow.astype(np.float32)


def compose_maps(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The map ``outer(inner(x))``: follow ``inner``, then ``outer`` (bilinear)."""
    return np.stack(
        [ndi.map_coordinates(channel, inner, order=1, mode="nearest") for channel in outer]
    ).astype(np.float32)


def warp_mask(mask: np.ndarray, coord_map: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """Warp a template mask into another frame through a working-size coordinate map.

    Parameters
    ----------
    mask : ndarray of bool, shape (Ht, Wt)
        Template mask at the template frame's own resolution.
    coord_map : ndarray, shape (2, h, w)
        For each working-size pixel of the target frame, its position in the
        template frame's working-size grid.
    out_shape : (H, W)
        The target frame's own shape.

    Returns
    -------
    ndarray of bool, shape ``out_shape``
        The bilinearly warped mask thresholded at 0.5. The map is upsampled to
        ``out_shape`` and the mask sampled at full resolution, so thin
        structures are not lost to the working size.
    """
    if not mask.any():
        return np.zeros(out_shape, dtype=bool)
    work_h, work_w = coord_map.shape[1:]
    full = np.stack([resize_image(channel, out_shape) for channel in coord_map])
    # Working-grid pixel centres -> template pixel centres.
    rows = (full[0] + 0.5) * (mask.shape[0] / work_h) - 0.5
    cols = (full[1] + 0.5) * (mask.shape[1] / work_w) - 0.5
    values = ndi.map_coordinates(
        mask.astype(np.float32), [rows, cols], order=1, mode="constant", cval=0.0
    )
    return values >= 0.5


def nearest_templates(n_frames: int, prompted: Sequence[int]) -> list[int]:
    """For each frame, the nearest prompted frame by index (ties: the lower index)."""
    if not prompted:
        raise ValueError("nearest_templates: no prompted frame")
    return [min(prompted, key=lambda t: (abs(k - t), t)) for k in range(n_frames)]


# -------------------------------------------------------------- prompts -> template mask


def template_mask(frame: np.ndarray, prompts: Sequence[Prompt]) -> np.ndarray:
    """The template mask of one target on one frame from all its prompts there.

    Mask prompts give their mask, boxes :func:`box_to_mask`, clicks (pooled
    over the frame's point prompts) :func:`points_to_mask`, ``empty-mask``
    nothing; the results are united.
    """
    shape = frame_shape(frame, prompts[0].frame)
    grey: np.ndarray | None = None
    mask = np.zeros(shape, dtype=bool)
    points: list[tuple[int, int]] = []
    labels: list[int] = []
    for prompt in prompts:
        where = f"prompt for target {prompt.target!r} on frame {prompt.frame}"
        if prompt.kind == "mask":
            if prompt.mask is None:
                raise ValueError(f"{where}: kind 'mask' without a mask")
            given = np.asarray(prompt.mask)
            if given.shape != shape:
                raise ValueError(f"{where}: mask shape {given.shape} != frame shape {shape}")
            mask |= given.astype(bool)
        elif prompt.kind in ("box", "box-jitter"):
            if prompt.box is None:
                raise ValueError(f"{where}: kind {prompt.kind!r} without a box")
            grey = to_grey(frame) if grey is None else grey
            mask |= box_to_mask(grey, prompt.box)
        elif prompt.kind in ("point", "point-random"):
            if not prompt.points:
                raise ValueError(f"{where}: kind {prompt.kind!r} without points")
            labels_here = prompt.labels or (1,) * len(prompt.points)
            if len(labels_here) != len(prompt.points):
                raise ValueError(
                    f"{where}: {len(prompt.points)} points but {len(labels_here)} labels"
                )
            points.extend(prompt.points)
            labels.extend(labels_here)
        elif prompt.kind != "empty-mask":
            raise ValueError(f"{where}: unknown prompt kind {prompt.kind!r}")
    if points:
        grey = to_grey(frame) if grey is None else grey
        mask |= points_to_mask(grey, points, labels)
    return mask


# ---------------------------------------------------------------------------- adapter


@register
@dataclass
class RegistrationAdapter(Adapter):
    """One-shot atlas baseline: TV-L1 registration of the template frame."""

    name = "registration"
    description = (
        "Weight-free classical one-shot baseline (scikit-image TV-L1 optical flow + warp). "
        "The prompted frame's mask is propagated to every other frame by deformable "
        "registration at a working size: image flows register the template frame directly "
        "to each frame; volumes propagate slice to slice outward from the template (composed "
        "fields). With several prompted frames each frame uses the nearest one by index. "
        "Template masks: mask prompt as given; box -> Otsu threshold inside the box, the "
        "class that is not the ring around the box, largest component, holes filled "
        "(inscribed ellipse if that fails); point -> flood fill from the click with a "
        "tolerance of 3 local standard deviations, edge moved to half contrast against "
        "the surroundings, bounded to 40% of the frame (small disc if it leaks); "
        "negative clicks remove what they grow. No notion of "
        "absence: every frame gets the warped mask, also where the target is gone."
    )
    capabilities = Capabilities(
        prompt_kinds=frozenset({*PROMPT_KINDS, "empty-mask"}),
        flow_kinds=frozenset({"volume", "image-flow"}),
        needs_weights=False,
        devices=frozenset({"cpu"}),
    )

    Options: ClassVar[type[Settings]] = RegistrationOptions

    def predict(self, flow: FlowFrames, prompts: Sequence[Prompt]) -> Prediction:
        n_frames = len(flow.frames)
        shapes = frame_sizes(flow.frames)
        grouped: dict[str, dict[int, list[Prompt]]] = {}
        for prompt in prompts:
            if not 0 <= prompt.frame < n_frames:
                raise ValueError(
                    f"flow {flow.id}: prompt for target {prompt.target!r} on frame "
                    f"{prompt.frame}, but the flow has {n_frames} frames"
                )
            grouped.setdefault(prompt.target, {}).setdefault(prompt.frame, []).append(prompt)

        propagator = _Propagator(flow, shapes, self.options)
        templates = {
            target: {t: template_mask(flow.frames[t], frame_prompts)
                     for t, frame_prompts in sorted(by_frame.items())}
            for target, by_frame in grouped.items()
        }
        if flow.kind == "volume":
            masks = {target: propagator.propagate(ts) for target, ts in templates.items()}
        else:
            masks = propagator.propagate_images(templates)
        return Prediction(masks=masks)


class _Propagator:
    """Registers frame pairs of one flow on demand, once each, for all targets."""

    def __init__(self, flow: FlowFrames, shapes: list[tuple[int, int]],
                 options: RegistrationOptions):
        self.flow = flow
        self.shapes = shapes
        self.work_shape = working_shape(shapes, options.size)
        self.params = {"attachment": options.attachment, "tightness": options.tightness,
                       "num_warp": options.num_warp}
        self._work: dict[int, np.ndarray] = {}
        self._maps: dict[tuple[int, int], np.ndarray] = {}

    def work(self, index: int) -> np.ndarray:
        if index not in self._work:
            grey = to_grey(self.flow.frames[index], index)
            self._work[index] = resize_image(grey, self.work_shape)
        return self._work[index]

    def pair_map(self, reference: int, moving: int) -> np.ndarray:
        """Map from frame ``reference``'s working grid into frame ``moving``'s."""
        key = (reference, moving)
        if key not in self._maps:
            self._maps[key] = flow_map(self.work(reference), self.work(moving), **self.params)
        return self._maps[key]

    def propagate(self, templates: dict[int, np.ndarray]) -> list[np.ndarray]:
        """Volumes: one mask per slice, each template's mask carried slice by slice
        (prompted slice -> mask)."""
        n_frames = len(self.shapes)
        nearest = nearest_templates(n_frames, sorted(templates))
        out: list[np.ndarray | None] = [None] * n_frames
        for t, mask in templates.items():
            out[t] = mask
            if not mask.any():
                for k in range(n_frames):
                    if nearest[k] == t and out[k] is None:
                        out[k] = np.zeros(self.shapes[k], dtype=bool)
                continue
            for step in (-1, 1):
                cumulative = identity_map(self.work_shape)
                k = t + step
                while 0 <= k < n_frames and nearest[k] == t:
                    # Slice k -> slice k - step (one nearer the template) -> template.
                    cumulative = compose_maps(cumulative, self.pair_map(k, k - step))
                    out[k] = warp_mask(mask, cumulative, self.shapes[k])
                    frames_done(sum(m is not None for m in out), n_frames)
                    k += step
        return [
            m if m is not None else np.zeros(s, dtype=bool)
            for m, s in zip(out, self.shapes, strict=True)
        ]

    def propagate_images(self, templates: dict[str, dict[int, np.ndarray]]
                         ) -> dict[str, PackedMasks]:
        """Image flows: each image registered to its nearest template, image by image.

        Every target's mask of an image is warped with the same pair map, which is
        then dropped, so memory stays about one image however long the flow.
        """
        n_frames = len(self.shapes)
        nearest = {target: nearest_templates(n_frames, sorted(ts))
                   for target, ts in templates.items()}
        kept = {t for ts in templates.values() for t in ts}
        out = {target: PackedMasks.filled(self.shapes, False) for target in templates}
        for k in range(n_frames):
            for target, ts in templates.items():
                t = nearest[target][k]
                if k == t:
                    out[target][k] = ts[t]
                elif ts[t].any():  # an empty template stays empty everywhere
                    out[target][k] = warp_mask(ts[t], self.pair_map(k, t), self.shapes[k])
            self._maps.clear()  # they all start at image k, which is done
            if k not in kept:
                self._work.pop(k, None)
            frames_done(k + 1, n_frames)
        return out
