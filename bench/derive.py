"""Stage 2 of a run: read every flow once, derive its prompts, write ledger and manifest.

The prompt ledger is written before any model runs, so every model of a run
sees the same prompts. The manifest lists each flow read with its position in
the reader's stream, its case and patient ids and the digest of its frames,
so that a worker can read the flow again by id and check that it got the same
one; and each unreadable case, recorded as a failure.

Before any flow is read, each dataset's layout is checked as ``bench datasets
check`` checks it (:func:`check_layouts`): an empty or ambiguous layout, or
two cases sharing one mask file, refuses the run; its warnings are recorded
in the manifest. Once read, cases holding another case's pixels are found
from the digests the manifest records: a duplicated case (image and mask)
refuses the run, a copied mask is a warning recorded with the layout's.

A dataset with unreadable cases is refused (recorded in the manifest, no
units) unless the plan accepts the gaps (``skip_bad_cases``): a partial
dataset would silently change ``n`` against published numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from bench.cache import DIGEST_VERSION, flow_frames_digest, masks_digest
from bench.errors import ConfigError, DataError, Problem
from bench.flow_memo import FLOWS
from bench.frames import frame_shapes
from bench.plan import DatasetRun, RunPlan
from bench.progress import DatasetReading, DatasetRefused, DatasetWarnings, Progress
from bench.prompts import alpnet, ledger, make_prompts, resolve_prompt_kind
from bench.prompts.interchange import ImportedPrompts
from bench.readers import Card, Truncation, get_reader, read_flows
from bench.readers.cases import FileReader
from bench.readers.check import CaseContent, duplicate_contents, flow_contents, layout_problems
from bench.rundir import RunDir
from bench.types import Flow
from bench.units import one_line


def prompt_kind_for(plan: RunPlan, dataset: DatasetRun) -> str | None:
    """The prompt kind: the suite's override, else the protocol's rule for this card."""
    return resolve_prompt_kind(plan.protocol, plan.protocol_params, dataset.card.one_prompt_kind)


def derive_ledger(plan: RunPlan, rundir: RunDir, notify: Progress,
                  imported: ImportedPrompts | None = None) -> dict[str, Any]:
    """Write (or, on resume, check) the prompt ledger and write the manifest; return it.

    ``imported`` (``bench run --prompts FILE``) gives the prompts instead of
    the protocol, each checked against its flow.

    Raises
    ------
    RunError
        On resume, when the prompts derived now differ from the stored ledger.
    DataError
        An imported entry that does not fit the run (naming the entry).
    """
    if imported is not None and plan.protocol == alpnet.PROTOCOL:
        raise ConfigError(f"--prompts: {alpnet.PROTOCOL} takes its support slices from the "
                          "support volumes' ground truth; it reads no prompt file")
    rows: list[dict[str, Any]] = []
    manifest: dict[str, Any] = {"digest_version": DIGEST_VERSION, "datasets": {}}
    layouts = check_layouts(plan)
    FLOWS.clear()
    for dataset in plan.datasets:
        notify(DatasetReading(dataset.name))
        entry, dataset_rows, contents = _read_dataset(plan, dataset, imported)
        copies = _copies(dataset, contents)
        if copies:
            notify(DatasetWarnings(dataset.name, tuple(f"{p.path}: {p.message}" for p in copies)))
        entry["layout"] = [asdict(p) for p in [*layouts[dataset.name], *copies]]
        if entry["failures"] and not plan.skip_bad_cases:
            entry["refused"] = True
            entry["flows"] = []
            notify(DatasetRefused(dataset.name, entry["failures"]))
        else:
            rows.extend(dataset_rows)
        manifest["datasets"][dataset.name] = entry
    if imported is not None:
        imported.check_all_used(plan.seeds)
    rundir.keep_ledger(rows)
    rundir.write_manifest(manifest)
    return manifest


def check_layouts(plan: RunPlan, cards: Mapping[str, Card] | None = None
                  ) -> dict[str, list[Problem]]:
    """Each dataset's structural problems (warnings, notes), checked before any reading.

    Parameters
    ----------
    plan : RunPlan
    cards : mapping, optional
        Every known card, to name the dataset whose layout a wrong root holds.

    Raises
    ------
    DataError
        A dataset's first layout error (a root with no case, two files
        matching one case, ...): a run never starts on such a layout, so no
        dataset silently vanishes from its tables.
    """
    found = {}
    for dataset in plan.datasets:
        problems = layout_problems(dataset.card, dataset.root, cards)
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            # one line: the first file's (or root's) errors, and how many others there are
            same = [e.message for e in errors if e.path == errors[0].path]
            rest = len(errors) - len(same)
            more = f" (and {rest} more: see `bench datasets check {dataset.name}`)" if rest \
                else ""
            raise DataError(errors[0].path, f"dataset {dataset.name!r}: {'; '.join(same)}{more}")
        found[dataset.name] = problems
    return found


def _copies(dataset: DatasetRun, contents: list[CaseContent]) -> list[Problem]:
    """Warnings about cases holding another case's pixels (see
    :func:`~bench.readers.check.duplicate_contents`).

    Raises
    ------
    DataError
        A duplicated case (image and mask the same as another case's): it
        would weigh twice in every mean.
    """
    problems = duplicate_contents(contents)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        more = f" (and {len(errors) - 1} more: see `bench datasets check {dataset.name}`)" \
            if len(errors) > 1 else ""
        raise DataError(errors[0].path, f"dataset {dataset.name!r}: {errors[0].message}{more}")
    return problems


def _read_dataset(plan: RunPlan, dataset: DatasetRun, imported: ImportedPrompts | None = None
                  ) -> tuple[dict[str, Any], list[dict[str, Any]], list[CaseContent]]:
    """The manifest entry of ``dataset``, the ledger rows of its flows and its cases'
    content digests (from the digests the entry records: nothing is read again)."""
    entry: dict[str, Any] = {"root": str(dataset.root) if dataset.root else None,
                             "synthetic": dataset.card.synthetic, "flows": [],
                             "failures": [], "refused": False}
    rows: list[dict[str, Any]] = []
    contents: list[CaseContent] = []
    files = isinstance(get_reader(dataset.card.reader), FileReader)
    owners: dict[str, str] = {}
    cuts: list[Truncation] = []
    # alpnet-protocol: a flow's prompts come from another flow, made once all are read
    summaries: list[alpnet.FlowSummary] | None = \
        [] if plan.protocol == alpnet.PROTOCOL else None
    for flow, failure in _stream(dataset, plan.limit, cuts):
        if flow is None:
            entry["failures"].append(failure)
            continue
        _check_case_ids(dataset, flow, owners)
        record = {"id": flow.id, "frames": len(flow.frames),
                  "cases": len(flow.case_ids), "targets": flow.targets,
                  "spacing": list(flow.spacing) if flow.spacing else None,
                  "position": len(entry["flows"]),
                  "case_ids": list(flow.case_ids),
                  "patient_ids": list(flow.patient_ids),
                  "frames_sha256": flow_frames_digest(flow.frames, flow.source_frames),
                  "masks_sha256": masks_digest(flow.masks),
                  "pixels": int(sum(np.prod(shape) for shape in frame_shapes(flow.frames)))}
        entry["flows"].append(record)
        # kept (within a budget) for this process's units, which would read it again
        FLOWS.offer(dataset.name, record["position"], flow, record["frames_sha256"],
                    record["masks_sha256"])
        if files:  # hub and generated data have no files to exclude: not compared
            contents.extend(flow_contents(flow, record["frames_sha256"], record["masks_sha256"]))
        if summaries is not None:
            try:
                summaries.append(alpnet.summarise(flow, plan.params))
            except ValueError as err:
                raise DataError(dataset.root or dataset.name, str(err)) from None
            continue
        for seed in plan.seeds:
            def derived(flow: Flow = flow, seed: int = seed) -> list:
                return make_prompts(flow, plan.protocol, seed=seed,
                                    prompt_kind=prompt_kind_for(plan, dataset),
                                    params=plan.protocol_params)
            prompts = derived() if imported is None else imported.prompts_for(
                dataset.name, flow, seed, plan.protocol, derived)
            rows.extend(ledger.prompt_rows(prompts, dataset=dataset.name, case=flow.id,
                                           protocol=plan.protocol, seed=seed))
    if summaries is not None:
        rows = _alpnet_rows(plan, dataset, summaries)
    # --limit cut this dataset: what was listed and what was read (see bench.readers._limited)
    entry["truncated"] = {**asdict(cuts[0]), "how": cuts[0].describe()} if cuts else None
    return entry, rows, contents


def _alpnet_rows(plan: RunPlan, dataset: DatasetRun,
                 summaries: list[alpnet.FlowSummary]) -> list[dict[str, Any]]:
    """The ledger rows of every query flow of ``dataset`` under alpnet-protocol (one set,
    repeated per seed: the protocol draws nothing)."""
    try:
        contents = alpnet.ledger_rows(summaries, plan.params)
    except ValueError as err:
        if dataset.root is None:  # generated data: the name is the only place to name
            raise DataError(dataset.name, str(err)) from None
        raise DataError(dataset.root, f"dataset {dataset.name!r}: {err}") from None
    return [row for seed in plan.seeds for case, content in sorted(contents.items())
            for row in ledger.support_volume_rows(content, dataset=dataset.name, case=case,
                                                  protocol=plan.protocol, seed=seed)]


def _check_case_ids(dataset: DatasetRun, flow: Flow, owners: dict[str, str]) -> None:
    """Raise DataError when a case id of ``flow`` is already a case of another flow.

    Predictions are stored per dataset and case id (:mod:`bench.store`): two
    flows with one case id would write the same file.
    """
    for case in flow.case_ids:
        if owners.setdefault(case, flow.id) != flow.id:
            raise DataError(dataset.root or dataset.name,
                            f"case id {case!r} is in flows {owners[case]!r} and {flow.id!r} of "
                            f"dataset {dataset.name!r}; their prediction files would collide: "
                            "make the card's case_id distinct (e.g. include {parent})")


def _stream(dataset: DatasetRun, limit: int | None, cuts: list[Truncation] | None = None
            ) -> Iterator[tuple[Flow, None] | tuple[None, dict[str, str]]]:
    """Flows of ``dataset``; each unreadable case also yields (None, failure record).

    Readers skip bad cases and collect their errors, so one bad file costs only
    its own case; a DataError that a reader raises ends this dataset, recorded.
    Any other exception is a bug and ends the run with its traceback.
    """
    errors: list = []
    iterator = read_flows(dataset.card, dataset.root, limit, errors, cuts)
    while True:
        try:
            flow = next(iterator)
        except StopIteration:
            break
        except DataError as err:
            errors.append(err)
            break
        except MemoryError:  # beyond the readers' checks (a volume decoded or reordered)
            errors.append(DataError(dataset.root or dataset.name, "out of memory while "
                                    f"reading dataset {dataset.name!r} (MemoryError); its "
                                    "later cases were not read"))
            break
        while errors:
            yield None, {"error": one_line(errors.pop(0))}
        yield flow, None
    for err in errors:
        yield None, {"error": one_line(err)}
