"""Torch plumbing shared by the SAM-family adapters: imports, devices, autocast, hashes.

Nothing here imports torch at module level, so the core install (no torch)
can import the adapters and list them; :func:`require_torch` raises the one
clear error telling the user which extra to install. The process-wide memos
(built models, encoder features) are in :mod:`bench.adapters.process_cache`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal, get_args

from bench.adapters.base import missing_modules

INSTALL_HINT = "pip install 'medsam2-bench[sam]'"
Device = Literal["auto", "cpu", "cuda", "mps"]
DEVICE_CHOICES: tuple[str, ...] = get_args(Device)


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


def package_version(name: str) -> str:
    """The installed version of distribution ``name``, or ``"unknown"``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


# ------------------------------------------------------------------------- hashing


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


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
