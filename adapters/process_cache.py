"""What the SAM-family adapters keep for the life of a process, in one owned object.

Every memo of the model adapters lives in :data:`PROCESS_CACHE`, so a reader
finds them in one place and a test or a long-lived worker can empty them with
one call (:meth:`ProcessCache.clear`). They are process-wide rather than
per adapter instance on purpose: the runner builds an adapter in the main
process (for the run record's fingerprint) and again in each worker, and
``sam2``/``medsam2`` instances of one run often share weights and frames;
per-instance state would build the same model and encode the same frames
several times. Nothing cached here changes a result: every key names all the
inputs of the value (see each field).

Image-embedding cache
---------------------
Encoder features are the expensive part of a SAM-family run and depend only
on the preprocessed frame and on the weights. :class:`EmbeddingCache` keeps
them in an in-memory LRU bounded in bytes and, optionally, in a folder on
disk, keyed by :func:`bench.adapters.torch_utils.embedding_key` (sha256 of the
preprocessed frame's bytes, the weights digest, the image size and the compute
settings), so every adapter instance, protocol and seed of a run reuses them.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from bench.adapters.torch_utils import sha256_file

from bench.atomic import atomic_path

V = TypeVar("V")


class Memo(Generic[V]):
    """A dictionary of values built once per key (no eviction)."""

    def __init__(self) -> None:
        self._values: dict[Hashable, V] = {}

    def get(self, key: Hashable, build: Callable[[], V]) -> V:
        """The value stored under ``key``, built by ``build()`` on the first call."""
        if key not in self._values:
            self._values[key] = build()
        return self._values[key]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def clear(self) -> None:
        self._values.clear()


class EmbeddingCache:
    """LRU of encoder features bounded in bytes, optionally mirrored on disk.

    Values are lists of tensors. In memory they stay on the device they were
    computed on; on disk they are stored on the CPU (``KEY.pt``, written
    atomically) and read back with ``weights_only=True``.

    Parameters
    ----------
    max_bytes : int
        Memory budget; 0 disables the in-memory level.
    """

    def __init__(self, max_bytes: int = 0) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, tuple[list[Any], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def get(self, key: str, cache_dir: Path | None = None, device: Any = None) -> list[Any] | None:
        """The tensors stored under ``key`` (in memory, else on disk), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                return item[0]
        if cache_dir is not None:
            path = Path(cache_dir) / f"{key}.pt"
            if path.is_file():
                import torch

                tensors = torch.load(path, map_location="cpu", weights_only=True)
                if device is not None:
                    tensors = [t.to(device) for t in tensors]
                self.put(key, tensors)
                return tensors
        return None

    def put(self, key: str, tensors: list[Any], cache_dir: Path | None = None) -> None:
        """Store ``tensors`` under ``key`` (and on disk when ``cache_dir`` is given)."""
        if cache_dir is not None:
            import torch

            with atomic_path(Path(cache_dir) / f"{key}.pt") as temp:
                torch.save([t.detach().to("cpu") for t in tensors], temp)
        size = sum(t.numel() * t.element_size() for t in tensors)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (tensors, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def __contains__(self, key: str) -> bool:
        return key in self._items


@dataclass
class ProcessCache:
    """The process-wide memos of the model adapters.

    Attributes
    ----------
    models : Memo
        Built models with their weight identity. Keys start with the model
        family and name everything the built model depends on: for SAM 2
        ``("sam2", predictor class, config, weights, image size, device,
        fill_hole_area)``, for SAM ``("sam", variant, size, weights, device)``;
        weights are a checkpoint sha256 or ``random:SEED``.
    config_matches : Memo
        MedSAM-2's ``config = "auto"``: (checkpoint sha256, adapter, requested
        config) -> (matched config, message), so a checkpoint is read once.
    state_shapes : Memo
        SAM 2 config -> names and shapes of its state dict (building a model
        to learn them takes seconds).
    file_digests : Memo
        (absolute path, size, mtime) -> sha256 of a checkpoint file.
    embeddings : EmbeddingCache
        Encoder features (see the module docstring); its budget only grows,
        to the largest ``cache_mb`` any adapter asked for.
    """

    models: Memo[Any] = field(default_factory=Memo)
    config_matches: Memo[tuple[str, str]] = field(default_factory=Memo)
    state_shapes: Memo[dict[str, tuple[int, ...]]] = field(default_factory=Memo)
    file_digests: Memo[str] = field(default_factory=Memo)
    embeddings: EmbeddingCache = field(default_factory=EmbeddingCache)

    def clear(self) -> None:
        """Forget everything (the embedding budget stays)."""
        for memo in (self.models, self.config_matches, self.state_shapes, self.file_digests):
            memo.clear()
        self.embeddings.clear()


PROCESS_CACHE = ProcessCache()
"""The one instance; owned by this module, used by the SAM-family adapters."""


def shared_embedding_cache(max_mb: float) -> EmbeddingCache:
    """The process-wide embedding cache, its budget raised to at least ``max_mb`` megabytes."""
    cache = PROCESS_CACHE.embeddings
    cache.max_bytes = max(cache.max_bytes, int(max_mb * 2**20))
    return cache


def cached_sha256_file(path: str | os.PathLike[str]) -> str:
    """:func:`bench.adapters.torch_utils.sha256_file`, memoised on (path, size, mtime)."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    return PROCESS_CACHE.file_digests.get(key, lambda: sha256_file(path))
