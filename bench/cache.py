"""Content-addressed cache of predictions, shared by workers and by runs.

A prediction is a function of what the adapter sees, so it is stored under the
sha256 of exactly that (canonical JSON):

- the adapter: its name and class, its fingerprint (settings, weights digest
  or checkpoint sha256, device, library versions; the description text is
  left out), a digest of the source files of the package that defines it, and
  the versions of numpy, scipy, scikit-image, torch, sam2 and segment-anything;
- the flow as adapters see it (:class:`~bench.types.FlowFrames`): dataset, id,
  kind, spacing, case ids, source geometry and a digest of the frames' bytes;
- the prompts: each ledger row's content (target, frame, kind, points,
  labels, box, mask sha256 and shape), without its seed, protocol or row hash:
  the adapter never sees those, so two seeds that drew the same prompts share
  an entry.

Not cached: adapters that see ground truth (the oracle), the external
``predictions`` adapter (it reads files that may change under the same
settings), and adapters with weights whose fingerprint names no weights digest.
Runs with ``random_weights`` are cached: their initialisation is seeded and
their fingerprint carries the digest of the initialised state dict, so the key
names the exact weights. The cache assumes an adapter is deterministic for a
given key (true of the baselines; on CUDA, kernels may differ in the last bits).

Entries live in ``ROOT/predictions/ab/KEY.npz`` (bit-packed masks, shapes,
per-frame scores), written atomically, so concurrent workers may write the
same entry. A hit refreshes the file's modification time, which
:meth:`PredictionCache.prune` uses as "last used". Beside an entry,
``KEY-rows-ROWSKEY.json`` holds a hit's scored rows (:func:`score_key`: the
prediction key plus the ground truth's digest, the metrics code and every
scoring setting), so that a rerun need not score the same masks again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.atomic import PARTIAL_MARK, atomic_path
from bench.errors import ConfigError
from bench.frames import LazyFrames, PackedMasks, array_sha256
from bench.provenance import package_versions
from bench.types import FlowFrames, Prediction

CACHE_VERSION = 2  # 2: each mask packed on its own (read back as PackedMasks)
ENV_VAR = "MEDSAM2_BENCH_CACHE"
DEFAULT_DIR = "~/.cache/medsam2-bench"
# Adapters whose output depends on more than their fingerprint (files on disk).
UNCACHED_ADAPTERS = frozenset({"predictions"})
_LIBRARIES = ("numpy", "scipy", "scikit-image", "torch", "torchvision", "sam2",
              "segment-anything")
_PROMPT_FIELDS = ("target", "frame", "kind", "points", "labels", "box", "mask_sha256",
                  "mask_shape")
# Fields only some ledger kinds have (support-volume: its source volume and query slices).
_OPTIONAL_FIELDS = ("source", "z_range")


def cache_dir(configured: str | None = None, base: Path | None = None) -> Path:
    """The cache folder: ``$MEDSAM2_BENCH_CACHE``, else ``configured``, else the default.

    Parameters
    ----------
    configured : str or None
        ``[defaults] cache_dir`` of ``bench.toml`` ("" means unset); relative
        paths are relative to ``base`` (the folder of ``bench.toml``).
    """
    chosen = os.environ.get(ENV_VAR) or configured or DEFAULT_DIR
    path = Path(chosen).expanduser()
    if not path.is_absolute() and base is not None and not os.environ.get(ENV_VAR):
        path = Path(base) / path
    return path.resolve()


def canonical(data: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) with NumPy values and paths as JSON."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=_plain,
                      allow_nan=True)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


#: Version of the frame digests in ``manifest.json`` (1: one running hash over the frames'
#: bytes; 2: a hash of per-frame digests, plus the intensities before a card's window).
DIGEST_VERSION = 2


def frames_digest(frames: Sequence[np.ndarray]) -> str:
    """sha256 over the frame count and every frame's :func:`~bench.frames.array_sha256`
    (dtype, shape and bytes; a 3D volume frame by frame).

    Lazily read frames (:class:`~bench.frames.LazyFrames`) give the digests recorded
    when their flow was read, without reading the frames again.
    """
    digests = (frames.digests if isinstance(frames, LazyFrames)
               else (array_sha256(frame) for frame in frames))
    digest = hashlib.sha256(f"{len(frames)}".encode())
    for one in digests:
        digest.update(f"|{one}".encode())
    return digest.hexdigest()


def flow_frames_digest(frames: Sequence[np.ndarray],
                       source_frames: Sequence[np.ndarray] | None = None) -> str:
    """:func:`frames_digest` of a flow's frames, and of the intensities before the
    card's window when the flow keeps them (an adapter may start from those)."""
    digest = frames_digest(frames)
    if source_frames is None:
        return digest
    return sha256_text(f"{digest}|source|{frames_digest(source_frames)}")


def masks_digest(masks: Mapping[str, Sequence[np.ndarray]]) -> str:
    """sha256 over every target's name and masks (as booleans, frame by frame)."""
    digest = hashlib.sha256()
    for target in sorted(masks):
        frames = masks[target]
        digest.update(f"|{target}|{len(frames)}".encode())
        for mask in frames:  # one mask at a time: packed masks stay packed
            digest.update(f"|{array_sha256(np.asarray(mask, dtype=bool))}".encode())
    return digest.hexdigest()


def adapter_digest(fingerprint: Mapping[str, Any]) -> str:
    """Digest of what an adapter's predictions depend on, from its fingerprint.

    The description is left out; so is the checkpoint's *path* when the
    fingerprint names the checkpoint's sha256: a moved checkpoint is the same
    model, a changed file at the same path is not.
    """
    record = {k: v for k, v in fingerprint.items() if k != "description"}
    if record.get("checkpoint_sha256"):
        record.pop("checkpoint", None)
        settings = record.get("settings")
        if isinstance(settings, Mapping):
            record["settings"] = {k: v for k, v in settings.items() if k != "checkpoint"}
    return sha256_text(canonical(record))


def prompt_content(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What an adapter sees of ledger rows: no seed, protocol or row hash; sorted."""
    content = [{name: row[name] for name in (*_PROMPT_FIELDS, *_OPTIONAL_FIELDS) if name in row}
               for row in rows]
    return sorted(content, key=canonical)


@dataclass(frozen=True)
class AdapterIdentity:
    """Whether an adapter's predictions are cached, and the digest that names it."""

    cacheable: bool
    digest: str = ""
    reason: str = ""


def adapter_identity(adapter: Any) -> AdapterIdentity:
    """The cache identity of a built adapter (calls its ``fingerprint()``)."""
    cls = type(adapter)
    if cls.capabilities.sees_ground_truth:
        return AdapterIdentity(False, reason="sees ground truth")
    if adapter.name in UNCACHED_ADAPTERS:
        return AdapterIdentity(False, reason="reads saved predictions from disk")
    fingerprint = {k: v for k, v in adapter.fingerprint().items() if k != "description"}
    if cls.capabilities.needs_weights and not (fingerprint.get("weights_digest")
                                               or fingerprint.get("checkpoint_sha256")):
        return AdapterIdentity(False, reason="its fingerprint names no weights digest")
    identity = {"cache_version": CACHE_VERSION, "adapter": adapter.name,
                "class": f"{cls.__module__}.{cls.__qualname__}", "fingerprint": fingerprint,
                "code": source_digest(cls.__module__),
                "libraries": package_versions(_LIBRARIES)}
    return AdapterIdentity(True, sha256_text(canonical(identity)))


def prediction_key(identity: AdapterIdentity, flow: FlowFrames, frames_sha256: str,
                   rows: Iterable[Mapping[str, Any]],
                   sources: Mapping[str, Any] | None = None) -> str:
    """The cache key of one adapter's prediction for one flow and its prompts.

    ``sources``: the digests of the flows the prompts take support slices
    from (``alpnet-protocol``), whose frames the adapter sees too.
    """
    view = {"dataset": flow.dataset, "id": flow.id, "kind": flow.kind,
            "spacing": list(flow.spacing) if flow.spacing else None,
            "case_ids": list(flow.case_ids), "geometry": dict(flow.geometry),
            "frames_sha256": frames_sha256}
    key = {"adapter": identity.digest, "flow": view, "prompts": prompt_content(rows)}
    if sources:
        key["sources"] = dict(sources)
    return sha256_text(canonical(key))


_SOURCE_DIGESTS: dict[str, str] = {}


def source_digest(module_name: str) -> str:
    """sha256 of the source files of the top-level package (or module) of ``module_name``.

    Any edit of an adapter package's code changes the key of all its adapters'
    entries: a fixed bug never serves a stale prediction.
    """
    top = module_name.split(".")[0]
    if top in _SOURCE_DIGESTS:
        return _SOURCE_DIGESTS[top]
    module = sys.modules.get(top)
    digest = hashlib.sha256()
    files: list[tuple[str, Path]] = []
    for folder in getattr(module, "__path__", []):
        files.extend((p.relative_to(folder).as_posix(), p) for p in Path(folder).rglob("*.py"))
    if not files and getattr(module, "__file__", None):
        files = [(Path(module.__file__).name, Path(module.__file__))]
    for name, path in sorted(files):
        digest.update(f"|{name}|".encode())
        digest.update(path.read_bytes())
    _SOURCE_DIGESTS[top] = digest.hexdigest()
    return _SOURCE_DIGESTS[top]


#: The modules whose code a unit's scored rows depend on (beyond the prediction).
SCORING_MODULES = ("bench/metrics.py", "bench/surface_dice.py", "bench/scoring.py",
                   "bench/official_metrics.py", "bench/prompts/scope.py", "bench/frames.py")
_SCORING_CODE: list[str] = []


def scoring_code_digest() -> str:
    """sha256 of the source of :data:`SCORING_MODULES` (read once per process)."""
    if not _SCORING_CODE:
        root = Path(__file__).resolve().parents[1]
        digest = hashlib.sha256()
        for name in SCORING_MODULES:
            digest.update(f"|{name}|".encode())
            digest.update((root / name).read_bytes())
        _SCORING_CODE.append(digest.hexdigest())
    return _SCORING_CODE[0]


def score_key(prediction: str, scoring: Mapping[str, Any]) -> str:
    """The key of a cache hit's scored rows: its prediction key plus all scoring reads.

    Parameters
    ----------
    prediction : str
        :func:`prediction_key` of the unit (adapter, flow frames, prompt content).
    scoring : mapping
        Everything else the rows depend on: the ground truth's masks digest, the
        flow's cases and targets, the metric list, empty policy, NSD tolerance,
        ``score_prompted``, protocol and its parameters, the ledger row hashes and
        the row label. :func:`scoring_code_digest` is added here.
    """
    return sha256_text(canonical({"prediction": prediction, "scoring": dict(scoring),
                                  "code": scoring_code_digest(),
                                  "cache_version": CACHE_VERSION}))


_ROW_VALUES = (str, float, int, bool, type(None))


@dataclass(frozen=True)
class CacheInfo:
    folder: Path
    entries: int
    bytes: int
    oldest: float | None
    newest: float | None


class PredictionCache:
    """Predictions on disk by key, under ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / "predictions" / key[:2] / f"{key}.npz"

    def get(self, key: str) -> Prediction | None:
        """The stored prediction, or None (absent or unreadable: then recomputed)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(data["meta"].tobytes().decode())
                masks = {target: _unpack(data[f"m{index}"], meta["shapes"][index])
                         for index, target in enumerate(meta["targets"])}
        except (OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError):
            # What a truncated, damaged or foreign entry raises (np.load, json, a missing
            # array or field, a wrong size): the prediction is computed again.
            return None
        try:
            os.utime(path)
        except OSError:
            pass
        return Prediction(masks=masks, scores=meta["scores"])

    def put(self, key: str, prediction: Prediction, meta: Mapping[str, Any] | None = None) -> Path:
        """Store ``prediction`` (masks as booleans) atomically under ``key``."""
        targets = list(prediction.masks)
        arrays: dict[str, np.ndarray] = {}
        shapes = []
        for index, target in enumerate(targets):
            # Each mask packed on its own, one at a time: a long flow never holds
            # all its masks unpacked.
            masks = prediction.masks[target]
            packed = masks if isinstance(masks, PackedMasks) else PackedMasks(masks)
            shapes.append([list(shape) for shape in packed.shapes])
            arrays[f"m{index}"] = (np.concatenate([packed.bits(i) for i in range(len(packed))])
                                   if len(packed) else np.zeros(0, dtype=np.uint8))
        record = {"targets": targets, "shapes": shapes, "scores": prediction.scores,
                  "created": time.time(), "version": CACHE_VERSION, **(meta or {})}
        arrays["meta"] = np.frombuffer(canonical(record).encode(), dtype=np.uint8)
        path = self.path(key)
        with atomic_path(path) as temp:
            np.savez_compressed(temp, **arrays)
        return path

    def rows_path(self, key: str, rows_key: str) -> Path:
        """Where the scored rows ``rows_key`` of the prediction ``key`` live (beside it)."""
        return self.path(key).with_name(f"{key}-rows-{rows_key}.json")

    def get_rows(self, key: str, rows_key: str) -> list[dict[str, Any]] | None:
        """The stored scored rows, or None (absent or unreadable: then scored again)."""
        try:
            rows = json.loads(self.rows_path(key, rows_key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            return None
        return rows

    def put_rows(self, key: str, rows_key: str, rows: Sequence[Mapping[str, Any]]) -> bool:
        """Store scored rows atomically; False (nothing stored) when a value is not
        plain JSON (str, float, int, bool, None) and so might not come back the same."""
        if not all(isinstance(v, _ROW_VALUES) for row in rows for v in row.values()):
            return False
        # Not canonical(): the rows' key order is the tables' column order.
        text = json.dumps([dict(row) for row in rows], allow_nan=True)
        with atomic_path(self.rows_path(key, rows_key)) as temp:
            temp.write_text(text, encoding="utf-8")
        return True

    def entries(self) -> list[Path]:
        folder = self.root / "predictions"
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.glob("*/*.npz") if not p.name.startswith(PARTIAL_MARK))

    def info(self) -> CacheInfo:
        """Number of entries, their total size and the oldest/newest use time."""
        stats = [p.stat() for p in self.entries()]
        times = [s.st_mtime for s in stats]
        return CacheInfo(self.root, len(stats), sum(s.st_size for s in stats),
                         min(times) if times else None, max(times) if times else None)

    def prune(self, older_than_days: float | None = None) -> tuple[int, int]:
        """Delete entries not used for ``older_than_days`` days (all when None).

        Returns
        -------
        (int, int)
            Entries removed and bytes freed.

        Raises
        ------
        ConfigError
            ``older_than_days`` is negative or NaN (checked before anything is deleted).
        """
        if older_than_days is not None and not older_than_days >= 0:  # NaN fails too
            raise ConfigError(f"--older-than: must not be negative (a number of days >= 0), "
                              f"got {older_than_days:g}")
        cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
        removed = freed = 0
        for path in self.entries():
            stat = path.stat()
            if cutoff is None or stat.st_mtime < cutoff:
                path.unlink()
                removed += 1
                freed += stat.st_size
                for rows in path.parent.glob(f"{path.stem}-rows-*.json"):
                    rows.unlink()  # scored rows of a removed prediction go with it
        # the demo generator's arrays (bench.readers.demo.store): not counted as entries
        for stored in (self.root / "demo-flows").glob("*/*.npz"):
            if cutoff is None or stored.stat().st_mtime < cutoff:
                stored.unlink()
        for leftover in (self.root / "predictions").glob(f"*/{PARTIAL_MARK}*"):
            if cutoff is None or leftover.stat().st_mtime < cutoff:
                leftover.unlink()
        return removed, freed


def _unpack(packed: np.ndarray, shapes: Sequence[Sequence[int]]) -> PackedMasks:
    sizes = [-(-int(np.prod(shape)) // 8) for shape in shapes]  # bytes per packed mask
    if packed.dtype != np.uint8 or packed.size != sum(sizes):
        raise ValueError(f"{packed.size} packed bytes for masks of {sum(sizes)} bytes")
    bounds = np.cumsum([0, *sizes])
    return PackedMasks.from_bits(
        (packed[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)),
        [tuple(shape) for shape in shapes])


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, set, frozenset)):
        return sorted(value) if isinstance(value, (set, frozenset)) else str(value)
    return repr(value)
