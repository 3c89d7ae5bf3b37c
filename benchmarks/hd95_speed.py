"""Speed and agreement of bench.metrics.hd95 against medpy (and MONAI if installed).

Run on demand::

    python benchmarks/hd95_speed.py [--quick] [--repeat N] [--seed S]

Cases, all measured in the same run:

(a) one organ-sized ellipsoid pair in a 512x512x120 volume, spacing
    (0.8, 0.8, 2.5) mm; the prediction is shifted, rescaled and has a
    smoothly perturbed boundary;
(b) a BTCV-like label map: 13 organ-sized blobs of varied size in a
    512x512x100 volume, prediction = a perturbed copy; HD95 per label.

For each case: the time of this project's ``hd95``, medpy's ``hd95`` on the
full volume, and MONAI's ``compute_hausdorff_distance(percentile=95)`` when
monai and torch import (``pip install monai``; a benchmark-only package, not a
dependency of the project), with the ratio to each, per organ and in total.
MONAI takes the max of the two directed percentiles, so its value is
compared with ``bench.metrics.hd95_max``, not with medpy's pooled ``hd95``.
Binary masks are built before timing; each method is timed on the same
arrays, ours and MONAI best of ``--repeat`` runs (MONAI after one warm-up
call), medpy once. ``--quick`` halves the in-plane and slice resolution (same
anatomy). The exit status is 0 when every value equals medpy's bit for bit.

Targets checked and printed (issue 21): ours at least as fast as MONAI on
every organ of (b), and the 13-label total at least 5x MONAI's.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy
from medpy.metric import binary as medpy_binary
from phantoms import ORGANS, ellipsoid, organ_maps
from rich.console import Console
from rich.table import Table
from timing import best_of

from bench import metrics

SPACING = (0.8, 0.8, 2.5)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"





@dataclass(frozen=True)
class Timing:
    """Best wall-clock and best CPU (process) seconds over the repeats."""

    wall: float
    cpu: float

    def __str__(self) -> str:
        return f"{self.wall:.3f} / {self.cpu:.3f}"


@dataclass
class Row:
    case: str
    n_vox: int
    ours_t: Timing
    ours: float
    medpy_t: Timing
    medpy: float
    ours_max: float
    monai_t: Timing | None = None
    monai: float | None = None

    def vs_monai(self, clock: str) -> float:
        """MONAI's time over ours on ``clock`` ("wall" or "cpu"): > 1 means ours is faster."""
        assert self.monai_t is not None
        return getattr(self.monai_t, clock) / getattr(self.ours_t, clock)


def timed(fn: Callable[[], float], repeat: int) -> tuple[Timing, float]:
    """Best wall and CPU time of ``repeat`` calls (:func:`timing.best_of`), and the value."""
    wall, cpu, value = best_of(fn, repeat)
    return Timing(wall, cpu), value


def monai_hd95() -> tuple[Callable[[np.ndarray, np.ndarray, tuple[float, ...]], float] | None, str]:
    """MONAI's HD95 as a function of numpy masks, or None and the reason."""
    try:
        import monai
        import torch
        from monai.metrics import compute_hausdorff_distance
    except Exception as exc:  # noqa: BLE001 - any import failure means "skip"
        return None, f"monai/torch not importable ({type(exc).__name__}: {exc})"

    def run(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> float:
        p = torch.from_numpy(pred)[None, None]
        r = torch.from_numpy(ref)[None, None]
        with warnings.catch_warnings():
            # MONAI 1.6 warns about its own internal use of a deprecated argument.
            warnings.simplefilter("ignore", FutureWarning)
            out = compute_hausdorff_distance(
                p, r, include_background=True, percentile=95, spacing=spacing
            )
        return float(out.reshape(-1)[0])

    # Warm-up: the first call pays one-off costs (lazy imports, dispatch caches).
    tiny = np.zeros((8, 8, 8), bool)
    tiny[2:5, 2:5, 2:5] = True
    run(tiny, np.roll(tiny, 1, axis=0), (1.0, 1.0, 1.0))
    note = (
        f"ok (monai {monai.__version__}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads)"
    )
    return run, note


def measure(
    name: str,
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: tuple[float, ...],
    repeat: int,
    monai_fn: Callable | None,
) -> Row:
    ours_t, ours = timed(lambda: metrics.hd95(pred, ref, spacing), repeat)
    # medpy on the full volume is the slow reference: one run is enough.
    medpy_t, medpy = timed(lambda: medpy_binary.hd95(pred, ref, voxelspacing=spacing), 1)
    row = Row(
        name,
        int(ref.sum()),
        ours_t,
        ours,
        medpy_t,
        medpy,
        metrics.hd95_max(pred, ref, spacing),
    )
    if monai_fn is not None:
        row.monai_t, row.monai = timed(lambda: monai_fn(pred, ref, spacing), repeat)
    return row


def case_a(shape: tuple[int, ...], spacing: tuple[float, ...], rng: np.random.Generator):
    centre = (shape[0] * 0.48, shape[1] * 0.45, shape[2] * 0.5)
    ref = ellipsoid(shape, spacing, centre, (70.0, 55.0, 60.0))
    shifted = (centre[0] + 3.0 / spacing[0], centre[1] - 2.5 / spacing[1], centre[2] + 0.4)
    pred = ellipsoid(shape, spacing, shifted, (66.0, 58.0, 57.0), rng, wobble=0.12)
    return pred, ref


def case_b(shape: tuple[int, ...], spacing: tuple[float, ...], rng: np.random.Generator):
    pred_map, ref_map = organ_maps(shape, spacing, rng)
    pairs = []
    for label, (name, _, _) in enumerate(ORGANS, start=1):
        ref, pred = ref_map == label, pred_map == label
        if ref.any() and pred.any():
            pairs.append((name, pred, ref))
    return pairs


def speedup(slow: float, fast: float) -> str:
    return f"{slow / fast:.1f}x" if fast > 0 else "inf"


def table(title: str, rows: list[Row], with_monai: bool) -> Table:
    t = Table(title=title)
    for col in (
        "case",
        "ref voxels",
        "ours s (wall / cpu)",
        "medpy s (wall / cpu)",
        "x faster than medpy (full volume), wall / cpu",
    ):
        t.add_column(col, justify="right")
    t.add_column("HD95 ours", justify="right")
    t.add_column("HD95 medpy", justify="right")
    t.add_column("identical", justify="center")
    t.add_column("hd95_max ours", justify="right")
    if with_monai:
        t.add_column("MONAI s (wall / cpu)", justify="right")
        t.add_column("x faster than MONAI, wall / cpu", justify="right")
        t.add_column("HD95 MONAI (max-directed)", justify="right")
        t.add_column("|MONAI - hd95_max|", justify="right")
    for r in rows:
        cells = [
            r.case,
            f"{r.n_vox:,}",
            str(r.ours_t),
            str(r.medpy_t),
            f"{speedup(r.medpy_t.wall, r.ours_t.wall)} / {speedup(r.medpy_t.cpu, r.ours_t.cpu)}",
            f"{r.ours:.6f}",
            f"{r.medpy:.6f}",
            "yes" if r.ours == r.medpy else f"NO (|d|={abs(r.ours - r.medpy):.1e})",
            f"{r.ours_max:.6f}",
        ]
        if with_monai:
            cells += [
                str(r.monai_t),
                f"{r.vs_monai('wall'):.2f}x / {r.vs_monai('cpu'):.2f}x",
                f"{r.monai:.6f}",
                f"{abs(r.monai - r.ours_max):.1e}",
            ]
        t.add_row(*cells)
    return t


SHARED_METRICS = ("hd95", "hd95_max", "assd", "nsd")


def score_all(pairs: list, spacing: tuple[float, ...], repeat: int) -> Timing:
    """Total best time of ``score_case`` with every surface metric, over the labels."""
    wall = cpu = 0.0
    for _, pred, ref in pairs:
        t, _ = timed(
            lambda p=pred, r=ref: metrics.score_case(p, r, spacing, metrics=SHARED_METRICS),
            repeat,
        )
        wall, cpu = wall + t.wall, cpu + t.cpu
    return Timing(wall, cpu)


def print_targets(console: Console, rows: list[Row]) -> None:
    """Issue 21's targets on (b), on wall and CPU time: every organ >= 1x MONAI, total >= 5x."""
    for clock in ("wall", "cpu"):
        slowest = min(rows, key=lambda r: r.vs_monai(clock))
        ours = sum(getattr(r.ours_t, clock) for r in rows)
        total = sum(getattr(r.monai_t, clock) for r in rows) / ours
        every = slowest.vs_monai(clock) >= 1.0
        console.print(
            f"(b) targets, {clock} time: every organ at least MONAI's speed: "
            f"{'met' if every else 'NOT met'} (lowest {slowest.vs_monai(clock):.2f}x, "
            f"{slowest.case}); 13-label total >= 5x MONAI: "
            f"{'met' if total >= 5.0 else 'NOT met'} ({total:.1f}x)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="half resolution, fewer repeats")
    parser.add_argument("--repeat", type=int, default=None, help="timing repeats for ours")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cases", choices=("ab", "b"), default="ab", help="b: only the BTCV-like label map"
    )
    args = parser.parse_args(argv)
    console = Console(width=210)
    rng = np.random.default_rng(args.seed)
    factor = 2 if args.quick else 1
    spacing = tuple(s * factor for s in SPACING)
    repeat = args.repeat or (2 if args.quick else 3)
    monai_fn, monai_note = monai_hd95()
    console.print(
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, medpy {_version('medpy')}, {os.cpu_count()} CPUs"
    )
    if monai_fn is None:
        console.print(f"[yellow]MONAI skipped: {monai_note}[/yellow]")
    else:
        console.print(f"MONAI: {monai_note}")
    with_monai = monai_fn is not None

    shape_a = (512 // factor, 512 // factor, 120 // factor)
    # Case (a) is drawn even when skipped, so that (b) gets the same random masks.
    pred, ref = case_a(shape_a, spacing, rng)
    rows_a = []
    if args.cases == "ab":
        rows_a = [measure("ellipsoid pair", pred, ref, spacing, repeat, monai_fn)]
        console.print(table(f"(a) {shape_a}, spacing {spacing} mm", rows_a, with_monai))
    del pred, ref

    shape_b = (512 // factor, 512 // factor, 100 // factor)
    pairs = case_b(shape_b, spacing, rng)
    rows_b = [measure(name, p, r, spacing, repeat, monai_fn) for name, p, r in pairs]
    console.print(table(f"(b) BTCV-like, {len(rows_b)} labels, {shape_b}", rows_b, with_monai))
    for clock in ("wall", "cpu"):
        ours_total = sum(getattr(r.ours_t, clock) for r in rows_b)
        medpy_total = sum(getattr(r.medpy_t, clock) for r in rows_b)
        summary = (
            f"(b) all labels, {clock} time: ours {ours_total:.2f} s, medpy {medpy_total:.2f} s, "
            f"{speedup(medpy_total, ours_total)} faster than medpy (full volume)"
        )
        if with_monai:
            monai_total = sum(getattr(r.monai_t, clock) for r in rows_b)
            summary += (
                f", MONAI {monai_total:.2f} s: {speedup(monai_total, ours_total)} faster than "
                f"MONAI"
            )
        console.print(summary)
    if with_monai:
        print_targets(console, rows_b)
    shared = score_all(pairs, spacing, repeat)
    console.print(
        f"(b) score_case with {', '.join(SHARED_METRICS)} (one surface-distance state per "
        f"label): {shared.wall:.2f} s wall, {shared.cpu:.2f} s cpu in total"
    )
    all_rows = rows_a + rows_b
    n_same = sum(r.ours == r.medpy for r in all_rows)
    console.print(f"values identical to medpy (exact float equality): {n_same}/{len(all_rows)}")
    console.print(
        f"ours and MONAI: best of {repeat} runs; medpy: one run (masks built before timing)."
    )
    return 0 if n_same == len(all_rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
