"""Speed and agreement of bench.surface_dice.nsd_deepmind against DeepMind's package.

Run on demand::

    pip install -e '.[bench-reference]'   # surface-distance 0.1 from PyPI
    python benchmarks/nsd_speed.py [--quick] [--repeat N] [--seed S] [--tolerance MM]

Cases, all measured in the same run, spacing (0.8, 0.8, 2.5) mm:

(a) a BTCV-sized organ pair: one liver-sized ellipsoid in a 512x512x100
    volume, the prediction shifted, rescaled, with a smoothly perturbed boundary;
(b) a BTCV-like label map: 13 organ-sized ellipsoids in a 512x512x100 volume,
    prediction = a perturbed copy; one NSD per label, as the harness scores them.

For each pair: the time of ``nsd_deepmind`` and of the package's
``compute_surface_dice_at_tolerance(compute_surface_distances(ref, pred, spacing),
tol)`` on the same full-volume boolean arrays (built before timing), both values
and their difference. Without the package only our times are printed. ``--quick``
halves the in-plane and slice resolution (same anatomy).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import warnings
from collections.abc import Callable

import numpy as np
import scipy
from phantoms import ORGANS, ellipsoid, organ_maps
from timing import best_of

from bench.surface_dice import nsd_deepmind

SPACING = (0.8, 0.8, 2.5)
SHAPE = (512, 512, 100)

Pair = tuple[str, np.ndarray, np.ndarray]




def organ_pair(shape, spacing, rng) -> Pair:
    """(a): a liver-sized pair."""
    centre = (shape[0] * 0.45, shape[1] * 0.4, shape[2] * 0.5)
    ref = ellipsoid(shape, spacing, centre, (95.0, 80.0, 75.0))
    moved = (centre[0] + 3.0 / spacing[0], centre[1] - 2.5 / spacing[1], centre[2] + 0.4)
    pred = ellipsoid(shape, spacing, moved, (91.0, 83.0, 72.0), rng, wobble=0.12)
    return "liver-sized pair", pred, ref


def label_pairs(shape, spacing, rng) -> list[Pair]:
    """(b): one binary pair per label of a 13-label map and its perturbed copy."""
    pred_map, ref_map = organ_maps(shape, spacing, rng)
    return [(name, pred_map == label, ref_map == label)
            for label, (name, _, _) in enumerate(ORGANS, start=1)]




def deepmind() -> tuple[Callable | None, str]:
    """The package's surface Dice as a function, or None and why."""
    try:
        import surface_distance as sd
    except ImportError as exc:
        return None, f"surface-distance not installed ({exc}); pip install -e '.[bench-reference]'"

    def run(pred, ref, spacing, tol):
        with warnings.catch_warnings():  # its scipy.ndimage.filters/morphology imports
            warnings.simplefilter("ignore", DeprecationWarning)
            return float(sd.compute_surface_dice_at_tolerance(
                sd.compute_surface_distances(ref, pred, spacing), tol))

    return run, f"surface-distance {importlib.metadata.version('surface-distance')}"


def measure(pairs: list[Pair], spacing, tol, repeat, reference) -> list[dict]:
    rows = []
    for name, pred, ref in pairs:
        row = {"case": name, "voxels": int(ref.sum())}
        row["ours_wall"], row["ours_cpu"], row["ours"] = best_of(
            lambda p=pred, r=ref: nsd_deepmind(p, r, spacing, tol), repeat)
        if reference is not None:
            row["dm_wall"], row["dm_cpu"], row["dm"] = best_of(
                lambda p=pred, r=ref: reference(p, r, spacing, tol), repeat)
        rows.append(row)
    return rows


def ratio(slow_wall: float, fast_wall: float, slow_cpu: float, fast_cpu: float) -> str:
    """``"9.0x / 9.8x"``: how many times faster ours is, wall clock and CPU time."""
    return f"{slow_wall / fast_wall:.1f}x / {slow_cpu / fast_cpu:.1f}x"


def show(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    with_dm = "dm" in rows[0]
    head = f"{'case':<22}{'ref voxels':>12}{'ours s wall/cpu':>18}"
    if with_dm:
        head += f"{'DeepMind s wall/cpu':>22}{'faster wall/cpu':>17}{'NSD ours':>12}" \
                f"{'NSD DeepMind':>14}{'|diff|':>10}"
    print(head)
    for r in rows:
        line = f"{r['case']:<22}{r['voxels']:>12,}{r['ours_wall']:>9.3f}/{r['ours_cpu']:<8.3f}"
        if with_dm:
            line += (f"{r['dm_wall']:>12.3f}/{r['dm_cpu']:<9.3f}"
                     f"{ratio(r['dm_wall'], r['ours_wall'], r['dm_cpu'], r['ours_cpu']):>17}"
                     f"{r['ours']:>12.6f}{r['dm']:>14.6f}{abs(r['ours'] - r['dm']):>10.1e}")
        else:
            line += f"  NSD {r['ours']:.6f}"
        print(line)
    if with_dm and len(rows) > 1:
        ours, dm = sum(r["ours_wall"] for r in rows), sum(r["dm_wall"] for r in rows)
        ours_c, dm_c = sum(r["ours_cpu"] for r in rows), sum(r["dm_cpu"] for r in rows)
        print(f"{'all labels':<34}{ours:>9.3f}/{ours_c:<8.3f}{dm:>12.3f}/{dm_c:<9.3f}"
              f"{ratio(dm, ours, dm_c, ours_c):>17}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="half resolution")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats (best of)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=2.0, help="NSD tolerance in mm")
    args = parser.parse_args(argv)
    factor = 2 if args.quick else 1
    spacing = tuple(s * factor for s in SPACING)
    shape = tuple(n // factor for n in SHAPE)
    rng = np.random.default_rng(args.seed)
    reference, note = deepmind()
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy "
          f"{scipy.__version__}, {os.cpu_count()} CPUs; reference: {note}")
    print(f"volume {shape}, spacing {spacing} mm, tolerance {args.tolerance} mm, "
          f"best of {args.repeat} runs each, masks built before timing")
    rows_a = measure([organ_pair(shape, spacing, rng)], spacing, args.tolerance, args.repeat,
                     reference)
    show("(a) organ pair", rows_a)
    rows_b = measure(label_pairs(shape, spacing, rng), spacing, args.tolerance, args.repeat,
                     reference)
    show("(b) 13-label volume, one NSD per label", rows_b)
    if reference is None:
        return 0
    rows = rows_a + rows_b
    worst = max(abs(r["ours"] - r["dm"]) for r in rows)
    slower = [r["case"] for r in rows if r["ours_cpu"] > r["dm_cpu"]]
    print(f"\nlargest |ours - DeepMind| = {worst:.1e} over {len(rows)} pairs; "
          f"ours slower (CPU) on: {', '.join(slower) or 'none'}")
    return 0 if worst <= 1e-6 else 1


if __name__ == "__main__":
    raise SystemExit(main())
