"""Read throughput and memory of the volume reader on BTCV-sized volumes.

Writes a few synthetic CT volumes of BTCV size (512 x 512 x 150, int16, gzip
NIfTI, with a uint8 label map) in the BTCV layout under a temporary folder,
then times

- a plain nibabel load of image and label (``np.asarray(img.dataobj)``), and
- the ``btcv`` card's reader (decoding 12 targets incl. the adrenal merge,
  reordering to (slice, row, col), the CT window),

and reports the ratio, plus the peak traced memory (tracemalloc, in a second
pass: tracing slows allocation) while the reader streams all cases, next to
the size of one decoded case, to show that memory stays about one case.

Usage::

    python benchmarks/read_throughput.py [--cases 3] [--slices 150] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np

from bench.readers import load_card, read_flows

REPO = Path(__file__).resolve().parents[1]


def synthetic_case(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like int16 volume (air, body, organs, noise) and its BTCV label map."""
    rng = np.random.default_rng(seed)
    x, y = np.ogrid[: shape[0], : shape[1]]
    cx, cy = shape[0] / 2, shape[1] / 2
    body = ((x - cx) / (0.42 * shape[0])) ** 2 + ((y - cy) / (0.32 * shape[1])) ** 2 <= 1
    image = np.full(shape, -1000, np.int16)
    labels = np.zeros(shape, np.uint8)
    organs = [(6, 0.35, 0.45, 0.12, 60), (1, 0.65, 0.45, 0.07, 50), (2, 0.5, 0.62, 0.05, 30),
              (3, 0.5, 0.32, 0.05, 30), (12, 0.42, 0.6, 0.015, 20), (13, 0.42, 0.35, 0.015, 20)]
    for k in range(shape[2]):
        slab = np.where(body, 40, -1000).astype(np.int16)
        for value, ox, oy, radius, hu in organs:
            disc = (x - ox * shape[0]) ** 2 + (y - oy * shape[1]) ** 2 <= (
                radius * shape[0] * (0.6 + 0.4 * np.sin(np.pi * k / shape[2]))) ** 2
            slab[disc] = hu
            labels[..., k][disc] = value
        image[..., k] = slab
    image += rng.normal(0, 12, shape).astype(np.int16)
    return image, labels


def write_tree(root: Path, n: int, shape: tuple[int, int, int]) -> list[tuple[Path, Path]]:
    pairs = []
    affine = np.diag([0.76, 0.76, 3.0, 1.0])
    for i in range(1, n + 1):
        image, labels = synthetic_case(shape, i)
        img = root / f"RawData/Training/img/img{i:04d}.nii.gz"
        lab = root / f"RawData/Training/label/label{i:04d}.nii.gz"
        img.parent.mkdir(parents=True, exist_ok=True)
        lab.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(image, affine), str(img))
        nib.save(nib.Nifti1Image(labels, affine), str(lab))
        pairs.append((img, lab))
    return pairs


def plain_nibabel(pairs: list[tuple[Path, Path]]) -> float:
    start = time.perf_counter()
    for img, lab in pairs:
        image = np.asarray(nib.load(str(img)).dataobj)
        labels = np.asarray(nib.load(str(lab)).dataobj)
        assert image.shape == labels.shape
        del image, labels
    return time.perf_counter() - start


def through_reader(root: Path, trace: bool) -> tuple[float, int, int]:
    """Seconds, peak traced bytes while streaming (0 untraced), bytes of one decoded case."""
    card = load_card(REPO / "datasets" / "btcv.toml")
    one_case = 0
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    for flow in read_flows(card, root):
        one_case = flow.frames.nbytes + sum(m.nbytes for m in flow.masks.values())
        if flow.source_frames is not None:  # the HU before the card's window (int16)
            one_case += flow.source_frames.nbytes
        del flow
    seconds = time.perf_counter() - start
    peak = 0
    if trace:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return seconds, peak, one_case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--slices", type=int, default=150)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--out", type=Path, default=None, help="folder (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="medsam2-bench-throughput-"))
    shape = (args.size, args.size, args.slices)
    try:
        print(f"writing {args.cases} synthetic BTCV-sized cases {shape} to {root} ...")
        pairs = write_tree(root, args.cases, shape)
        size = sum(p.stat().st_size for pair in pairs for p in pair) / args.cases / 2**20
        print(f"  {size:.1f} MiB of gzip NIfTI per case (image + label)")
        plain_nibabel(pairs[:1])  # warm the page cache for both timings
        plain = plain_nibabel(pairs)
        reader, _, one_case = through_reader(root, trace=False)
        _, peak, _ = through_reader(root, trace=True)  # tracing slows it: time untraced
        print(f"plain nibabel load : {plain / args.cases:6.2f} s/case")
        print(f"bench reader       : {reader / args.cases:6.2f} s/case "
              f"(12 targets, window, reorder)")
        print(f"ratio reader/plain : {reader / plain:6.2f}")
        print(f"one decoded case   : {one_case / 2**20:7.1f} MiB (float32 frames + bool masks + "
              f"int16 HU)")
        print(f"peak while streaming {args.cases} cases: {peak / 2**20:7.1f} MiB "
              f"({peak / one_case:.2f} x one case)")
    finally:
        if not args.keep and args.out is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
