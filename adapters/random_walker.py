"""Weight-free baseline: the random walker, seeded from the prompts and through the flow.

Each frame is segmented by scikit-image's random walker
(:func:`skimage.segmentation.random_walker`, Grady 2006) from foreground and
background seeds. The seeds of a prompted frame come from its prompts:

- point: a disc (radius ``point_radius`` of the short side) around each
  positive click is foreground, around each negative click background; with
  no negative click the image border is the background;
- box: everything outside the box is background; an ellipse around the box
  centre (``box_core`` of the box's half-sizes) is foreground;
- mask: the mask eroded by ``margin`` is foreground, everything farther than
  ``margin`` from it is background;
- empty-mask: the target is absent from the frame (empty prediction).

An unprompted frame takes its seeds from a neighbour's result, eroded and
dilated by ``margin`` in the same way:

- volume: slice by slice outward from the nearest prompted slice (ties: the
  lower index), each slice seeded by the slice before it, so the target can
  move by at most ``margin`` per slice; once a slice comes out empty, the
  slices beyond it stay empty.
- image flow: images have no spatial correspondence, so each unprompted
  image is seeded by the nearest prompted image's result (by index), scaled
  to its size. This assumes the target sits at a similar place in every
  image of the flow (centred crops, as in fundus, dermoscopy or cell
  datasets); it is a weak baseline by design.

Frames are processed at a working size (longest side ``size``, never
upsampled): RGB frames keep their three channels, every frame is scaled to
[0, 1] by its 1st and 99th percentiles, and the foreground probability is
resized back to the frame and thresholded at 0.5. Distances (``margin``,
radii) are fractions of the working short side. The linear systems are
solved directly (``mode="bf"``): exact, deterministic, and on these band-shaped
unknown regions much faster than the iterative solvers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import numpy as np
from bench.adapters.base import Adapter, Capabilities, Number, register
from bench.adapters.reference import frame_sizes
from bench.adapters.registration import nearest_templates
from pydantic import Field
from scipy import ndimage as ndi
from skimage.segmentation import random_walker
from skimage.transform import resize

from bench.frames import PackedMasks
from bench.progress import frames_done
from bench.settings import Settings
from bench.types import PROMPT_KINDS, FlowFrames, Prediction, Prompt

Fraction = Annotated[Number, Field(ge=0, le=1)]


class RandomWalkerOptions(Settings):
    """``[models.random-walker]``: the walker's beta, the working size and seed geometry."""

    beta: Annotated[Number, Field(gt=0)] = 130.0
    size: Annotated[int, Field(ge=8)] = 256
    margin: Fraction = 0.03
    point_radius: Fraction = 0.02
    box_core: Fraction = 0.5

FOREGROUND, BACKGROUND = 1, 2


# ----------------------------------------------------------------------------- frames


def working_size(shape: tuple[int, int], size: int) -> tuple[int, int]:
    """``shape`` scaled so that its longest side is at most ``size`` (never upsampled)."""
    scale = min(1.0, size / max(shape))
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def prepare_frame(frame: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Frame as float64 in [0, 1] (1st-99th percentile over all channels) at ``shape``.

    Grey frames come back ``(h, w)``, RGB frames ``(h, w, 3)``.
    """
    data = np.asarray(frame, dtype=np.float64)
    lo, hi = np.percentile(data, (1.0, 99.0))
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        data = np.zeros(data.shape)
    else:
        data = np.clip((data - lo) / (hi - lo), 0.0, 1.0)
    if data.shape[:2] != tuple(shape):
        shrink = data.shape[0] > shape[0] or data.shape[1] > shape[1]
        data = resize(data, (*shape, *data.shape[2:]), order=1, anti_aliasing=shrink)
    return data


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask resized to ``shape`` (area fraction >= 0.5)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape == tuple(shape):
        return mask.copy()
    shrink = mask.shape[0] > shape[0] or mask.shape[1] > shape[1]
    return resize(mask.astype(np.float32), shape, order=1, anti_aliasing=shrink) >= 0.5


# ------------------------------------------------------------------------------ seeds


def disc(shape: tuple[int, int], row: float, col: float, radius: float) -> np.ndarray:
    """Pixels within ``radius`` of ``(row, col)``; always at least the nearest pixel."""
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    out = (rows - row) ** 2 + (cols - col) ** 2 <= radius**2
    r = int(np.clip(round(row), 0, shape[0] - 1))
    c = int(np.clip(round(col), 0, shape[1] - 1))
    out[r, c] = True
    return out


def border(shape: tuple[int, int]) -> np.ndarray:
    """The one-pixel ring along the image border."""
    ring = np.ones(shape, dtype=bool)
    ring[1:-1, 1:-1] = False
    return ring


def box_region(shape: tuple[int, int], box: Sequence[int],
               scale: tuple[float, float]) -> np.ndarray:
    """The working-size pixels covered by an inclusive frame-pixel box.

    Frame pixel ``x`` spans working coordinates ``[x sx - 0.5, (x + 1) sx - 0.5]``
    (pixel centres at integers); a box always covers at least one pixel.
    """
    sy, sx = scale
    x0, y0, x1, y1 = box
    r0, c0 = int(np.floor(y0 * sy)), int(np.floor(x0 * sx))
    r1 = max(r0, int(np.ceil((y1 + 1) * sy - 1)))
    c1 = max(c0, int(np.ceil((x1 + 1) * sx - 1)))
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows >= r0) & (rows <= r1) & (cols >= c0) & (cols <= c1)


def box_core(shape: tuple[int, int], box: Sequence[int], scale: tuple[float, float],
             fraction: float) -> np.ndarray:
    """The ellipse at the box centre with half-axes ``fraction`` of the box's half-sizes.

    Always holds at least the pixel nearest the centre.
    """
    sy, sx = scale
    x0, y0, x1, y1 = box
    cy, cx = (y0 + y1 + 1) * sy / 2 - 0.5, (x0 + x1 + 1) * sx / 2 - 0.5
    hy = fraction * (y1 - y0 + 1) * sy / 2
    hx = fraction * (x1 - x0 + 1) * sx / 2
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        ellipse = ((rows - cy) / hy) ** 2 + ((cols - cx) / hx) ** 2 <= 1.0
    return ellipse | disc(shape, cy, cx, 0.0)


def seeds_from_mask(mask: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and background seeds around a mask.

    Foreground: the pixels deeper than ``a = margin`` inside the mask (for a
    mask thinner than that, its deepest pixels, so a thin structure keeps
    seeds). Background: the pixels farther than ``b`` outside it, with
    ``b = a r / (r - a)`` for the mask's equivalent radius
    ``r = sqrt(area / pi)`` (at least 1 pixel). Why not ``b = a``: on a
    featureless image the walker's potential in the ring between radii
    ``r - a`` and ``r + b`` crosses 1/2 at ``sqrt((r - a)(r + b))``, which is
    ``r`` only for this ``b``; with ``b = a`` every propagation step would
    shrink a compact target. An empty mask gives no foreground seeds.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros(mask.shape, dtype=bool), np.ones(mask.shape, dtype=bool)
    inside = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    depth = max(0.0, min(margin, float(inside.max()) - 1.0))
    foreground = inside > depth
    background = ~mask
    if background.any():
        radius = float(np.sqrt(mask.sum() / np.pi))
        outer = depth * radius / (radius - depth) if radius > depth + 0.5 else margin
        background = ndi.distance_transform_edt(~mask) > max(1.0, outer)
    return foreground, background


def seeds_from_prompts(shape: tuple[int, int], prompts: Sequence[Prompt],
                       scale: tuple[float, float], options: RandomWalkerOptions
                       ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Seeds of one target on one frame from its prompts there, at working size.

    Parameters
    ----------
    shape : (h, w)
        Working shape.
    prompts : sequence of Prompt
        The target's prompts on this frame.
    scale : (sy, sx)
        Working size over frame size, per axis.
    options : RandomWalkerOptions
        The adapter's settings (``margin``, ``point_radius``, ``box_core``).

    Returns
    -------
    foreground, background : ndarray of bool
    absent : bool
        True when an ``empty-mask`` prompt declares the target absent.
    """
    short = min(shape)
    margin = options.margin * short
    radius = max(1.0, options.point_radius * short)
    foreground = np.zeros(shape, dtype=bool)
    background = np.zeros(shape, dtype=bool)
    clicked_negative = False
    clicked_positive = False
    absent = False
    sy, sx = scale
    for prompt in prompts:
        where = f"prompt for target {prompt.target!r} on frame {prompt.frame}"
        if prompt.kind == "empty-mask":
            absent = True
        elif prompt.kind == "mask":
            if prompt.mask is None:
                raise ValueError(f"{where}: kind 'mask' without a mask")
            fg, bg = seeds_from_mask(resize_mask(prompt.mask, shape), margin)
            foreground |= fg
            background |= bg
        elif prompt.kind in ("box", "box-jitter"):
            if prompt.box is None:
                raise ValueError(f"{where}: kind {prompt.kind!r} without a box")
            x0, y0, x1, y1 = prompt.box
            if x1 < x0 or y1 < y0:
                raise ValueError(f"{where}: box {prompt.box}: expected x0 <= x1 and y0 <= y1")
            background |= ~box_region(shape, prompt.box, scale)
            foreground |= box_core(shape, prompt.box, scale, options.box_core)
        elif prompt.kind in ("point", "point-random"):
            if not prompt.points:
                raise ValueError(f"{where}: kind {prompt.kind!r} without points")
            labels = prompt.labels or (1,) * len(prompt.points)
            if len(labels) != len(prompt.points):
                raise ValueError(f"{where}: {len(prompt.points)} points but {len(labels)} labels")
            for (x, y), label in zip(prompt.points, labels, strict=True):
                if label not in (0, 1):
                    raise ValueError(f"{where}: point label must be 0 or 1, got {label!r}")
                spot = disc(shape, (y + 0.5) * sy - 0.5, (x + 0.5) * sx - 0.5, radius)
                if label == 1:
                    foreground |= spot
                    clicked_positive = True
                else:
                    background |= spot
                    clicked_negative = True
        else:
            raise ValueError(f"{where}: unknown prompt kind {prompt.kind!r}")
    if clicked_positive and not clicked_negative and not background.any():
        background = border(shape) & ~foreground
    return foreground, background, absent


# ------------------------------------------------------------------------ segmentation


def walk(data: np.ndarray, foreground: np.ndarray, background: np.ndarray,
         beta: float) -> np.ndarray:
    """Foreground probability of every pixel by the random walker.

    Pixels seeded both ways are left unseeded. Without foreground seeds the
    probability is 0 everywhere, without background seeds 1; on a constant
    image each pixel goes to its nearest seed (the walker's limit there).
    """
    both = foreground & background
    foreground, background = foreground & ~both, background & ~both
    if not foreground.any():
        return np.zeros(foreground.shape)
    if not background.any():
        return np.ones(foreground.shape)
    labels = np.zeros(foreground.shape, dtype=np.int32)
    labels[foreground] = FOREGROUND
    labels[background] = BACKGROUND
    if not (labels == 0).any():
        return foreground.astype(np.float64)
    if float(np.std(data)) == 0.0:
        to_fg = ndi.distance_transform_edt(~foreground)
        to_bg = ndi.distance_transform_edt(~background)
        return (to_fg < to_bg).astype(np.float64) + 0.5 * (to_fg == to_bg)
    channel_axis = -1 if data.ndim == 3 else None
    prob = random_walker(data, labels, beta=beta, mode="bf", return_full_prob=True,
                         channel_axis=channel_axis)
    return np.asarray(prob[0], dtype=np.float64)


def to_frame(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Working-size probability -> boolean mask at the frame's ``shape``."""
    if prob.shape != tuple(shape):
        prob = resize(prob, shape, order=1, anti_aliasing=False)
    return prob >= 0.5


# ---------------------------------------------------------------------------- adapter


@register
@dataclass
class RandomWalkerAdapter(Adapter):
    """Random walker seeded from the prompts and propagated through the flow."""

    name = "random-walker"
    description = (
        "Weight-free classical baseline (scikit-image random walker). Prompted frames are "
        "seeded from their prompts (point: discs around the clicks, image border as background; "
        "box: outside = background, an ellipse at the box centre = foreground; mask: eroded "
        "mask = foreground, outside the dilated mask = background). Unprompted frames are "
        "seeded by a neighbour's result, eroded and dilated: volumes slice by slice outward "
        "from the nearest prompted slice; image flows from the nearest prompted image's "
        "result scaled to the image (assumes the target sits at a similar place in every "
        "image). Runs at a working size; deterministic."
    )
    capabilities = Capabilities(prompt_kinds=frozenset({*PROMPT_KINDS, "empty-mask"}))

    Options: ClassVar[type[Settings]] = RandomWalkerOptions

    def predict(self, flow: FlowFrames, prompts: Sequence[Prompt]) -> Prediction:
        n_frames = len(flow.frames)
        shapes = frame_sizes(flow.frames)
        work = [working_size(shape, self.options.size) for shape in shapes]
        grouped: dict[str, dict[int, list[Prompt]]] = {}
        for prompt in prompts:
            if not 0 <= prompt.frame < n_frames:
                raise ValueError(f"flow {flow.id}: prompt for target {prompt.target!r} on frame "
                                 f"{prompt.frame}, but the flow has {n_frames} frames")
            grouped.setdefault(prompt.target, {}).setdefault(prompt.frame, []).append(prompt)

        data: dict[int, np.ndarray] = {}
        prompted = {prompt.frame for prompt in prompts}

        def frame_data(k: int) -> np.ndarray:
            if k in data:
                return data[k]
            prepared = prepare_frame(flow.frames[k], work[k])
            # An image of an image flow is used once per target: only the prompted
            # ones are kept, so memory does not grow with the flow.
            if flow.kind == "volume" or k in prompted:
                data[k] = prepared
            return prepared

        beta = float(self.options.beta)
        masks: dict[str, PackedMasks] = {}
        for target, by_frame in grouped.items():
            results: dict[int, np.ndarray] = {}  # working-size masks
            for t, frame_prompts in sorted(by_frame.items()):
                scale = (work[t][0] / shapes[t][0], work[t][1] / shapes[t][1])
                fg, bg, absent = seeds_from_prompts(work[t], frame_prompts, scale,
                                                    self.options)
                if absent and not fg.any():
                    results[t] = np.zeros(work[t], dtype=bool)
                else:
                    results[t] = walk(frame_data(t), fg, bg, beta) >= 0.5
            probs = self._propagate(flow.kind, results, work, frame_data, beta)
            masks[target] = PackedMasks(to_frame(p, s) for p, s in zip(probs, shapes,
                                                                         strict=True))
        return Prediction(masks=masks)

    def _propagate(self, kind: str, results: dict[int, np.ndarray],
                   work: list[tuple[int, int]], frame_data: Any, beta: float
                   ) -> Iterator[np.ndarray]:
        """Working-size foreground probabilities of every frame from the prompted results,
        frame by frame (an image flow's are computed as they are consumed)."""
        n_frames = len(work)
        nearest = nearest_templates(n_frames, sorted(results))
        margin_fraction = self.options.margin

        def step(k: int, source: np.ndarray) -> np.ndarray:
            seed_mask = resize_mask(source, work[k])
            if not seed_mask.any():
                return np.zeros(work[k])
            fg, bg = seeds_from_mask(seed_mask, margin_fraction * min(work[k]))
            return walk(frame_data(k), fg, bg, beta)

        if kind != "volume":
            for k in range(n_frames):
                t = nearest[k]
                yield results[t].astype(np.float64) if k == t else step(k, results[t])
                frames_done(k + 1, n_frames)
            return
        out: list[np.ndarray | None] = [None] * n_frames
        for t, result in results.items():
            out[t] = result.astype(np.float64)
        for t in sorted(results):
            for direction in (-1, 1):
                previous = results[t]
                k = t + direction
                while 0 <= k < n_frames and nearest[k] == t:
                    prob = step(k, previous)
                    out[k] = prob
                    frames_done(sum(p is not None for p in out), n_frames)
                    previous = prob >= 0.5
                    k += direction
        yield from (p if p is not None else np.zeros(w) for p, w in zip(out, work, strict=True))
