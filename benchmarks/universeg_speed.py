"""Time the ``universeg`` adapter per query frame on the CPU, at several support set sizes k.

Each measurement runs :meth:`UniverSegAdapter.predict` end to end
(preprocessing, the network, the resize back and the threshold) on one image
flow of ``--frames`` query frames plus k support frames with mask prompts,
random weights, and divides by the number of query frames. The network alone
(one forward pass of a batch, preprocessing excluded) is timed beside it. The
best of ``--repeats`` runs is reported, after one warm-up run per k.

Usage::

    python benchmarks/universeg_speed.py --ks 1,16 --frames 8 --size 256
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _flow(frames: int, k: int, size: int, seed: int = 0):
    from bench.types import FlowFrames, Prompt

    rng = np.random.default_rng(seed)
    images = [rng.random((size, size)).astype(np.float32) for _ in range(frames + k)]
    prompts = []
    for index in range(k):
        mask = np.zeros((size, size), bool)
        mask[size // 4:size // 2 + index % 7, size // 3:2 * size // 3] = True
        prompts.append(Prompt("t", index, "mask", mask=mask))
    return FlowFrames("bench", "bench", "image-flow", images), prompts


def _best(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="1,16", help="support set sizes, comma separated")
    parser.add_argument("--frames", type=int, default=8, help="query frames per flow")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8, help="the adapter's batch setting")
    args = parser.parse_args()

    import torch
    from bench.adapters import create

    adapter = create("universeg", {"random_weights": True, "device": "cpu",
                                   "batch": args.batch})
    model = adapter.load().model
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; "
          f"{args.frames} query frames of {args.size} x {args.size}, batch {args.batch}, "
          f"best of {args.repeats}")
    for k in (int(v) for v in args.ks.split(",")):
        flow, prompts = _flow(args.frames, k, args.size)
        total = _best(lambda flow=flow, prompts=prompts: adapter.predict(flow, prompts),
                      args.repeats)
        query = torch.rand(min(args.batch, args.frames), 1, 128, 128)
        support = torch.rand(query.shape[0], k, 1, 128, 128)
        labels = (torch.rand(query.shape[0], k, 1, 128, 128) > 0.5).float()

        def network(query=query, support=support, labels=labels) -> None:
            with torch.inference_mode():
                model(query, support, labels)

        net = _best(network, args.repeats) / query.shape[0]
        print(f"k = {k:3d}: {1000 * total / args.frames:8.1f} ms per frame end to end, "
              f"{1000 * net:8.1f} ms per frame in the network")


if __name__ == "__main__":
    main()
