"""Keyed random streams: every random choice of the prompt ledger comes from one.

A stream is identified by the key ``(seed, dataset, case, target, frame,
protocol, purpose)``. The key is written as canonical JSON, hashed with
sha256, and the digest (eight little-endian 32-bit words) seeds a
:class:`numpy.random.SeedSequence` that drives a PCG64 bit generator. A prompt
therefore depends on its own key only, never on the order flows or targets are
processed in, on ``--limit``, on the model, the batch size or the worker count.

``purpose`` separates the independent decisions made for one frame (for
example whether ``paper-random`` prompts the frame, and where a
``point-random`` click lands on it), so that one never shifts the other.
``frame`` is None for decisions about a whole flow and target (the template
frame of ``one-prompt``).

Draws use the bit generator's raw 64-bit output with explicit, documented
arithmetic rather than :class:`numpy.random.Generator` methods: numpy keeps
``SeedSequence`` and the PCG64 stream stable across versions but does not
promise that for ``Generator`` methods (NEP 19), and the ledger must stay
byte-identical.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

_TWO_64 = 1 << 64


def stream_key(
    seed: int,
    dataset: str,
    case: str,
    target: str | None,
    frame: int | None,
    protocol: str,
    purpose: str,
) -> str:
    """The canonical text of a stream key (JSON array, no spaces)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    if frame is not None:
        frame = int(frame)
    parts = [int(seed), str(dataset), str(case), target, frame, str(protocol), str(purpose)]
    return json.dumps(parts, separators=(",", ":"), ensure_ascii=True)


class KeyedStream:
    """A reproducible random stream named by a key string.

    Parameters
    ----------
    key : str
        Usually :func:`stream_key`'s output.

    Attributes
    ----------
    key : str
    bit_generator : numpy.random.PCG64
        Seeded with ``SeedSequence(sha256(key) as eight uint32 words)``.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        words = [int(w) for w in np.frombuffer(digest, dtype="<u4")]
        self.bit_generator = np.random.PCG64(np.random.SeedSequence(words))

    def raw(self) -> int:
        """The next raw 64-bit unsigned integer of the stream."""
        return int(self.bit_generator.random_raw())

    def integer(self, n: int) -> int:
        """A uniform integer in ``[0, n)``, by rejection (no modulo bias)."""
        if n <= 0:
            raise ValueError(f"integer(n): n must be positive, got {n}")
        limit = _TWO_64 - (_TWO_64 % n)
        while True:
            value = self.raw()
            if value < limit:
                return value % n

    def uniform(self) -> float:
        """A uniform float in ``[0, 1)`` from the top 53 bits of one raw draw."""
        return (self.raw() >> 11) * (1.0 / (1 << 53))

    def bernoulli(self, p: float) -> bool:
        """True with probability ``p`` (one uniform draw compared with ``p``).

        With the same key, a larger ``p`` selects a superset of what a smaller
        one selects.
        """
        return self.uniform() < p


def keyed_stream(
    seed: int,
    dataset: str,
    case: str,
    target: str | None,
    frame: int | None,
    protocol: str,
    purpose: str,
) -> KeyedStream:
    """The stream for one decision; see the module docstring for the key."""
    return KeyedStream(stream_key(seed, dataset, case, target, frame, protocol, purpose))
