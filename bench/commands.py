"""What each ``bench`` command does (the arguments are parsed by :mod:`bench.cli`).

Each ``cmd_*`` takes the parsed arguments and returns the exit status;
problems the user can fix raise the project's errors (:mod:`bench.errors`),
which :func:`bench.cli.main` shows as one line.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.markup import escape
from rich.table import Table

from bench.console import RunProgress, console, errors, frame_table, print_results
from bench.errors import ConfigError, unknown_name
from bench.rundir import RunDir

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3


def _load_config(args: argparse.Namespace):
    """The configuration of --config (or the one found) with --cards; notices printed."""
    from bench.config import load_config

    config = load_config(args.config, cards=getattr(args, "cards", []))
    for notice in config.notices:
        errors.print(f"notice: {notice}", markup=False, highlight=False, soft_wrap=True)
    return config


def cmd_run(args: argparse.Namespace) -> int:
    from bench.plan import make_plan, parse_roots
    from bench.prompts.interchange import read_prompt_file
    from bench.readers.demo.store import stored_flows
    from bench.report import write_report
    from bench.runner import execute

    config = _load_config(args)
    imported = read_prompt_file(args.prompts) if args.prompts is not None else None
    seeds = args.seeds or ([args.seed] if args.seed is not None else None)
    plan = make_plan(config, args.suite, models=args.models, datasets=args.datasets,
                     seeds=seeds, limit=args.limit, device=args.device,
                     random_weights=args.random_weights,
                     checkpoints=_assignments(args.checkpoint, "--checkpoint"),
                     skip_bad_cases=args.skip_bad_cases, roots=parse_roots(args.root),
                     score_prompted=args.score_prompted, prompt_kind=args.prompt_kind)
    _check_layouts(plan, config.cards)
    run_dir = _run_dir(args, config, plan.suite)
    _check_out_folder(run_dir, "--out" if args.out is not None else
                      f"[defaults] out of {config.path}")
    names = ", ".join(d.name for d in plan.datasets)
    if plan.demo and plan.unconfigured:
        console.print(f"[yellow]No dataset root configured for suite '{plan.suite}': running on "
                      f"the built-in SYNTHETIC demo data ({names}).[/] Set roots under "
                      "\\[datasets] in bench.toml or pass --root NAME=PATH to run the real "
                      "datasets.")
    elif plan.demo:
        console.print(f"[yellow]Running on the built-in SYNTHETIC demo data ({names}).[/]")
    elif plan.unconfigured:
        skipped = ", ".join(plan.unconfigured)
        console.print(f"[yellow]Skipping datasets without a root:[/] {skipped}")
    for model, reason in plan.skipped_models.items():
        console.print(f"[yellow]model {model} skipped:[/] {escape(reason)}", soft_wrap=True)
    console.print(f"suite [bold]{plan.suite}[/], protocol [bold]{plan.protocol}[/], models "
                  f"{', '.join(plan.models)}, seeds {', '.join(map(str, plan.seeds))} -> {run_dir}")
    single = [d.name for d in plan.datasets if d.card.kind == "image-flow"]
    if plan.limit == 1 and plan.protocol == "one-prompt" and single and not plan.score_prompted:
        console.print(f"[yellow]--limit 1 leaves each image flow ({', '.join(single)}) only its "
                      "template, which one-prompt gives rather than scores: nothing of them "
                      "will be scored (use --limit 2 or more)[/]")

    cache = None if args.no_cache else _cache_folder(config)
    started = time.perf_counter()
    with RunProgress() as progress, stored_flows(cache):  # demo arrays: drawn once
        outcome = execute(plan, run_dir, resume=args.resume, progress=progress.notify,
                          record={"argv": sys.argv[1:],
                                  "card_files": _card_sources(config, plan),
                                  **({"prompts_file": imported.record()} if imported else {})},
                          executor=args.executor,
                          workers=args.workers, ray_address=args.ray_address, shard=args.shard,
                          retries=args.retries, cache=cache, prompts=imported)
    # figures drawn before from the same content come from the cache folder too
    report_path = write_report(run_dir, ("md", "html"), figure_cache=cache)
    print_results(run_dir)
    shard = ""
    if outcome.shard is not None:
        shard = (f"shard {outcome.shard[0]}/{outcome.shard[1]}: {outcome.units_total} of "
                 f"{outcome.units_all} units; join the shards with `bench merge`\n")
    console.print(
        f"{shard}{outcome.units_total} units: {outcome.units_run} run, "
        f"{outcome.units_cached} reused from the prediction cache, {outcome.units_reused} reused "
        f"from an earlier attempt, {outcome.units_failed} failed "
        f"({outcome.cases_failed} cases without a score), {outcome.units_retried} retried "
        f"after a worker died, {outcome.read_failures} read failures; "
        f"{time.perf_counter() - started:.1f} s")
    if outcome.recomputed:
        console.print(f"resumed: {outcome.recomputed_text()}", markup=False, soft_wrap=True)
    _print_failure_reasons(run_dir)
    console.print(f"report: {report_path}")
    failed = max(outcome.units_failed, outcome.units_failed_stored)
    if not scored_cases(run_dir):
        errors.print("FAIL: no case was scored, so this run measured nothing (the reason is "
                     "above)", markup=False, soft_wrap=True)
        return EXIT_FAILURES
    return EXIT_FAILURES if failed or outcome.read_failures else EXIT_OK


def scored_cases(run_dir: Path) -> int:
    """How many case scores the aggregates of ``run_dir`` hold (0: nothing was measured)."""
    from bench.aggregate import aggregates_frame

    summary = RunDir(run_dir).read_summary()
    aggregates = aggregates_frame(summary["aggregates"])
    if aggregates.empty or "n" not in aggregates:
        return 0
    return int(aggregates["n"].fillna(0).sum())


def _card_sources(config, plan) -> dict[str, object]:
    """For ``config.json``: the file of each dataset card the run used, and the cards it
    shadowed (the notices naming them)."""
    used = {d.name: str(d.card.path) if d.card.path else None for d in plan.datasets}
    shadowed = [n for n in config.notices if any(f"dataset card {name!r}:" in n for name in used)]
    return {"files": used, "shadowed": shadowed}


def _print_failure_reasons(run_dir: Path, shown: int = 3) -> None:
    """The most frequent reasons units failed, each once with its count (all are in the
    report; tracebacks in ``logs/``), so that a failed run says why on screen."""
    from bench.rundir import RunDir

    units = RunDir(run_dir).read_unit_table()
    if units is None or "message" not in units:
        return
    failed = units[units["status"] == "error"]
    if failed.empty:
        return
    reasons = failed.groupby(failed["message"].fillna("").astype(str), sort=False).agg(
        count=("key", "size"), model=("model", "first"), dataset=("dataset", "first"))
    reasons = reasons.sort_values("count", ascending=False, kind="stable")
    errors.print(f"{len(failed)} unit(s) failed; reasons (tracebacks in {run_dir}/logs/):",
                 markup=False, soft_wrap=True)
    for message, row in reasons.head(shown).iterrows():
        errors.print(f"  {row['count']} x {row['model']} on {row['dataset']}: {message}",
                     markup=False, soft_wrap=True)
    if len(reasons) > shown:
        errors.print(f"  ... and {len(reasons) - shown} other reason(s): see the report",
                     markup=False, soft_wrap=True)


def _check_layouts(plan, cards) -> None:
    """``bench datasets check``'s structural checks before any unit: errors refuse the run
    (one line, exit 2), warnings and notes are printed (the manifest records them)."""
    from bench.derive import check_layouts
    from bench.errors import DataError
    from bench.readers.scorable import one_prompt_problem

    found = check_layouts(plan, cards)
    if plan.protocol == "one-prompt" and not plan.score_prompted:
        for dataset in plan.datasets:
            unscorable = one_prompt_problem(dataset.card, dataset.root)
            if unscorable:
                raise DataError(unscorable.path, f"dataset {dataset.name!r}: "
                                f"{unscorable.message}")
    for name, problems in found.items():
        for problem in problems:
            style = "yellow" if problem.severity == "warning" else "cyan"
            console.print(f"[{style}]{problem.severity}[/]: dataset {name}: "
                          f"{escape(problem.path)}: {escape(problem.message)}",
                          markup=True, highlight=False, soft_wrap=True)


def cmd_merge(args: argparse.Namespace) -> int:
    from bench.report import write_report
    from bench.shard import merge_runs

    outcome = merge_runs(args.out, args.run_dirs)
    for unit, runs in outcome.duplicated:
        console.print(f"[yellow]duplicated[/] {unit.dataset}/{unit.flow} {unit.model} "
                      f"seed {unit.seed} (same results in {', '.join(runs)}; kept once)",
                      markup=True, highlight=False, soft_wrap=True)
    for unit in outcome.missing:
        errors.print(f"missing: {unit.dataset}/{unit.flow} {unit.model} seed {unit.seed} "
                     f"(unit {unit.key})", markup=False, soft_wrap=True)
    report_path = write_report(args.out, ("md", "html"))
    print_results(args.out)
    console.print(f"merged {len(args.run_dirs)} run(s): {outcome.units_merged} of "
                  f"{outcome.units_expected} units, {len(outcome.missing)} missing, "
                  f"{len(outcome.duplicated)} duplicated -> {args.out}")
    console.print(f"report: {report_path}")
    if outcome.missing:
        errors.print(f"FAIL: {len(outcome.missing)} unit(s) missing: run the shards that hold "
                     "them (bench run ... --shard I/N --resume) and merge again")
        return EXIT_FAILURES
    return EXIT_OK


def cmd_cache_info(args: argparse.Namespace) -> int:
    from bench.cache import PredictionCache

    info = PredictionCache(args.dir or _cache_folder(_load_or_none(args.config))).info()
    console.print(f"prediction cache {info.folder}: {info.entries} entries, "
                  f"{info.bytes / 2**20:.1f} MiB")
    if info.entries:
        console.print(f"last used: oldest {_day(info.oldest)}, newest {_day(info.newest)}")
    return EXIT_OK


def cmd_cache_prune(args: argparse.Namespace) -> int:
    from bench.cache import PredictionCache

    cache = PredictionCache(args.dir or _cache_folder(_load_or_none(args.config)))
    removed, freed = cache.prune(None if args.all else args.older_than)
    console.print(f"removed {removed} entries ({freed / 2**20:.1f} MiB) from {cache.root}")
    return EXIT_OK


def _cache_folder(config) -> Path:
    from bench.cache import cache_dir

    if config is None:
        return cache_dir()
    return cache_dir(str(config.defaults.get("cache_dir") or "") or None, config.folder)


def _load_or_none(path: Path | None):
    """The bench.toml in use, or None when there is none (the cache needs no config)."""
    from bench.config import load_config

    try:
        return load_config(path)
    except ConfigError:
        if path is not None:
            raise
        return None


def _day(timestamp: float | None) -> str:
    return "-" if timestamp is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def cmd_list(args: argparse.Namespace) -> int:
    table = Table(show_header=True, header_style="bold")
    if args.what == "models":
        from bench.adapters import registered
        from bench.adapters.base import source

        table.add_column("model")
        table.add_column("source")  # built-in, or the distribution whose entry point adds it
        table.add_column("prompts")
        table.add_column("flows")
        table.add_column("description")
        for name, cls in registered().items():
            if cls.hidden:
                continue
            caps = cls.capabilities
            table.add_row(name, source(name), ",".join(sorted(caps.prompt_kinds)),
                          ",".join(sorted(caps.flow_kinds)), cls.description)
    elif args.what == "protocols":
        from bench.prompts import PROTOCOLS

        table.add_column("protocol")
        table.add_column("description")
        for name, spec in PROTOCOLS.items():
            table.add_row(name, spec.description)
    else:
        config = _load_config(args)
        if args.what == "suites":
            for column in ("suite", "protocol", "datasets", "models", "reproduces"):
                table.add_column(column)
            for suite in config.suites.values():
                table.add_row(suite.name, suite.protocol, ", ".join(suite.datasets),
                              ", ".join(suite.models), suite.reproduces)
        else:
            for column in ("dataset", "kind", "targets", "one-prompt", "root"):
                table.add_column(column)
            for card in config.cards.values():
                root = config.root(card.name)
                where = "built-in (synthetic)" if card.synthetic else (str(root) if root else
                                                                       "not configured")
                table.add_row(card.name, card.kind, ", ".join(card.targets),
                              card.one_prompt_kind, where)
    console.print(table)
    return EXIT_OK


def cmd_datasets_check(args: argparse.Namespace) -> int:
    from bench.readers.check import check_dataset, has_errors
    from bench.readers.scorable import one_prompt_problem

    config = _load_config(args)
    if args.name not in config.cards:
        raise unknown_name("dataset", args.name, config.cards)
    card = config.cards[args.name]
    root = args.root or config.root(card.name)
    if root is None and not card.synthetic:
        # Name the configuration the user is in; the package's own file is never edited.
        where = (f"or create ./bench.toml with [datasets] {card.name} = \"PATH\" (no bench.toml "
                 "was found here or above)" if config.builtin else
                 f"or set [datasets] {card.name} = \"PATH\" in {config.path}")
        raise ConfigError(f"no root for {card.name}: pass --root PATH {where}")
    with console.status(f"checking {card.name} ..."):
        problems = check_dataset(card, root, limit=args.limit, cards=config.cards)
        if not has_errors(problems) and (unscorable := one_prompt_problem(card, root)):
            problems.insert(0, unscorable)
    return _show_problems(card.name, problems)


def _show_problems(name: str, problems) -> int:
    from bench.readers.check import has_errors

    styles = {"error": "red", "warning": "yellow", "info": "cyan"}
    for problem in problems:
        style = styles.get(problem.severity, "")
        console.print(f"[{style}]{problem.severity}[/]: {escape(problem.path)}: "
                      f"{escape(problem.message)}",
                      markup=True, highlight=False, soft_wrap=True)
    counts = {s: sum(p.severity == s for p in problems) for s in ("error", "warning")}
    console.print(f"{name}: {counts['error']} error(s), {counts['warning']} warning(s)")
    return EXIT_FAILURES if has_errors(problems) else EXIT_OK


def cmd_datasets_new(args: argparse.Namespace) -> int:
    from bench.readers import load_card
    from bench.readers.check import check_dataset
    from bench.readers.new_card import (
        card_from_globs,
        card_from_hf,
        card_from_nnunet,
        check_name,
        parse_labels,
        write_card,
    )

    # Everything that can refuse the command is checked before anything is written.
    check_name(args.name)
    folder, searched = _user_cards_folder(args)
    if (folder / f"{args.name}.toml").exists() and not args.force:
        raise ConfigError(f"{folder / f'{args.name}.toml'} exists; pass --force to replace it")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise ConfigError(f"--chunk-size: expected a positive number of images, got "
                          f"{args.chunk_size}")
    labels = parse_labels(args.labels)
    if args.images is not None:
        if args.masks is None:
            raise ConfigError("--images needs --masks GLOB")
        new = card_from_globs(args.name, args.images, args.masks, kind=args.kind,
                              labels=labels, threshold=args.threshold, case_id=args.case_id,
                              group=args.group, chunk_size=args.chunk_size,
                              exclude=args.exclude, missing_mask=args.missing_mask)
    else:
        given = [flag for flag, value in (("--masks", args.masks), ("--kind", args.kind),
                                          ("--case-id", args.case_id), ("--group", args.group),
                                          ("--chunk-size", args.chunk_size),
                                          ("--exclude", args.exclude),
                                          ("--missing-mask", args.missing_mask)) if value]
        if given:
            raise ConfigError(f"{', '.join(given)} go(es) with --images")
        new = (card_from_nnunet(args.name, args.nnunet) if args.nnunet is not None else
               card_from_hf(args.name, args.hf, args.image_column, args.mask_column, labels,
                            args.threshold))
    if args.modality is not None:
        if not args.modality.strip():
            raise ConfigError("--modality: give the modality, e.g. CT")
        new.table["modality"] = args.modality.strip()
    if args.prompt_kind is not None:
        new.table["one_prompt_kind"] = args.prompt_kind
    path = write_card(new.table, folder, force=args.force)
    card = load_card(path)
    options = ", ".join(f"{k} = {v!r}" for k, v in new.table["options"].items())
    console.print(f"wrote {path}: reader {card.reader}, kind {card.kind}, targets "
                  f"{list(card.targets) or 'every label of dataset.json'}, one-prompt kind "
                  f"{card.one_prompt_kind}; {options}", markup=False, soft_wrap=True)
    cards = [] if searched else ["--cards", str(folder)]
    # The printed commands use the configuration this one used.
    bench = ["bench", *(["--config", str(args.config)] if args.config else [])]
    if new.root is None:
        console.print("not checked (hub data is read on first use): "
                      + shlex.join([*bench, "datasets", "check", card.name, *cards]),
                      markup=False, soft_wrap=True)
        return EXIT_OK
    with console.status(f"checking {card.name} ..."):
        problems = check_dataset(card, new.root)
    status = _show_problems(card.name, problems)
    if status != EXIT_OK:
        errors.print(f"{card.name}: fix the errors above (the card is {path}), then run "
                     + shlex.join([*bench, "datasets", "check", card.name, "--root",
                                   str(new.root), *cards]), markup=False, soft_wrap=True)
        return status
    console.print("run it: " + shlex.join([*bench, "run", "--suite", "one-prompt",
                                           "--datasets", card.name, "--root",
                                           f"{card.name}={new.root}", *cards]),
                  markup=False, soft_wrap=True)
    return status


def _user_cards_folder(args: argparse.Namespace) -> tuple[Path, bool]:
    """--out, else datasets/ beside the active bench.toml, else ./cards (built-in config);
    and whether later commands find cards there without --cards (the card search order of
    :func:`bench.config.card_folders`)."""
    from bench.config import card_folders, load_config

    config = load_config(args.config)
    beside = None if config.builtin else config.folder / "datasets"
    folder = args.out or beside or Path.cwd() / "cards"
    searched = {f.resolve() for f in card_folders(config.path)}
    return folder, folder.resolve() in searched or (
        folder.resolve() == (Path.cwd() / "cards").resolve())


def cmd_datasets_options(args: argparse.Namespace) -> int:
    from bench.readers.reference import card_reference

    sys.stdout.write(card_reference(args.reader, markdown=args.markdown))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import parse_formats, write_report

    formats = parse_formats(args.format)
    write_report(args.run_dir, formats, gallery=not args.no_gallery)
    print_results(args.run_dir)
    for fmt in formats:
        console.print(f"report: {RunDir(args.run_dir).report_path(fmt)}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from bench.check import (
        DEFAULT_TOLERANCE,
        check_run,
        findings_table,
        parse_tolerance,
        run_means,
        unscored_reason,
        write_reference,
    )

    if args.write_reference is not None:
        if args.against is not None or args.tolerance is not None:
            raise ConfigError("--write-reference writes a reference; it takes no --against "
                              "or --tolerance")
        path = write_reference(args.run_dir, args.write_reference)
        console.print(f"reference written: {path}")
        return EXIT_OK
    if args.against is None:
        raise ConfigError("bench check needs --against REFERENCE (or --write-reference CSV)")
    tolerance = parse_tolerance(args.tolerance or str(DEFAULT_TOLERANCE))
    findings = check_run(args.run_dir, args.against, tolerance)
    regressions = [f for f in findings if f.is_regression]
    if findings:
        shown = findings_table(findings)
        console.print(frame_table(shown, f"{len(regressions)} regression(s) against "
                                  f"{args.against}"))
    tolerance_text = ", ".join(f"{k}={v:g}" for k, v in tolerance.items())
    unscored = unscored_reason(run_means(args.run_dir))
    if unscored is not None:  # a run that measured nothing never passes
        errors.print(f"FAIL: {args.run_dir} measured nothing: {unscored}", markup=False,
                     soft_wrap=True)
        return EXIT_FAILURES
    if regressions:
        errors.print(f"FAIL: {len(regressions)} regression(s) (tolerance {tolerance_text})")
        for f in regressions:
            errors.print(f"regression: {f.kind} {f.metric} {f.dataset}/{f.target} {f.model}: "
                         f"reference {f.reference:.6g}, now {f.now:.6g}, difference "
                         f"{f.difference:+.6g}" + (f" ({f.detail})" if f.detail else ""),
                         markup=False, soft_wrap=True)
        return EXIT_FAILURES
    console.print(f"OK: every mean within tolerance ({tolerance_text})")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.compare import compare_runs
    from bench.report.tables import format_comparison

    result = compare_runs(args.run_a, args.run_b, model_a=args.model_a, model_b=args.model_b,
                          metrics=args.metrics)
    if args.out is not None:
        from bench import atomic

        with atomic.atomic_path(args.out) as temp:
            result.to_csv(temp, index=False, float_format="%.10g")
    shown = format_comparison(result).drop(columns=["model_a", "model_b", "mean_a", "mean_b"])
    shown = shown.rename(columns={"run_mean_a": "A", "run_mean_b": "B"})
    console.print(frame_table(shown, f"A = {args.run_a}, B = {args.run_b}: paired B - A "
                              "where cases and prompts match"))
    unmatched = int(result["n_prompts_differ"].sum())
    if unmatched:
        console.print(f"[yellow]{unmatched} case scores not paired: their prompts differ "
                      "between the runs[/]")
    return EXIT_OK


def cmd_prompts(args: argparse.Namespace) -> int:
    from bench.prompts import draw_prompts, ledger

    export = args.words[0] == "export" and len(args.words) == 2
    if len(args.words) != 1 and not export:
        raise ConfigError(f"prompts: expected RUN_DIR or 'export RUN_DIR', got "
                          f"{' '.join(args.words)!r}")
    if (args.format or args.out) and not export:
        raise ConfigError("--format and --out belong to `bench prompts export RUN_DIR`")
    if export and (args.format is None or args.out is None):
        raise ConfigError("bench prompts export: --format (one-prompt-json or cvpr25-npz) and "
                          "--out FILE are required")
    args.run_dir = Path(args.words[-1])
    rundir = RunDir(args.run_dir)
    rows = [r for r in rundir.read_ledger()
            if (args.dataset is None or r["dataset"] == args.dataset)
            and (args.flow is None or r["case"] == args.flow)
            and (args.seed is None or r["seed"] == args.seed)]
    if export:
        return _export_prompts(args, rows)
    if args.draw is None:
        console.print(ledger.format_rows(rows), markup=False)
        console.print(f"{len(rows)} prompts")
        _print_templates(rundir, rows)
        return EXIT_OK
    if args.dataset is None or args.flow is None:
        raise ConfigError("--draw needs --dataset and --flow")
    if not rows:
        raise ConfigError(f"no prompts for dataset {args.dataset!r} flow {args.flow!r}")
    flow = rundir.read_flow(args.dataset, args.flow)
    seed = rows[0]["seed"] if args.seed is None else args.seed
    prompts = ledger.rows_to_prompts([r for r in rows if r["seed"] == seed], flow)
    frame = min(p.frame for p in prompts) if args.frame is None else args.frame
    if not 0 <= frame < len(flow.frames):
        raise ConfigError(f"--frame {frame}: flow {args.flow!r} has {len(flow.frames)} frames")
    shown = [p for p in prompts if p.frame == frame]
    path = draw_prompts(np.asarray(flow.frames[frame]), shown, args.draw,
                        title=f"{args.dataset} / {args.flow} / frame {frame} / seed {seed}")
    console.print(f"{len(shown)} prompts drawn on frame {frame}: {path}")
    return EXIT_OK


def _export_prompts(args: argparse.Namespace, rows: list[dict]) -> int:
    """``bench prompts export``: the (filtered) ledger rows in another format."""
    from bench.prompts.interchange import export_prompts

    count = export_prompts(rows, args.format, args.out)
    console.print(f"{count} prompts written to {args.out} ({args.format})", markup=False,
                  soft_wrap=True)
    return EXIT_OK


def _print_templates(rundir: RunDir, rows: list[dict]) -> None:
    """The template (prompted case or slice) of each one-prompt flow of ``rows``."""
    from bench.report.tables import template_table

    manifest = rundir.read_manifest() if rundir.manifest_path.exists() else {}
    table = template_table(rows, manifest)
    if not table.empty:
        console.print(frame_table(table.astype(str), "templates (the prompted frame of each "
                                  "flow, target and seed)"))


def _run_dir(args: argparse.Namespace, config, suite: str) -> Path:
    if args.out is not None:
        return args.out
    base = config.folder / str(config.defaults["out"]) / suite
    if args.resume:
        runs = sorted(p for p in base.glob("*") if RunDir(p).config_path.exists())
        if not runs:
            raise ConfigError(f"--resume: no earlier run of suite {suite!r} under {base}")
        return runs[-1]
    return base / time.strftime("%Y%m%d-%H%M%S")


def _check_out_folder(run_dir: Path, source: str) -> None:
    """Refuse a run folder that cannot be created, before any work; nothing is left behind.

    The missing folders are created and removed again: only trying tells
    (``/proc``, a read-only mount, a file in the way).
    """
    created: list[Path] = []
    try:
        missing = []
        folder = Path(run_dir).absolute()
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            folder.mkdir()
            created.append(folder)
    except OSError as err:
        where = f": {err.filename}" if err.filename else ""
        raise ConfigError(f"cannot create the run folder {run_dir} ({err.strerror or err}"
                          f"{where}); choose another folder ({source})") from None
    finally:
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:  # something else wrote there meanwhile: leave it
                pass


def _assignments(items: Sequence[str], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ConfigError(f"{option}: expected MODEL=PATH, got {item!r}")
        pairs[name.strip()] = value.strip()
    return pairs


