"""Frames per second of ``medsam2`` (SAM 2.0 tiny) and the embedding cache's speed-up.

RANDOM WEIGHTS: the model is SAM 2.0 tiny with random initial weights (no
checkpoint is needed or downloaded). The timings are those of the real
architecture; the masks are meaningless.

Run on demand::

    python benchmarks/medsam2_fps.py [--sizes 256,512,1024] [--frames 4] [--device cpu]
                                     [--threads N] [--json out.json]

Measured in one run, on one synthetic image flow per size (grey uint8 frames
of the model's input size; a bright disc moving across the flow):

(a) frames per second of a one-prompt run (a click on the middle frame,
    propagation both ways) for each ``image_size``, cold: the embedding
    cache is off, so every frame is encoded once. Three memory policies:
    ``official`` (``medsam2``'s default: the official 2D loop on image
    flows), ``confidence`` (the harness's variant of the official 2D bank
    inside SAM 2's video predictor) and ``fifo`` (SAM 2's memory, what it
    runs on volumes).
(b) a run with three protocols on the same frames (a click on the middle
    frame, a box on the first, a mask on the last) without and with the
    in-memory embedding cache; the speed-up is time(off) / time(on), and the
    masks of both are checked to be identical.

Each timing follows a warm-up prediction at the same size on three frames
(allocators, lazy initialisation, memory attention) and excludes building
the model. On CUDA the run uses bf16
autocast, as the adapter does.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from bench.adapters.medsam2.adapter import MedSAM2Adapter
from bench.adapters.process_cache import shared_embedding_cache
from rich.console import Console
from rich.table import Table

from bench.atomic import dumps_strict
from bench.types import FlowFrames, Prediction, Prompt

#: The memory policies timed in (a); ``official`` is ``medsam2``'s default.
POLICIES = ("official", "confidence", "fifo")


def synthetic_flow(size: int, frames: int) -> tuple[FlowFrames, np.ndarray]:
    """Grey uint8 frames ``size`` x ``size``: noise plus a disc moving to the right."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:size, :size]
    images, masks = [], []
    for i in range(frames):
        centre = (size * 0.5, size * (0.35 + 0.3 * i / max(1, frames - 1)))
        disc = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < (size * 0.15) ** 2
        image = rng.normal(60, 15, (size, size)) + 120 * disc
        images.append(np.clip(image, 0, 255).astype(np.uint8))
        masks.append(disc)
    return FlowFrames(f"fps{size}", "synthetic", "image-flow", images), np.stack(masks)


def protocols(masks: np.ndarray) -> list[list[Prompt]]:
    """Three prompt sets on one flow: click (middle), box (first), mask (last)."""
    middle, last = len(masks) // 2, len(masks) - 1
    rows, cols = np.nonzero(masks[middle])
    click = Prompt("disc", middle, "point", points=((int(cols.mean()), int(rows.mean())),),
                   labels=(1,))
    rows, cols = np.nonzero(masks[0])
    box = Prompt("disc", 0, "box", box=(int(cols.min()), int(rows.min()),
                                        int(cols.max()), int(rows.max())))
    mask = Prompt("disc", last, "mask", mask=masks[last].copy())
    return [[click], [box], [mask]]


def adapter(size: int, device: str, memory: str, cache_mb: float) -> MedSAM2Adapter:
    return MedSAM2Adapter(settings={
        "random_weights": True, "config": "sam2_hiera_t", "image_size": size,
        "device": device, "memory": memory, "cache_mb": cache_mb, "preprocessing": "official",
    })


def timed(
    model: MedSAM2Adapter, flow: FlowFrames, prompts: list[Prompt]
) -> tuple[float, Prediction]:
    sync = torch.cuda.synchronize if model.load().predictor.device.type == "cuda" else None
    if sync:
        sync()
    start = time.perf_counter()
    prediction = model.predict(flow, prompts)
    if sync:
        sync()
    return time.perf_counter() - start, prediction


def same(a: Prediction, b: Prediction) -> bool:
    return all(np.array_equal(x, y) for t in a.masks
               for x, y in zip(a.masks[t], b.masks[t], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512,1024", help="image sizes, comma-separated")
    parser.add_argument("--frames", type=int, default=4, help="frames per flow (default 4)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps", "auto"])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    console = Console()
    console.print("[bold red]RANDOM WEIGHTS[/]: SAM 2.0 tiny, random initialisation; "
                  "timings are real, masks meaningless.")
    results: dict[str, object] = {
        "weights": "random (SAM 2.0 tiny)", "frames": args.frames, "device": args.device,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(), "fps": {}, "cache": {},
    }
    if args.device in ("cuda", "auto") and torch.cuda.is_available():
        results["gpu"] = torch.cuda.get_device_name()

    fps_table = Table(title=f"medsam2 frames per second ({args.frames}-frame one-prompt run, "
                            f"{args.device}, {torch.get_num_threads()} threads, no cache)")
    for column in ("image size", *POLICIES):
        fps_table.add_column(column, justify="right")
    cache_table = Table(title="embedding cache: three protocols on the same frames")
    for column in ("image size", "cache off (s)", "cache on (s)", "speed-up", "same masks"):
        cache_table.add_column(column, justify="right")

    for size in sizes:
        flow, masks = synthetic_flow(size, args.frames)
        sets = protocols(masks)
        row = {}
        for memory in POLICIES:
            model = adapter(size, args.device, memory, 0)
            # Warm-up on three frames, so that memory attention and both propagation
            # directions have run once (CUDA kernels, autotuning) before the timing.
            timed(model, FlowFrames("warm", "synthetic", "image-flow", flow.frames[:3]),
                  [Prompt("disc", 1, "point", points=((size // 2, size // 2),), labels=(1,))])
            seconds, _ = timed(model, flow, sets[0])
            row[memory] = args.frames / seconds
        results["fps"][size] = row
        fps_table.add_row(str(size), *(f"{row[memory]:.2f}" for memory in POLICIES))

        off_model = adapter(size, args.device, "confidence", 0)
        off = [timed(off_model, flow, prompts) for prompts in sets]
        shared_embedding_cache(0).clear()
        on_model = adapter(size, args.device, "confidence", 4096)
        on = [timed(on_model, flow, prompts) for prompts in sets]
        t_off, t_on = sum(t for t, _ in off), sum(t for t, _ in on)
        identical = all(same(a, b) for (_, a), (_, b) in zip(off, on, strict=True))
        results["cache"][size] = {"off_s": t_off, "on_s": t_on, "speedup": t_off / t_on,
                                  "identical_masks": identical}
        cache_table.add_row(str(size), f"{t_off:.2f}", f"{t_on:.2f}", f"{t_off / t_on:.2f}x",
                            "yes" if identical else "NO")
        console.print(f"size {size} done")
    console.print(fps_table)
    console.print(cache_table)
    if args.json:
        args.json.write_text(dumps_strict(results, indent=2))  # NaN -> null


if __name__ == "__main__":
    main()
