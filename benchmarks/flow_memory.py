"""Peak memory of a weight-free baseline run against the length of the image flow.

Builds image flows of several lengths (default 50 and 1,000 images) by
repeating the real fundus optic-disc samples (``../shared/data``, 19 JPEG
pairs of 600 x 400), each in the layout the ``fundus-optic-disc`` card reads,
then runs ``bench run --suite one-prompt`` on each with the weight-free
baselines (``registration``, ``full-frame``; no prediction cache), every run in
a fresh process. It prints each run's peak resident memory (``ru_maxrss`` of
that process, from ``os.wait4``) and wall time, and the ratio of every flow's
peak to the reference: the shortest flow, measured in the same invocation.

The harness reads the frames of 2D image flows lazily and keeps masks packed
(one bit per pixel), so the ratio should stay well under 1.5 (issue 13).

Usage::

    python benchmarks/flow_memory.py [--sizes 50,1000] [--models registration,full-frame]
        [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
CARD = "fundus-optic-disc"


def build_flow(samples: Path, root: Path, size: int) -> None:
    """Write ``size`` image/mask pairs under ``root`` by cycling the real samples."""
    images = sorted((samples / "sample_dataset" / "origin1").glob("image_*.jpg"))
    if not images:
        raise SystemExit(f"{samples}: no sample_dataset/origin1/image_*.jpg")
    image_dir = root / "sample_dataset" / "origin1"
    mask_dir = root / "sample_dataset" / "groundtruth1"
    image_dir.mkdir(parents=True)
    mask_dir.mkdir(parents=True)
    for index in range(size):
        source = images[index % len(images)]
        mask = samples / "sample_dataset" / "groundtruth1" / source.name
        name = f"image_{index:05d}.jpg"
        shutil.copyfile(source, image_dir / name)
        shutil.copyfile(mask, mask_dir / name)


def measured_run(root: Path, out: Path, models: str) -> tuple[float, float]:
    """Run the suite on ``root`` in a new process; return (peak RSS in MB, seconds)."""
    command = [sys.executable, "-m", "bench.cli", "run", "--suite", "one-prompt",
               "--datasets", CARD, "--root", f"{CARD}={root}", "--models", models,
               "--no-cache", "--out", str(out)]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"bench run exited {code} on {root}:\n{output[-3000:]}")
    return usage.ru_maxrss / 1024, seconds  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="50,1000", help="flow lengths, reference first")
    parser.add_argument("--models", default="registration,full-frame")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="the shared real samples (holding fundus-optic-disc/)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    samples = args.data / "fundus-optic-disc"
    if not samples.is_dir():
        raise SystemExit(f"{samples}: not found (the shared real samples; see --data)")

    print(f"card {CARD}; models {args.models}; one image flow per run; {os.cpu_count()} CPUs")
    print(f"{'images':>7}{'peak MB':>10}{'wall s':>9}{'ratio':>8}")
    reference = None
    with tempfile.TemporaryDirectory(prefix="bench-flow-memory-") as folder:
        for size in sizes:
            root = Path(folder) / f"flow{size}"
            build_flow(samples, root, size)
            peak, seconds = measured_run(root, Path(folder) / f"run{size}", args.models)
            reference = reference or peak
            print(f"{size:>7}{peak:>10.0f}{seconds:>9.1f}{peak / reference:>8.2f}")
            shutil.rmtree(root)
    print(f"ratio: peak memory relative to the {sizes[0]}-image flow, same invocation")


if __name__ == "__main__":
    main()
