"""The prompt ledger, ``prompts.jsonl``: one JSON row per prompt, written before any model runs.

Row fields (every row has all of them)::

    version      ledger format version (1)
    dataset      dataset (card) name
    case         flow id
    protocol     protocol name
    seed         seed of the keyed streams
    target       target name
    frame        prompted frame index
    kind         point | point-random | box | box-jitter | mask | empty-mask | support
    points       [[x, y], ...]   (column, row) in the frame's pixels
    labels       [1 | 0, ...]    one per point
    box          [x0, y0, x1, y1] inclusive, or null
    mask_sha256  sha256 of the mask prompt (bench.prompts.kinds.mask_sha256), or null
    mask_shape   [H, W] of the mask prompt, or null
    hash         sha256 of the canonical JSON of the row without "hash"

``box3d`` rows (``cvpr25-interactive``) carry one more field, ``z_range``
``[z_min, z_max]`` (inclusive frames of the 3D box); no other row has it, so
the ledgers of the other protocols are unchanged.

Masks are not stored: :func:`rows_to_prompts` re-derives them from the flow's
ground truth and checks them against ``mask_sha256``.

The file is canonical: keys sorted, separators ``,`` and ``:``, ASCII only, one
row per line, rows sorted by (dataset, case, protocol, seed, target, frame),
so the same prompts give the same bytes whatever order they were made in.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.atomic import atomic_path
from bench.errors import DataError
from bench.prompts.alpnet import KIND as ALPNET_KIND
from bench.prompts.kinds import mask_sha256
from bench.types import Flow, Prompt

LEDGER_VERSION = 1
# "support": a support-set frame's ground-truth mask (one-prompt k_shot); it may share its
# frame with the template prompt (bench.prompts.protocols.SUPPORT_KIND).
MASK_KINDS = ("mask", "empty-mask", "support")
FIELDS = ("box", "case", "dataset", "frame", "hash", "kind", "labels", "mask_sha256",
          "mask_shape", "points", "protocol", "seed", "target", "version")
# The 3D box of cvpr25-interactive: a kind with (and required to have) a z_range.
BOX3D_KIND, Z_RANGE = "box3d", "z_range"
# alpnet-protocol's support slice of another volume: "source" names that volume (the row's
# "frame" and mask are its), "z_range" the slices of this flow it serves.
SUPPORT_VOLUME_KIND, SOURCE = ALPNET_KIND, "source"
EXTRA_FIELDS = {BOX3D_KIND: (Z_RANGE,), SUPPORT_VOLUME_KIND: (SOURCE, Z_RANGE)}

__all__ = ["LEDGER_VERSION", "canonical_json", "dumps_ledger", "format_rows", "group_rows",
           "prompt_rows", "read_ledger", "row_hash", "rows_to_prompts", "sort_key",
           "source_ids", "support_volume_rows", "write_ledger"]


def canonical_json(row: Mapping[str, Any]) -> str:
    """The canonical text of a row: sorted keys, no spaces, ASCII."""
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def row_hash(row: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``row`` without its ``hash`` field."""
    body = {key: value for key, value in row.items() if key != "hash"}
    return hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()


def sort_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The ledger's row order."""
    return (row["dataset"], row["case"], row["protocol"], row["seed"], row["target"],
            row["frame"], row["kind"], row["hash"])


def prompt_rows(prompts: Iterable[Prompt], *, dataset: str, case: str, protocol: str,
                seed: int) -> list[dict[str, Any]]:
    """Ledger rows of one flow's prompts, each with its own ``hash``."""
    rows = []
    for prompt in prompts:
        if len(prompt.points) != len(prompt.labels):
            raise ValueError(f"prompt {prompt.target!r} frame {prompt.frame}: "
                             f"{len(prompt.points)} points but {len(prompt.labels)} labels")
        row: dict[str, Any] = {
            "version": LEDGER_VERSION,
            "dataset": str(dataset),
            "case": str(case),
            "protocol": str(protocol),
            "seed": int(seed),
            "target": str(prompt.target),
            "frame": int(prompt.frame),
            "kind": str(prompt.kind),
            "points": [[int(x), int(y)] for x, y in prompt.points],
            "labels": [int(label) for label in prompt.labels],
            "box": None if prompt.box is None else [int(v) for v in prompt.box],
            "mask_sha256": None,
            "mask_shape": None,
        }
        if prompt.kind in MASK_KINDS:
            if prompt.mask is None:
                raise ValueError(f"{prompt.kind} prompt {prompt.target!r} frame {prompt.frame} "
                                 "has no mask")
            row["mask_sha256"] = mask_sha256(prompt.mask)
            row["mask_shape"] = [int(n) for n in np.shape(prompt.mask)]
        if prompt.kind == BOX3D_KIND:
            if prompt.z_range is None or prompt.box is None:
                raise ValueError(f"box3d prompt {prompt.target!r} frame {prompt.frame} has no "
                                 "z_range or no box")
            row[Z_RANGE] = [int(v) for v in prompt.z_range]
        row["hash"] = row_hash(row)
        rows.append(row)
    return rows


def support_volume_rows(contents: Iterable[Mapping[str, Any]], *, dataset: str, case: str,
                        protocol: str, seed: int) -> list[dict[str, Any]]:
    """Ledger rows of ``alpnet-protocol`` support slices (:func:`bench.prompts.alpnet.ledger_rows`).

    Their masks are in another flow (``source``), so the rows are made from
    the digests taken when that flow was read, not from :class:`Prompt` objects.
    """
    rows = []
    for content in contents:
        row: dict[str, Any] = {
            "version": LEDGER_VERSION, "dataset": str(dataset), "case": str(case),
            "protocol": str(protocol), "seed": int(seed), "target": str(content["target"]),
            "frame": int(content["frame"]), "kind": SUPPORT_VOLUME_KIND, "points": [],
            "labels": [], "box": None, "mask_sha256": str(content["mask_sha256"]),
            "mask_shape": [int(n) for n in content["mask_shape"]],
            SOURCE: str(content["source"]), Z_RANGE: [int(v) for v in content["z_range"]]}
        row["hash"] = row_hash(row)
        rows.append(row)
    return rows


def source_ids(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The flows whose frames the rows take (``support-volume`` sources), sorted."""
    return sorted({str(row[SOURCE]) for row in rows if row.get("kind") == SUPPORT_VOLUME_KIND})


def dumps_ledger(rows: Iterable[Mapping[str, Any]], where: str = "ledger") -> bytes:
    """The canonical bytes of a ledger: rows checked, sorted, one JSON object per line.

    Raises
    ------
    ValueError
        If a row lacks a field, its hash does not match, or two rows are for
        the same (dataset, case, protocol, seed, target, frame).
    """
    ordered = sorted((dict(row) for row in rows), key=sort_key)
    seen: set[tuple[Any, ...]] = set()
    for row in ordered:
        problem = _row_problem(row)
        if problem:
            raise ValueError(f"{where}: row {row.get('case')!r}/{row.get('target')!r}: {problem}")
        # a support set may share its frame with the template; one support slice may serve
        # two alpnet parts (a class on few slices of the support volume)
        identity = (*sort_key(row)[:6], row["kind"] == "support",
                    tuple(row[Z_RANGE]) if row["kind"] == SUPPORT_VOLUME_KIND else ())
        if identity in seen:
            raise ValueError(f"{where}: two prompts for dataset {row['dataset']!r} case "
                             f"{row['case']!r} protocol {row['protocol']!r} seed {row['seed']} "
                             f"target {row['target']!r} frame {row['frame']}")
        seen.add(identity)
    return "".join(canonical_json(row) + "\n" for row in ordered).encode("ascii")


def write_ledger(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write ``rows`` canonically (:func:`dumps_ledger`) and atomically."""
    path = Path(path)
    data = dumps_ledger(rows, str(path))
    with atomic_path(path) as temp:
        with open(temp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())


def read_ledger(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read and verify ``prompts.jsonl`` (every row's fields and hash).

    The one parser of the ledger (a run directory reads it through
    :meth:`bench.rundir.RunDir.read_ledger`).

    Raises
    ------
    DataError
        Naming the file (and line): missing, not ASCII, not JSON, a row with
        missing or unknown fields, another ledger version or a wrong hash.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except FileNotFoundError:
        raise DataError(path, "ledger not found") from None
    except UnicodeDecodeError:
        raise DataError(path, "not an ASCII ledger") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}", f"invalid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}", "expected a JSON object")
        problem = _row_problem(row)
        if problem:
            raise DataError(f"{path}:{number}", problem)
        rows.append(row)
    return rows


def _row_problem(row: Mapping[str, Any]) -> str:
    """What is wrong with a ledger row ('' when nothing)."""
    fields = (*FIELDS, *EXTRA_FIELDS.get(row.get("kind"), ()))
    missing = [name for name in fields if name not in row]
    extra = sorted(set(row) - set(fields))
    if missing or extra:
        return f"missing {missing}" if missing else f"unknown fields {extra}"
    if row["version"] != LEDGER_VERSION:
        return f"ledger version {row['version']!r}, expected {LEDGER_VERSION}"
    if row["hash"] != row_hash(row):
        return "hash mismatch (the row was changed after it was written)"
    return ""


def group_rows(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str, int],
                                                          list[dict[str, Any]]]:
    """Rows grouped by (dataset, case, protocol, seed), in ledger order."""
    groups: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    for row in sorted((dict(r) for r in rows), key=sort_key):
        key = (row["dataset"], row["case"], row["protocol"], row["seed"])
        groups.setdefault(key, []).append(row)
    return groups


def rows_to_prompts(rows: Sequence[Mapping[str, Any]], flow: Flow,
                    sources: Mapping[str, Flow] | None = None) -> list[Prompt]:
    """The prompts of one flow, read back from its ledger rows.

    Mask prompts get their mask from the flow's ground truth (all zeros for
    ``empty-mask``), checked against the recorded sha256. ``support-volume``
    rows get mask and image from their ``source`` flow, one of ``sources``.

    Raises
    ------
    DataError
        If a row belongs to another flow, names an unknown target or frame,
        or the ground truth no longer matches a mask prompt's sha256.
    """
    prompts = []
    for row in sorted(rows, key=sort_key):
        where = f"ledger row {row['dataset']}/{row['case']}/{row['target']}/frame {row['frame']}"
        if row["case"] != flow.id or row["dataset"] != flow.dataset:
            raise DataError(where, f"does not belong to flow {flow.dataset}/{flow.id}")
        if row["target"] not in flow.masks:
            raise DataError(where, f"flow {flow.id!r} has no target {row['target']!r}")
        image, origin = None, flow
        if row["kind"] == SUPPORT_VOLUME_KIND:
            origin = (sources or {}).get(row[SOURCE])
            if origin is None:
                raise DataError(where, f"its support volume {row[SOURCE]!r} was not read")
            where = f"{where} of support volume {origin.id!r}"
            if row["target"] not in origin.masks:
                raise DataError(where, f"flow {origin.id!r} has no target {row['target']!r}")
            low, high = row[Z_RANGE]
            if not 0 <= low <= high < len(flow.frames):
                raise DataError(where, f"z_range {[low, high]} is outside flow {flow.id!r} "
                                f"({len(flow.frames)} frames)")
        if not 0 <= row["frame"] < len(origin.frames):
            raise DataError(where, f"flow {origin.id!r} has {len(origin.frames)} frames")
        mask = None
        if row["kind"] in (*MASK_KINDS, SUPPORT_VOLUME_KIND):
            truth = np.asarray(origin.masks[row["target"]][row["frame"]]).astype(bool)
            mask = truth.copy() if row["kind"] != "empty-mask" else np.zeros_like(truth)
            if mask_sha256(mask) != row["mask_sha256"]:
                raise DataError(where, f"the {row['kind']} prompt's sha256 does not match the "
                                "ground truth read now (the data changed)")
        if row["kind"] == SUPPORT_VOLUME_KIND:
            image = np.array(origin.frames[row["frame"]], copy=True)
        prompts.append(Prompt(
            target=row["target"],
            frame=row["frame"],
            kind=row["kind"],
            points=tuple((int(x), int(y)) for x, y in row["points"]),
            labels=tuple(int(label) for label in row["labels"]),
            box=None if row["box"] is None else tuple(int(v) for v in row["box"]),
            mask=mask,
            z_range=tuple(int(v) for v in row[Z_RANGE]) if Z_RANGE in row else None,
            source=row.get(SOURCE),
            image=image,
        ))
    return prompts


def format_rows(rows: Iterable[Mapping[str, Any]]) -> str:
    """A readable fixed-width table of ledger rows (one line per prompt)."""
    header = ("dataset", "case", "protocol", "seed", "target", "frame", "kind", "prompt", "hash")
    table = [header]
    for row in sorted((dict(r) for r in rows), key=sort_key):
        table.append((row["dataset"], row["case"], row["protocol"], str(row["seed"]),
                      row["target"], str(row["frame"]), row["kind"], _describe(row),
                      row["hash"][:12]))
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
                       .rstrip()
             for line in table]
    return "\n".join(lines) + "\n"


def _describe(row: Mapping[str, Any]) -> str:
    parts = []
    if row["points"]:
        parts.append(" ".join(f"{'+' if label else '-'}({x},{y})"
                              for (x, y), label in zip(row["points"], row["labels"], strict=True)))
    if row["box"] is not None:
        parts.append("box[{},{},{},{}]".format(*row["box"]))
    if row.get(SOURCE) is not None:
        parts.append(f"from {row[SOURCE]} for")
    if row.get(Z_RANGE) is not None:
        parts.append("z[{},{}]".format(*row[Z_RANGE]))
    if row["mask_sha256"] is not None:
        height, width = row["mask_shape"]
        parts.append(f"mask {height}x{width} sha256:{row['mask_sha256'][:12]}")
    return " ".join(parts) or "-"
