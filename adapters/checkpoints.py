"""Model checkpoints: where they come from, safe loading and a strict key check.

- Where: the ``checkpoint`` setting of ``[models.NAME]`` (bench.toml or
  ``--checkpoint NAME=PATH``), else the environment variable
  ``MEDSAM2_BENCH_CHECKPOINT_<NAME>`` (upper case, ``-`` and ``.`` as ``_``).
  No path at all, or a path that does not exist, is one clear error naming
  the three ways to give it and where the weights are published.
- Loading: always ``torch.load(path, map_location="cpu", weights_only=True)``,
  so a pickle that carries code is refused before anything in it runs. A
  refused file is never loaded another way: the message says so, and never
  repeats torch's advice to retry without ``weights_only``.
- Format: ``{"model": state_dict, ...}`` (SAM 2 and the official MedSAM-2
  training code save this; other top-level entries are ignored) or a bare
  state dict.
- Strict check: every key of the architecture present with its shape and no
  extra key, else an error with counts and the first few offenders.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import ConfigError

ENV_PREFIX = "MEDSAM2_BENCH_CHECKPOINT_"
SHOW_KEYS = 5
# What the harness does instead of torch's advice to retry with a full (unsafe) load.
NEVER_UNPICKLE = ("this harness never unpickles anything but tensors and plain containers, "
                  "since unpickling other objects can run code, so it does not retry with a "
                  "full load; save the weights alone, e.g. "
                  "torch.save({'model': model.state_dict()}, PATH), and point to that file")
# Lines of torch's message that advise an unsafe load: never shown.
_TORCH_ADVICE = ("weights_only", "Weights only load failed", "Please file an issue",
                 "Check the documentation")
# Torch's advice to allowlist globals, inside a reason's line: cut out.
_ALLOWLIST_ADVICE = re.compile(r"\s*(?:Please use `torch\.serialization.*"
                               r"| or types allowlisted via `add_safe_globals`)")


class CheckpointError(ConfigError):
    """A checkpoint that is missing, unsafe, unreadable or does not fit the model."""



#: What ``torch.load`` raises on a file that is not a torch checkpoint (measured on
#: empty, text, random, truncated, .npz and other zip files): the zip reader's
#: RuntimeError, EOFError, and KeyError / IndexError from the legacy pickle path.
NOT_A_CHECKPOINT: tuple[type[BaseException], ...] = (RuntimeError, EOFError, OSError,
                                                    ValueError, KeyError, IndexError)


def env_var(model: str) -> str:
    """The environment variable that may hold ``model``'s checkpoint path."""
    return ENV_PREFIX + "".join(c if c.isalnum() else "_" for c in model).upper()


def resolve_checkpoint(model: str, checkpoint: str, published: str) -> Path:
    """The checkpoint path for ``model`` from its setting or the environment.

    Parameters
    ----------
    model : str
        Adapter name (``[models.NAME]``).
    checkpoint : str
        The adapter's ``checkpoint`` setting ("" when unset); it wins over the
        environment.
    published : str
        Where the weights can be downloaded (hub id / URL), for the error.

    Raises
    ------
    CheckpointError
        When no path is given or the file does not exist.
    """
    variable = env_var(model)
    path = checkpoint or os.environ.get(variable, "")
    how = (f"set `checkpoint = \"PATH\"` in [models.{model}] of bench.toml, the environment "
           f"variable {variable}, or pass --checkpoint {model}=PATH; the weights are "
           f"published at {published}")
    if not path:
        raise CheckpointError(f"[models.{model}]: no checkpoint given: {how} "
                              "(--random-weights runs without one, for smoke tests only)")
    source = f"[models.{model}].checkpoint" if checkpoint else variable
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found (from {source}): {how}")
    return path


def why_unavailable(model: str, checkpoint: str, random_weights: bool, modules: Sequence[str],
                    published: str) -> str | None:
    """Why a weighted ``model`` cannot run: a missing package or checkpoint; else None.

    ``checkpoint`` and ``random_weights`` are the adapter's settings.
    """
    from bench.adapters.base import missing_modules
    from bench.adapters.torch_utils import INSTALL_HINT

    missing = missing_modules(modules)
    if missing:
        return f"needs {' and '.join(missing)}: {INSTALL_HINT}"
    if random_weights:
        return None
    try:
        resolve_checkpoint(model, checkpoint, published)
    except CheckpointError as err:
        return str(err)
    return None


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a state dict safely from ``path``.

    Accepts ``{"model": state_dict, ...}`` or a bare state dict of tensors.

    Raises
    ------
    CheckpointError
        When the file is refused by the weights-only unpickler (it carries
        code or objects other than tensors and containers), is not a torch
        checkpoint, or holds no state dict.
    """
    import torch

    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except pickle.UnpicklingError as err:
        refused = _refused_global(err)
        if refused is None:
            raise CheckpointError(
                f"{path}: not a readable torch checkpoint ({_unpickler_reason(err)}); "
                f"{NEVER_UNPICKLE}") from None
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects other than tensors "
            f"(a pickle that could run code; refused global {refused}); "
            f"only weights-only checkpoints are read: {NEVER_UNPICKLE}"
        ) from None
    except NOT_A_CHECKPOINT as err:
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint ({type(err).__name__}: {_first_line(err)})"
        ) from None
    state = payload.get("model", payload) if isinstance(payload, Mapping) else None
    if not isinstance(state, Mapping) or not state or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(
            f"{path}: expected a state dict or {{'model': state_dict}} of named tensors, "
            f"got {type(payload).__name__}"
            + (f" with keys {sorted(map(str, payload))[:SHOW_KEYS]}"
               if isinstance(payload, Mapping) else "")
        )
    return dict(state)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _refused_global(err: BaseException) -> str | None:
    """The global the weights-only unpickler refused, from torch's long message.

    Torch words it as "Unsupported global: GLOBAL x.y was not an allowed
    global" or, for its blocked modules (``os``, ``sys``), "unsupported GLOBAL
    x.y whose module x is blocked".
    """
    match = re.search(r"GLOBAL ([\w.]+) (?:was not an allowed global|whose module)", str(err))
    if match is None:
        match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
    return match.group(1) if match else None


def _unpickler_reason(err: BaseException) -> str:
    """The unpickler's own reason, without torch's advice (retry unsafely, allowlist)."""
    text = str(err)
    _, marker, tail = text.partition("WeightsUnpickler error:")
    lines = (tail if marker else text).splitlines()
    for line in (_ALLOWLIST_ADVICE.sub("", part).strip() for part in lines):
        if line and not any(advice in line for advice in _TORCH_ADVICE):
            return line
    return type(err).__name__


@dataclass(frozen=True)
class KeyCheck:
    """How a state dict fits a model: missing, unexpected and mis-shaped keys."""

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]
    expected_count: int

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        """One line: counts and the first few keys of each kind."""
        if self.ok:
            return f"all {self.expected_count} keys match"
        parts = [f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, "
                 f"{len(self.mismatched)} with another shape "
                 f"(model has {self.expected_count} keys)"]
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                parts.append(f"{label}: {_first(keys)}")
        if self.mismatched:
            shown = [f"{k} {tuple(got)} vs model {tuple(want)}"
                     for k, got, want in self.mismatched[:SHOW_KEYS]]
            extra = len(self.mismatched) - len(shown)
            parts.append("shape: " + ", ".join(shown) + (f", ... (+{extra} more)" if extra else ""))
        return "; ".join(parts)


def _first(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:SHOW_KEYS])
    extra = len(keys) - SHOW_KEYS
    return shown + (f", ... (+{extra} more)" if extra > 0 else "")


def check_keys(expected: Mapping[str, Any], state: Mapping[str, Any]) -> KeyCheck:
    """Compare ``state`` against the model's ``expected`` names and shapes.

    ``expected`` maps names to tensors or to shapes (tuples).
    """
    want = {k: tuple(v) if isinstance(v, tuple) else tuple(v.shape) for k, v in expected.items()}
    missing = tuple(k for k in want if k not in state)
    unexpected = tuple(k for k in state if k not in want)
    mismatched = tuple(
        (k, tuple(state[k].shape), want[k])
        for k in want
        if k in state and tuple(state[k].shape) != want[k]
    )
    return KeyCheck(missing, unexpected, mismatched, len(expected))


def load_strict(model: Any, state: Mapping[str, Any], where: str) -> None:
    """Load ``state`` into ``model`` after a strict key check.

    Raises
    ------
    CheckpointError
        Naming ``where`` (the file) and summarising the mismatch.
    """
    check = check_keys(model.state_dict(), state)
    if not check.ok:
        raise CheckpointError(f"{where}: does not fit the model: {check.summary()}")
    model.load_state_dict(state, strict=True)
