"""Prompt interchange: a run's prompts written to, and read back from, other tools' formats.

``bench prompts export RUN_DIR --format FORMAT --out FILE`` writes the prompt
ledger of a run; ``bench run --prompts FILE`` reads such a file and uses its
prompts instead of deriving them (:func:`bench.derive.derive_ledger`). An
export followed by an import gives the same ledger, byte for byte, and so the
same scores.

Formats
-------
``one-prompt-json``
    A JSON list with one object per ledger row::

        {"DATASET_NAME": "demo-ct", "SAMPLE_INDEX": "case-7", "PROMPT_TYPE": "box",
         "PROMPT_CONTENT": {"target": "liver", "frame": 12, "points": [], "labels": [],
                            "box": [10, 20, 30, 40], "seed": 0, "protocol": "one-prompt"}}

    ``SAMPLE_INDEX`` is the flow id (the ledger's ``case``), ``PROMPT_TYPE``
    the ledger kind; ``PROMPT_CONTENT`` holds the target, the frame, the
    points ``[[x, y], ...]`` and labels (1 positive, 0 negative), the
    inclusive box ``[x0, y0, x1, y1]`` or null, ``z_range`` for ``box3d``,
    ``mask_sha256`` and ``mask_shape`` for mask kinds (the mask itself is
    re-derived from the ground truth and checked), and optionally ``seed`` and
    ``protocol`` (without them an entry holds for every seed of the run).
``cvpr25-npz``
    The CVPR 2025 challenge's ``boxes`` and ``clicks`` (and ``clicks_order``)
    keys, one list entry per case: per target, the box as the challenge's
    dict (``z_min, z_max, z_mid, z_mid_x_min, z_mid_y_min, z_mid_x_max,
    z_mid_y_max``; a 2D box of frame z has ``z_min = z_max = z_mid = z``) and
    the clicks as ``{"fg": [[z, y, x], ...], "bg": [...]}``; the order of a
    target's clicks is ``clicks_order`` (``"fg"``/``"bg"``). The keys
    ``datasets``, ``cases``, ``seeds``, ``protocols`` and ``targets`` (JSON
    text) say which case and which targets each entry is, and ``bench_kinds``
    (JSON text ``[[target, frame, kind], ...]``) keeps the ledger kinds (without
    it, boxes read as ``box3d`` and clicks as ``point``). The format holds one
    box per target and case and no mask prompt; such ledgers are refused.
    ``boxes``, ``clicks`` and ``clicks_order`` are pickled object arrays, as in
    the challenge; they are read with an unpickler that builds nothing but
    lists, dicts, strings, numbers and NumPy arrays.

Reading checks every entry against the run (one line naming the entry):
unknown datasets, cases, targets, seeds or protocols, frames out of range,
points outside the frame, boxes outside it (``medsam-box`` boxes may reach
``x1 = W``, ``y1 = H``, its upstream bound), wrong shapes and duplicates; and
that every case the protocol would prompt gets a prompt.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.atomic import atomic_path
from bench.errors import ConfigError, DataError
from bench.frames import frame_shapes
from bench.prompts.kinds import mask_sha256
from bench.prompts.ledger import SUPPORT_VOLUME_KIND
from bench.types import PROMPT_KINDS, Flow, Prompt

FORMATS = ("one-prompt-json", "cvpr25-npz")
KEYS = ("DATASET_NAME", "SAMPLE_INDEX", "PROMPT_TYPE", "PROMPT_CONTENT")
MASK_KINDS = ("mask", "empty-mask")
BOX3D = "box3d"
KINDS = (*PROMPT_KINDS, "empty-mask", BOX3D)
BOX_KEYS = ("z_min", "z_max", "z_mid", "z_mid_x_min", "z_mid_y_min", "z_mid_x_max",
            "z_mid_y_max")
# Protocols whose boxes follow an upstream rule that lets the far sides reach W and H.
EDGE_BOX_PROTOCOLS = ("medsam-box",)


@dataclass(frozen=True)
class Entry:
    """One imported prompt (a ledger row without its run fields), with where it came from."""

    where: str
    dataset: str
    case: str
    target: str
    frame: int
    kind: str
    points: tuple[tuple[int, int], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[int, int, int, int] | None = None
    z_range: tuple[int, int] | None = None
    mask_sha256: str | None = None
    mask_shape: tuple[int, int] | None = None
    seed: int | None = None
    protocol: str | None = None


# ---------------------------------------------------------------- export


def export_prompts(rows: Sequence[Mapping[str, Any]], fmt: str,
                   out: str | os.PathLike[str]) -> int:
    """Write ledger ``rows`` to ``out`` in format ``fmt`` (atomically); return the entries.

    Raises
    ------
    ConfigError
        An unknown format, or a ledger the format cannot hold.
    """
    borrowed = next((row for row in rows if row.get("kind") == SUPPORT_VOLUME_KIND), None)
    if borrowed is not None:
        # its frame and mask are another volume's: neither format can say so
        raise ConfigError(f"bench prompts export: the ledger holds {SUPPORT_VOLUME_KIND} rows "
                          f"({borrowed['protocol']}: case {borrowed['case']!r} takes slices of "
                          f"{borrowed['source']!r}), which no export format can hold; share "
                          "prompts.jsonl itself")
    if fmt == "one-prompt-json":
        data = _one_prompt_json(rows)
    elif fmt == "cvpr25-npz":
        data = _cvpr25_npz(rows)
    else:
        raise ConfigError(f"--format: unknown {fmt!r}; known: {', '.join(FORMATS)}")
    with atomic_path(Path(out)) as temp:
        with open(temp, "wb") as handle:
            handle.write(data)
    return len(rows)


def _content(row: Mapping[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = {"target": row["target"], "frame": row["frame"],
                               "points": row["points"], "labels": row["labels"],
                               "box": row["box"], "seed": row["seed"],
                               "protocol": row["protocol"]}
    if row.get("z_range") is not None:
        content["z_range"] = row["z_range"]
    if row["kind"] in MASK_KINDS:
        content["mask_sha256"], content["mask_shape"] = row["mask_sha256"], row["mask_shape"]
    return content


def _one_prompt_json(rows: Sequence[Mapping[str, Any]]) -> bytes:
    entries = [{"DATASET_NAME": row["dataset"], "SAMPLE_INDEX": row["case"],
                "PROMPT_TYPE": row["kind"], "PROMPT_CONTENT": _content(row)} for row in rows]
    return (json.dumps(entries, indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode()


def _cvpr25_npz(rows: Sequence[Mapping[str, Any]]) -> bytes:
    groups: dict[tuple[str, str, int, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["case"], row["seed"], row["protocol"]),
                          []).append(row)
    columns: dict[str, list[Any]] = {name: [] for name in (
        "datasets", "cases", "seeds", "protocols", "targets", "bench_kinds", "boxes",
        "clicks", "clicks_order")}
    for (dataset, case, seed, protocol), group in groups.items():
        targets = sorted({row["target"] for row in group})
        boxes: list[dict[str, int] | None] = [None] * len(targets)
        clicks = [{"fg": [], "bg": []} for _ in targets]
        order: list[list[str]] = [[] for _ in targets]
        for row in group:
            where = f"dataset {dataset!r} case {case!r} target {row['target']!r}"
            if row["kind"] in MASK_KINDS:
                raise ConfigError(f"cvpr25-npz holds no mask prompt ({where} frame "
                                  f"{row['frame']}); use --format one-prompt-json")
            index = targets.index(row["target"])
            if row["box"] is not None:
                if boxes[index] is not None:
                    raise ConfigError(f"cvpr25-npz holds one box per target and case ({where} "
                                      "has several); use --format one-prompt-json")
                low, high = row.get("z_range") or (row["frame"], row["frame"])
                boxes[index] = dict(zip(BOX_KEYS, (int(low), int(high), int(row["frame"]),
                                                   *(int(v) for v in row["box"])), strict=True))
            for (x, y), label in zip(row["points"], row["labels"], strict=True):
                sign = "fg" if label else "bg"
                clicks[index][sign].append([int(row["frame"]), int(y), int(x)])
                order[index].append(sign)
        for name, value in (("datasets", dataset), ("cases", case), ("seeds", seed),
                            ("protocols", protocol), ("targets", json.dumps(targets)),
                            ("bench_kinds", json.dumps([[r["target"], r["frame"], r["kind"]]
                                                        for r in group])),
                            ("boxes", boxes), ("clicks", clicks), ("clicks_order", order)):
            columns[name].append(value)
    arrays = {name: _object_array(values) if name in ("boxes", "clicks", "clicks_order")
              else np.asarray(values, dtype=np.int64 if name == "seeds" else str)
              for name, values in columns.items()}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _object_array(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        array[i] = value
    return array


# ---------------------------------------------------------------- reading


def read_prompt_file(path: str | os.PathLike[str]) -> ImportedPrompts:
    """Read a prompt file (format from its content: a zip archive is cvpr25-npz, else
    one-prompt JSON) and check its structure; the run checks the rest.

    Raises
    ------
    DataError
        Naming the file and the entry: unreadable, not JSON or npz, a
        missing or wrong field, a shape or value of the wrong kind.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(path, f"cannot read the prompt file ({err.strerror})") from None
    fmt = "cvpr25-npz" if data[:2] == b"PK" else "one-prompt-json"
    entries = _read_npz(path, data) if fmt == "cvpr25-npz" else _read_json(path, data)
    seen: dict[tuple[Any, ...], str] = {}
    for entry in entries:
        key = (entry.dataset, entry.case, entry.seed, entry.target, entry.frame)
        if key in seen:
            raise DataError(path, f"{entry.where}: a second prompt for the same dataset, case, "
                            f"seed, target and frame (first: {seen[key]})")
        seen[key] = entry.where
    return ImportedPrompts(path, fmt, hashlib.sha256(data).hexdigest(), entries)


def _fail(path: Path, where: str, problem: str) -> DataError:
    return DataError(path, f"{where}: {problem}")


def _integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _ints(value: Any, size: int | None = None) -> bool:
    return (isinstance(value, (list, tuple)) and all(_integer(v) for v in value)
            and (size is None or len(value) == size))


def _read_json(path: Path, data: bytes) -> list[Entry]:
    try:
        entries = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(path, f"not one-prompt JSON ({err})") from None
    if not isinstance(entries, list):
        raise DataError(path, "one-prompt JSON: expected a list of entries")
    return [_json_entry(path, number, item) for number, item in enumerate(entries)]


def _json_entry(path: Path, number: int, item: Any) -> Entry:
    where = f"entry {number}"
    if not isinstance(item, dict) or set(item) != set(KEYS):
        raise _fail(path, where, f"expected an object with exactly the keys {', '.join(KEYS)}")
    where = f"entry {number} ({item['DATASET_NAME']}/{item['SAMPLE_INDEX']})"
    content = item["PROMPT_CONTENT"]
    if not isinstance(item["DATASET_NAME"], str) or not isinstance(item["SAMPLE_INDEX"], str):
        raise _fail(path, where, "DATASET_NAME and SAMPLE_INDEX must be strings (the dataset "
                    "and the case id)")
    if not isinstance(content, dict):
        raise _fail(path, where, "PROMPT_CONTENT must be an object")
    known = {"target", "frame", "points", "labels", "box", "z_range", "mask_sha256",
             "mask_shape", "seed", "protocol"}
    if set(content) - known:
        raise _fail(path, where, f"PROMPT_CONTENT: unknown keys {sorted(set(content) - known)}")
    return _entry(path, where, item["DATASET_NAME"], item["SAMPLE_INDEX"],
                  item["PROMPT_TYPE"], content)


def _entry(path: Path, where: str, dataset: str, case: str, kind: Any,
           content: Mapping[str, Any]) -> Entry:
    """An :class:`Entry` from a kind and content mapping, its fields' shapes checked."""
    if kind not in KINDS:
        raise _fail(path, where, f"unknown prompt type {kind!r}; known: {', '.join(KINDS)}")
    target, frame = content.get("target"), content.get("frame")
    if not isinstance(target, str) or not _integer(frame) or frame < 0:
        raise _fail(path, where, "needs a target (string) and a frame (integer >= 0)")
    where = f"{where} target {target!r} frame {frame}"
    points, labels = content.get("points", []), content.get("labels", [])
    if not isinstance(points, list) or not all(_ints(p, 2) for p in points):
        raise _fail(path, where, "points must be a list of [x, y] integer pairs")
    if not _ints(labels) or len(labels) != len(points) or any(v not in (0, 1) for v in labels):
        raise _fail(path, where, f"labels must be one 0 or 1 per point ({len(points)} points)")
    box = content.get("box")
    if box is not None and (not _ints(box, 4) or box[0] > box[2] or box[1] > box[3]):
        raise _fail(path, where, f"box must be [x0, y0, x1, y1] integers with x0 <= x1 and "
                    f"y0 <= y1, got {box!r}")
    z_range = content.get("z_range")
    if (kind == BOX3D) != (z_range is not None) or (
            z_range is not None and (not _ints(z_range, 2) or not
                                     z_range[0] <= frame <= z_range[1]) or (
            kind == BOX3D and box is None)):
        raise _fail(path, where, "a box3d prompt (and only it) has a box and a z_range "
                    "[z_min, z_max] holding its frame")
    sha, shape = content.get("mask_sha256"), content.get("mask_shape")
    if (kind in MASK_KINDS) != (sha is not None) or (sha is not None and (
            not isinstance(sha, str) or not _ints(shape, 2))):
        raise _fail(path, where, "a mask prompt (and only it) has mask_sha256 and mask_shape "
                    "[H, W]")
    seed, protocol = content.get("seed"), content.get("protocol")
    if (seed is not None and not _integer(seed)) or (
            protocol is not None and not isinstance(protocol, str)):
        raise _fail(path, where, "seed must be an integer and protocol a string")
    return Entry(where, dataset, case, target, int(frame), kind,
                 tuple((int(x), int(y)) for x, y in points), tuple(int(v) for v in labels),
                 None if box is None else tuple(int(v) for v in box),
                 None if z_range is None else tuple(int(v) for v in z_range), sha,
                 None if shape is None else tuple(int(v) for v in shape),
                 None if seed is None else int(seed), protocol)


class _PlainUnpickler(pickle.Unpickler):
    """Builds lists, dicts, strings, numbers and NumPy arrays and scalars only."""

    ALLOWED = {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
               for name in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to build {module}.{name}")
        return super().find_class(module, name)


def _npz_arrays(path: Path, data: bytes) -> dict[str, Any]:
    arrays: dict[str, Any] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                with archive.open(member) as handle:
                    version = np.lib.format.read_magic(handle)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, fortran, dtype = read_header(handle)
                    if dtype.hasobject:
                        value = _PlainUnpickler(handle).load()
                    else:
                        flat = np.frombuffer(handle.read(), dtype=dtype)
                        value = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
                arrays[member.removesuffix(".npy")] = value
    except (zipfile.BadZipFile, ValueError, pickle.UnpicklingError, EOFError, OSError) as err:
        raise DataError(path, f"not a readable cvpr25-npz file ({err})") from None
    return arrays


def _read_npz(path: Path, data: bytes) -> list[Entry]:
    arrays = _npz_arrays(path, data)
    needed = ("datasets", "cases", "targets", "clicks")
    missing = [name for name in needed if name not in arrays]
    if missing:
        raise DataError(path, f"cvpr25-npz: missing keys {missing} (a file of `bench prompts "
                        "export --format cvpr25-npz` names each entry's dataset, case and "
                        "targets)")
    count = len(arrays["cases"])
    for name in ("datasets", "targets", "clicks", "boxes", "clicks_order", "seeds",
                 "protocols", "bench_kinds"):
        if name in arrays and len(arrays[name]) != count:
            raise DataError(path, f"cvpr25-npz: key {name!r} has {len(arrays[name])} entries, "
                            f"'cases' has {count}")
    entries: list[Entry] = []
    for index in range(count):
        entries.extend(_npz_case(path, arrays, index))
    return entries


def _json_text(path: Path, where: str, text: Any) -> Any:
    try:
        return json.loads(str(text))
    except json.JSONDecodeError:
        raise _fail(path, where, f"not JSON text: {str(text)[:40]!r}") from None


def _npz_case(path: Path, arrays: Mapping[str, Any], index: int) -> list[Entry]:
    dataset, case = str(arrays["datasets"][index]), str(arrays["cases"][index])
    where = f"entry {index} ({dataset}/{case})"
    seed = int(arrays["seeds"][index]) if "seeds" in arrays else None
    protocol = str(arrays["protocols"][index]) if "protocols" in arrays else None
    targets = _json_text(path, where, arrays["targets"][index])
    kinds_given = "bench_kinds" in arrays
    kinds = {(t, f): k for t, f, k in _json_text(path, where, arrays["bench_kinds"][index])} \
        if kinds_given else {}
    boxes = arrays["boxes"][index] if "boxes" in arrays else [None] * len(targets)
    clicks = arrays["clicks"][index]
    orders = arrays["clicks_order"][index] if "clicks_order" in arrays else None
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets) or any(
            not isinstance(v, list) or len(v) != len(targets)
            for v in (boxes, clicks) + (() if orders is None else (orders,))):
        raise _fail(path, where, "targets, boxes, clicks and clicks_order need one item per "
                    "target")
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for target, box, held, order in zip(targets, boxes, clicks,
                                        orders or [None] * len(targets), strict=True):
        label = f"{where} target {target!r}"
        if box is not None:
            _box_row(path, label, rows, target, box, kinds, kinds_given)
        for (z, y, x), positive in _ordered_clicks(path, label, held, order):
            row = rows.setdefault((target, z), {"points": [], "labels": []})
            row.setdefault("kind", kinds.get((target, z), "point"))
            row["points"].append([x, y])
            row["labels"].append(positive)
    entries = []
    for (target, frame), row in sorted(rows.items()):
        content = {"target": target, "frame": frame, "points": row.get("points", []),
                   "labels": row.get("labels", []), "box": row.get("box"),
                   "z_range": row.get("z_range"), "seed": seed, "protocol": protocol}
        entries.append(_entry(path, where, dataset, case, row["kind"], content))
    return entries


def _box_row(path: Path, where: str, rows: dict[tuple[str, int], dict[str, Any]],
             target: str, box: Any, kinds: Mapping[tuple[str, int], str],
             kinds_given: bool) -> None:
    if not isinstance(box, dict) or set(box) != set(BOX_KEYS) or not _ints(
            [box[k] for k in BOX_KEYS]):
        raise _fail(path, where, f"a box must be a dict of the integers {', '.join(BOX_KEYS)}")
    frame = int(box["z_mid"])
    kind = kinds.get((target, frame), BOX3D if not kinds_given else None)
    if kind is None:
        raise _fail(path, where, f"bench_kinds has no kind for the box on frame {frame}")
    row = rows.setdefault((target, frame), {})
    row["kind"] = kind
    row["box"] = [int(box[k]) for k in BOX_KEYS[3:]]
    if kind == BOX3D:
        row["z_range"] = [int(box["z_min"]), int(box["z_max"])]
    elif not box["z_min"] == box["z_max"] == frame:
        raise _fail(path, where, f"a 2D {kind} box needs z_min = z_max = z_mid")


def _ordered_clicks(path: Path, where: str, held: Any,
                    order: Any) -> list[tuple[tuple[int, int, int], int]]:
    """A target's clicks ``((z, y, x), label)`` in click order (``clicks_order``, else fg
    then bg)."""
    if not isinstance(held, dict) or set(held) != {"fg", "bg"} or not all(
            isinstance(held[s], list) and all(_ints(c, 3) for c in held[s]) for s in held):
        raise _fail(path, where, "clicks must be {'fg': [[z, y, x], ...], 'bg': [...]}")
    if order is None:
        order = ["fg"] * len(held["fg"]) + ["bg"] * len(held["bg"])
    order = [sign for sign in order if sign is not None]  # upstream: None = no click that step
    if sorted(order) != sorted(["fg"] * len(held["fg"]) + ["bg"] * len(held["bg"])):
        raise _fail(path, where, "clicks_order does not match the fg and bg clicks")
    queues = {sign: list(held[sign]) for sign in ("fg", "bg")}
    return [(tuple(int(v) for v in queues[sign].pop(0)), int(sign == "fg")) for sign in order]


# ---------------------------------------------------------------- use in a run


@dataclass
class ImportedPrompts:
    """The prompts of a prompt file, handed out flow by flow to the run that imports them."""

    path: Path
    format: str
    sha256: str
    entries: list[Entry]
    used: set[int] = field(default_factory=set)

    def record(self) -> dict[str, str]:
        """What ``config.json`` records of the file."""
        return {"path": str(self.path), "format": self.format, "sha256": self.sha256}

    def prompts_for(self, dataset: str, flow: Flow, seed: int, protocol: str,
                    derived: Callable[[], list[Prompt]]) -> list[Prompt]:
        """The prompts of ``flow`` for ``seed``, each entry checked against the flow.

        ``derived()`` (the protocol's own prompts) is called only when the file
        has none for the flow, to refuse a file that leaves a case unprompted.

        Raises
        ------
        DataError
            Naming the entry: another protocol, an unknown target, a frame out
            of range, coordinates outside the frame, a mask that differs from
            the ground truth; or a case the file leaves without prompts.
        """
        prompts = []
        for number, entry in enumerate(self.entries):
            if entry.dataset != dataset or entry.case != flow.id or entry.seed not in (None,
                                                                                       seed):
                continue
            self.used.add(number)
            prompts.append(self._prompt(entry, flow, protocol))
        if not prompts and derived():
            others = sorted({e.seed for e in self.entries if e.dataset == dataset
                             and e.case == flow.id and e.seed is not None})
            held = f" (it holds this case for seeds {others} only)" if others else ""
            raise DataError(self.path, f"no prompt for dataset {dataset!r} case {flow.id!r} "
                            f"(seed {seed}), which protocol {protocol!r} prompts: the file "
                            f"must hold every case of the run{held}")
        return sorted(prompts, key=lambda p: (p.target, p.frame))

    def check_all_used(self, seeds: Iterable[int]) -> None:
        """Refuse entries no flow of the run took (unknown datasets, cases or seeds)."""
        seeds = set(seeds)
        for number, entry in enumerate(self.entries):
            if number in self.used:
                continue
            if entry.seed is not None and entry.seed not in seeds:
                problem = f"seed {entry.seed} is not a seed of this run ({sorted(seeds)})"
            else:
                problem = (f"unknown case: dataset {entry.dataset!r} case {entry.case!r} is not "
                           "among the cases this run reads (its datasets, --limit)")
            raise DataError(self.path, f"{entry.where}: {problem}")

    def _prompt(self, entry: Entry, flow: Flow, protocol: str) -> Prompt:
        def fail(problem: str) -> DataError:
            return DataError(self.path, f"{entry.where}: {problem}")

        if entry.protocol is not None and entry.protocol != protocol:
            raise fail(f"written for protocol {entry.protocol!r}, this run's is {protocol!r}")
        if entry.target not in flow.masks:
            raise fail(f"case {flow.id!r} has no target {entry.target!r} (targets: "
                       f"{', '.join(flow.targets)})")
        if entry.frame >= len(flow.frames):
            raise fail(f"case {flow.id!r} has {len(flow.frames)} frames")
        height, width = (int(v) for v in frame_shapes(flow.frames)[entry.frame][:2])
        for x, y in entry.points:
            if not (0 <= x < width and 0 <= y < height):
                raise fail(f"point ({x}, {y}) is outside the {width} x {height} frame")
        if entry.box is not None:
            edge = 1 if protocol in EDGE_BOX_PROTOCOLS else 0
            x0, y0, x1, y1 = entry.box
            if x0 < 0 or y0 < 0 or x1 > width - 1 + edge or y1 > height - 1 + edge:
                raise fail(f"box {list(entry.box)} is outside the {width} x {height} frame")
        if entry.z_range is not None and entry.z_range[1] >= len(flow.frames):
            raise fail(f"z_range {list(entry.z_range)}: case {flow.id!r} has "
                       f"{len(flow.frames)} frames")
        mask = None
        if entry.kind in MASK_KINDS:
            truth = np.asarray(flow.masks[entry.target][entry.frame]).astype(bool)
            if entry.mask_shape != truth.shape:
                raise fail(f"mask_shape {list(entry.mask_shape)} is not the frame's "
                           f"{list(truth.shape)}")
            mask = truth.copy() if entry.kind == "mask" else np.zeros_like(truth)
            if mask_sha256(mask) != entry.mask_sha256:
                raise fail(f"the {entry.kind} prompt's sha256 does not match the ground truth")
        extra = {"z_range": entry.z_range} if entry.z_range is not None else {}
        return Prompt(entry.target, entry.frame, entry.kind, points=entry.points,
                      labels=entry.labels, box=entry.box, mask=mask, **extra)
