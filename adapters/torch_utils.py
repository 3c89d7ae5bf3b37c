"""Torch plumbing shared by the SAM-family adapters: imports, devices, autocast, caches.

Nothing here imports torch at module level, so the core install (no torch)
can import the adapters and list them; :func:`require_torch` raises the one
clear error telling the user which extra to install.

Image-embedding cache
---------------------
Encoder features are the expensive part of a SAM 2 run (the Hiera trunk and
the FPN neck) and depend only on the preprocessed frame and on the weights.
:class:`EmbeddingCache` keeps them in an in-memory LRU bounded in bytes and,
optionally, in a folder on disk, keyed by :func:`embedding_key` (sha256 of the
preprocessed frame's bytes, the weights digest, the image size and the compute
settings). One process-wide instance (:func:`shared_embedding_cache`) lets every
adapter instance, protocol and seed in a run reuse the features.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from adapters.base import missing_modules

INSTALL_HINT = "pip install 'medsam2-bench[sam]'"
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def require_modules(model: str, modules: Sequence[str]) -> Any:
    """Import torch for ``model`` once ``modules`` are known to be installed.

    Raises one clear ImportError naming what is missing and how to install it.

    Returns
    -------
    module
        The ``torch`` module.
    """
    missing = missing_modules(modules)
    if missing:
        raise ImportError(
            f"model {model!r} needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: {INSTALL_HINT}"
        )
    import torch

    return torch


def require_torch(model: str) -> Any:
    """Import torch for a SAM 2 based ``model`` (needs torch and sam2)."""
    return require_modules(model, ("torch", "sam2"))


def select_device(name: str) -> Any:
    """The ``torch.device`` for a ``device`` setting (``auto|cpu|cuda|mps``).

    ``auto`` picks CUDA, then MPS, then CPU. Asking for an accelerator that is
    not available is an error rather than a silent fall back to the CPU.
    """
    import torch

    if name not in DEVICE_CHOICES:
        raise ValueError(f"device: expected one of {', '.join(DEVICE_CHOICES)}, got {name!r}")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise ValueError("device: 'cuda' was asked for but torch sees no CUDA device")
    if name == "mps" and not mps:
        raise ValueError("device: 'mps' was asked for but torch sees no MPS device")
    return torch.device(name)


def autocast_for(device: Any) -> AbstractContextManager[Any]:
    """bf16 autocast on CUDA (as SAM 2's own demos run), no autocast elsewhere."""
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


# ------------------------------------------------------------------------- hashing


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def cached_sha256_file(path: str | os.PathLike[str]) -> str:
    """:func:`sha256_file`, memoised per process on (path, size, mtime)."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        _FILE_DIGESTS[key] = sha256_file(path)
    return _FILE_DIGESTS[key]


def tensor_bytes(tensor: Any) -> bytes:
    """The raw bytes of a tensor (CPU, contiguous); bf16 is viewed as int16."""
    import torch

    tensor = tensor.detach().to("cpu").contiguous()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.int16)
    return tensor.numpy().tobytes()


def state_dict_digest(state_dict: dict[str, Any]) -> str:
    """Hex sha256 over a state dict's names, dtypes, shapes and values (sorted by name)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        value = state_dict[name]
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(tensor_bytes(value))
    return digest.hexdigest()


def embedding_key(image: Any, weights: str, image_size: int, compute: str) -> str:
    """Cache key of one frame's encoder features.

    Parameters
    ----------
    image : Tensor
        The preprocessed model input ``(3, S, S)``; hashing it (rather than the
        raw frame) makes the key cover the preprocessing profile and resize.
    weights : str
        Digest of the weights (checkpoint sha256 or state-dict digest).
    image_size : int
        The model's input size ``S``.
    compute : str
        What else changes the numbers: device type and autocast dtype.
    """
    digest = hashlib.sha256()
    digest.update(f"{weights}|{image_size}|{compute}|{tuple(image.shape)}|".encode())
    digest.update(tensor_bytes(image))
    return digest.hexdigest()


# -------------------------------------------------------------------------- cache


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
        self.hits = 0
        self.disk_hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self.hits = self.disk_hits = self.misses = 0

    def get(self, key: str, cache_dir: Path | None = None, device: Any = None) -> list[Any] | None:
        """The tensors stored under ``key``, or None (counted as a miss)."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return item[0]
        if cache_dir is not None:
            path = Path(cache_dir) / f"{key}.pt"
            if path.is_file():
                import torch

                tensors = torch.load(path, map_location="cpu", weights_only=True)
                if device is not None:
                    tensors = [t.to(device) for t in tensors]
                self.disk_hits += 1
                self.put(key, tensors)
                return tensors
        self.misses += 1
        return None

    def put(self, key: str, tensors: list[Any], cache_dir: Path | None = None) -> None:
        """Store ``tensors`` under ``key`` (and on disk when ``cache_dir`` is given)."""
        if cache_dir is not None:
            _atomic_save([t.detach().to("cpu") for t in tensors], Path(cache_dir) / f"{key}.pt")
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

    def keys(self) -> Iterator[str]:
        return iter(list(self._items))


def _atomic_save(tensors: list[Any], path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(tensors, tmp)
    os.replace(tmp, path)


_SHARED = EmbeddingCache(0)


def shared_embedding_cache(max_mb: float) -> EmbeddingCache:
    """The process-wide cache, its budget raised to at least ``max_mb`` megabytes."""
    _SHARED.max_bytes = max(_SHARED.max_bytes, int(max_mb * 2**20))
    return _SHARED
