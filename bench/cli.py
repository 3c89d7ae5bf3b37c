"""The ``bench`` command line: its arguments, and how errors end a command.

The commands themselves are in :mod:`bench.commands`, what they show in
:mod:`bench.console`. Exit status (:mod:`bench.commands`): 0 success; 1 the
command completed but found problems (failed units or unreadable cases of a
run, missing units of a merge, regressions of a check, errors of a dataset
check); 2 a usage, configuration, data or run error (the project's own errors,
:class:`bench.errors.BenchError`, shown as one line); 3 a bug (any other
exception: its traceback and a line asking to report it).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from rich.markup import escape

import bench.commands as handlers
from bench.commands import EXIT_BUG, EXIT_USAGE
from bench.console import errors
from bench.errors import BenchError

BUG_LINE = ("this is a bug in medsam2-bench; please report it with the traceback above "
            "(and the command that caused it)")


def main(argv: Sequence[str] | None = None) -> int:
    # sam2 draws a tqdm bar per propagation; the run has its own progress display.
    os.environ.setdefault("TQDM_DISABLE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.handler(args))
    except BenchError as err:
        errors.print(f"[bold red]error:[/] {escape(str(err))}", markup=True, soft_wrap=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        errors.print("interrupted; rerun with --resume to continue")
        return 130
    except Exception:  # a bug: show where, and ask for a report
        traceback.print_exc()
        errors.print(BUG_LINE, markup=False, soft_wrap=True)
        return EXIT_BUG


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench",
        description="Evaluate promptable medical image segmentation (MedSAM-2 and baselines) "
        "under fixed prompt protocols, and report Dice / IoU / HD95 in paper-style tables.",
    )
    parser.add_argument("--config", type=Path, default=None,
                        help="bench.toml to use (default: ./bench.toml or a parent's, else the "
                        "built-in default, whose paths are relative to the working directory)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser(
        "run", help="run a suite: prompts, models, metrics, report",
        description="Run a benchmark suite. Writes a run directory with the resolved config, "
        "the prompt ledger, predictions, the tidy metrics table, summary.json and report.md. "
        "When no dataset root of the suite is configured in bench.toml, the built-in synthetic "
        "demo data stands in (and the report says so).")
    run.add_argument("--suite", required=True, help="suite name from bench.toml (see `bench "
                     "list suites`)")
    run.add_argument("--models", type=_names, default=None,
                     help="comma-separated models instead of the suite's (see `bench list "
                     "models`)")
    run.add_argument("--datasets", type=_names, default=None,
                     help="comma-separated datasets instead of the suite's (one outside the "
                     "suite's list runs too, and the report says so)")
    run.add_argument("--root", action="append", default=[], metavar="NAME=PATH",
                     help="folder of dataset NAME, instead of its root in bench.toml "
                     "(repeatable)")
    run.add_argument("--limit", type=int, default=None,
                     help="at most N cases (images or volumes) per dataset: the first N in the "
                     "reader's order, the same for every seed; the report says so (quick runs)")
    seeds = run.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=None,
                       help="seed of the prompt ledger (default from bench.toml)")
    seeds.add_argument("--seeds", type=_ints, default=None,
                       help="several seeds, e.g. 0,1,2 (each is a separate set of results)")
    run.add_argument("--out", type=Path, default=None,
                     help="run directory (default: OUT/SUITE/TIMESTAMP with OUT from bench.toml)")
    run.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default=None,
                     help="device for models with weights (default: their bench.toml setting, "
                     "else auto)")
    run.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=PATH",
                     help="checkpoint file of a model, e.g. medsam2=MedSAM2_pretrain.pth "
                     "(repeatable; overrides bench.toml and the environment)")
    run.add_argument("--random-weights", action="store_true",
                     help="run weighted models with random initial weights: smoke tests only, "
                     "every output of the run is stamped meaningless")
    run.add_argument("--skip-bad-cases", action="store_true",
                     help="evaluate a dataset even if some of its cases cannot be read (they are "
                     "skipped and listed); by default such a dataset is refused, since its n "
                     "would differ from the published one")
    run.add_argument("--prompt-kind", default=None,
                     choices=["point", "point-random", "box", "box-jitter", "mask"],
                     help="prompt kind of this run, instead of each card's one_prompt_kind "
                     "(one-prompt) or the suite's prompt_kind; recorded in the ledger, "
                     "config.json and the report, and part of the units' keys (so --resume "
                     "never mixes kinds)")
    run.add_argument("--prompts", type=Path, default=None, metavar="FILE",
                     help="use the prompts of FILE (one-prompt JSON or cvpr25 npz, e.g. from "
                     "`bench prompts export`) instead of deriving them; every entry is checked "
                     "against the run's cases (recorded in config.json; resume with the same "
                     "--prompts)")
    run.add_argument("--score-prompted", action="store_true",
                     help="also score the frames whose answer a prompt gave (one-prompt "
                     "templates, mask-prompted frames); they are reported in their own table "
                     "and never enter the aggregates")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in --out (default: the latest run of the suite), "
                     "skipping completed units; failed units, and units whose frames, masks, "
                     "prompts, model (options, checkpoint sha256) or metric code changed, run "
                     "again (the run says how many and why)")
    run.add_argument("--executor", choices=["local", "processes", "ray"], default="local",
                     help="where units run: in this process (default), a pool of --workers "
                     "processes, or Ray (pip install 'medsam2-bench[ray]'); the results do not "
                     "depend on it")
    run.add_argument("--workers", type=int, default=None, metavar="N",
                     help="worker processes (processes) or CPUs of the local Ray instance "
                     "(ray); default: the number of CPUs. Each process builds its own models: "
                     "with GPU models, mind the GPU memory")
    run.add_argument("--ray-address", default=None, metavar="ADDRESS",
                     help="join this Ray cluster (e.g. auto or ray://host:10001) instead of "
                     "starting a local instance; run dir, cache and data must be on a shared "
                     "file system")
    run.add_argument("--shard", default=None, metavar="I/N",
                     help="run only shard I of N (0-based) of the units, chosen by unit key, "
                     "e.g. for a Slurm job array; join the shards with `bench merge`")
    run.add_argument("--retries", type=int, default=2, metavar="N",
                     help="start a unit whose worker process died up to N more times "
                     "(default 2); then it is recorded as failed")
    run.add_argument("--no-cache", action="store_true",
                     help="neither read nor write the prediction cache (default: "
                     "$MEDSAM2_BENCH_CACHE, [defaults] cache_dir, or ~/.cache/medsam2-bench)")
    _add_cards_option(run)
    run.set_defaults(handler=handlers.cmd_run)

    merge = commands.add_parser(
        "merge", help="join shard run directories into one run",
        description="Join the run directories of `bench run --shard I/N` into OUT: checks that "
        "they are shards of one run (same plan, adapters, prompt ledger and manifest), copies "
        "units, predictions and logs, lists missing and duplicated units, then writes "
        "metrics.csv, units.csv and the report. Exit status 1 when units are missing.")
    merge.add_argument("out", type=Path, metavar="OUT", help="new run directory to create")
    merge.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                       help="shard run directories")
    merge.set_defaults(handler=handlers.cmd_merge)

    cache = commands.add_parser(
        "cache", help="the prediction cache: size, pruning",
        description="The content-addressed prediction cache shared by workers and runs "
        "(folder: $MEDSAM2_BENCH_CACHE, else [defaults] cache_dir in bench.toml, else "
        "~/.cache/medsam2-bench).")
    cache_commands = cache.add_subparsers(title="commands", metavar="COMMAND")
    cache_info = cache_commands.add_parser("info", help="entries and size of the cache")
    cache_info.add_argument("--dir", type=Path, default=None, help="cache folder to inspect")
    cache_info.set_defaults(handler=handlers.cmd_cache_info)
    cache_prune = cache_commands.add_parser(
        "prune", help="delete cache entries",
        description="Delete entries not used for --older-than DAYS days, or --all.")
    cache_prune.add_argument("--dir", type=Path, default=None, help="cache folder to prune")
    which = cache_prune.add_mutually_exclusive_group(required=True)
    which.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                       help="entries last used more than DAYS days ago")
    which.add_argument("--all", action="store_true", help="every entry")
    cache_prune.set_defaults(handler=handlers.cmd_cache_prune)

    listing = commands.add_parser("list", help="list suites, datasets, models or protocols",
                                  description="List what bench.toml and the registries offer.")
    listing.add_argument("what", choices=["suites", "datasets", "models", "protocols"])
    _add_cards_option(listing)
    listing.set_defaults(handler=handlers.cmd_list)

    report = commands.add_parser("report", help="(re)write the report of a run directory",
                                 description="Aggregate metrics.csv of RUN_DIR into "
                                 "summary.json, figures and the report: paper-style tables "
                                 "(Table 1, Table 2, Figure 4 layouts), per-dataset tables with "
                                 "counts and 95 % bootstrap intervals, paired comparisons, a "
                                 "qualitative gallery and, for the paper's datasets, the "
                                 "published numbers beside the reproduced ones.")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    report.add_argument("--format", default="md", metavar="FORMATS",
                        help="comma-separated: md (report.md), html (report.html, one "
                        "self-contained file), tex (report.tex, booktabs tables); default md")
    report.add_argument("--no-gallery", action="store_true",
                        help="skip the qualitative gallery (it re-reads the cases it shows)")
    report.set_defaults(handler=handlers.cmd_report)

    check = commands.add_parser(
        "check", help="check a run's means against a committed reference (regressions)",
        description="Compare every dataset, target, model and metric mean of RUN_DIR with a "
        "reference (a CSV written by --write-reference, a summary.json or a run directory). "
        "Direction-aware: a drop in Dice/IoU/NSD or a rise in HD95/ASSD beyond the tolerance, "
        "a missing row and a changed case count are regressions; a run that scored no case "
        "fails. `--against demo` uses the reference of the demo suite shipped with the "
        "package, from any folder. Exit status 0: all within tolerance; 1: regressions "
        "(listed) or nothing scored; 2: usage error or an unusable reference (e.g. no rows).")
    check.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    check.add_argument("--against", type=Path, default=None, metavar="REFERENCE",
                       help="reference CSV, summary.json or run directory, or demo: the "
                       "built-in reference of `bench run --suite demo` (package data)")
    check.add_argument("--tolerance", default=None, metavar="T",
                       help="absolute tolerance on means: a number for every metric, or e.g. "
                       "'0.01,hd95=1.0' (default 1e-6)")
    check.add_argument("--write-reference", type=Path, default=None, metavar="CSV",
                       help="write RUN_DIR's means as a reference CSV instead of checking")
    check.set_defaults(handler=handlers.cmd_check)

    compare = commands.add_parser(
        "compare", help="compare two runs side by side, with paired differences",
        description="Means of RUN_A and RUN_B side by side per dataset, target, model and "
        "metric, and the paired difference B - A over the cases both runs scored under "
        "identical prompts (same ledger rows): mean with a 95 % bootstrap interval over "
        "patients and a Wilcoxon signed-rank p-value.")
    compare.add_argument("run_a", type=Path, metavar="RUN_A")
    compare.add_argument("run_b", type=Path, metavar="RUN_B")
    compare.add_argument("--metrics", type=_names, default=None,
                         help="comma-separated metrics (default: all)")
    compare.add_argument("--model-a", default=None, help="model of RUN_A to compare (with "
                         "--model-b); default: every model present in both runs")
    compare.add_argument("--model-b", default=None, help="model of RUN_B to compare")
    compare.add_argument("--out", type=Path, default=None, metavar="CSV",
                         help="also write the full comparison table as CSV")
    compare.set_defaults(handler=handlers.cmd_compare)

    data = commands.add_parser("datasets", help="dataset tools (check a download)",
                               description="Tools for datasets on disk.")
    data_commands = data.add_subparsers(title="commands", metavar="COMMAND")
    check_data = data_commands.add_parser(
        "check", help="validate a dataset folder against its card",
        description="Read every case of dataset NAME under --root and report, one line per "
        "problem with the file named: missing pairs, image/mask shape or geometry mismatches, "
        "unknown label values, empty masks, unreadable or truncated files, NaNs, implausible "
        "spacing, and the case count against the card's expected count. Exits 1 when an error "
        "is found.")
    check_data.add_argument("name", metavar="NAME", help="dataset card name (bench list datasets)")
    check_data.add_argument("--root", type=Path, default=None,
                            help="dataset folder (default: its root in bench.toml)")
    check_data.add_argument("--limit", type=int, default=None, help="check only N cases")
    _add_cards_option(check_data)
    check_data.set_defaults(handler=handlers.cmd_datasets_check)
    _add_datasets_new(data_commands)
    options = data_commands.add_parser(
        "options", help="every card key and reader option, with types and defaults",
        description="Print the reference of every dataset card key and every reader's "
        "[options], generated from the card and options models (docs/card-options.md is the "
        "same text, from --markdown).")
    options.add_argument("--reader", type=_names, default=None,
                         help="comma-separated readers to show (default: all)")
    options.add_argument("--markdown", action="store_true",
                         help="print the reference as Markdown (the docs page)")
    options.set_defaults(handler=handlers.cmd_datasets_options)

    prompts = commands.add_parser(
        "prompts", help="show a run's prompt ledger; draw prompts over a frame; export them",
        usage="bench prompts RUN_DIR [--dataset D] [--flow F] [--seed S] [--draw PNG] "
        "[--frame N]\n       bench prompts export RUN_DIR --format FORMAT --out FILE",
        description="Print the prompt ledger (prompts.jsonl) of RUN_DIR as a table, optionally "
        "filtered; with --draw, draw the prompts of one flow's frame to a PNG. `bench prompts "
        "export RUN_DIR --format one-prompt-json|cvpr25-npz --out FILE` writes the ledger "
        "(filtered likewise) in another tool's format; `bench run --prompts FILE` reads it "
        "back.")
    prompts.add_argument("words", nargs="+", metavar="RUN_DIR",
                         help="the run directory, or 'export' and the run directory")
    prompts.add_argument("--format", default=None, choices=["one-prompt-json", "cvpr25-npz"],
                         help="export: the file format")
    prompts.add_argument("--out", type=Path, default=None, metavar="FILE",
                         help="export: the file to write")
    prompts.add_argument("--dataset", default=None, help="only this dataset")
    prompts.add_argument("--flow", default=None, help="only this flow (the ledger's case)")
    prompts.add_argument("--seed", type=int, default=None, help="only this seed")
    prompts.add_argument("--draw", type=Path, default=None, metavar="PNG",
                         help="draw the prompts of --dataset/--flow on --frame to this PNG")
    prompts.add_argument("--frame", type=int, default=None,
                         help="frame to draw (default: the first prompted frame)")
    prompts.set_defaults(handler=handlers.cmd_prompts)
    return parser


def _add_datasets_new(commands) -> None:
    new = commands.add_parser(
        "new", help="write a dataset card from image and mask files, then check it",
        description="Write NAME.toml from the files: the kind from the image files (NIfTI, "
        "NRRD, MHA -> volume; PNG, JPEG, BMP, TIFF -> image-flow), the mask encoding from the "
        "values found (--labels when there are several, --threshold for JPEG masks). Each * of "
        "--images is a field (the file name's is the case id); the k-th * of --masks stands "
        "for the k-th of --images, extra * of --images are free. Every image must pair with "
        "one mask of its own and every mask with an image (else nothing is written and the "
        "message names the files and the fix: --exclude, --missing-mask skip). The card goes "
        "to --out (default: datasets/ beside bench.toml, or ./cards with the built-in "
        "configuration; both are searched by the other commands); then `bench datasets check` "
        "runs on it and, when it finds no error, the command to run it is printed.")
    new.add_argument("name", metavar="NAME", help="the new card's name (letters, digits, . _ "
                     "+ -)")
    source = new.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="GLOB", help="image files, e.g. 'skin/img/*.jpg'")
    source.add_argument("--nnunet", type=Path, metavar="FOLDER",
                        help="an nnU-Net raw dataset folder (dataset.json; 2D or 3D)")
    source.add_argument("--hf", metavar="HUB_ID", help="a HuggingFace hub dataset (card only: "
                        "nothing is downloaded or checked)")
    new.add_argument("--masks", metavar="GLOB", help="mask files, e.g. 'skin/mask/*_seg.png'")
    new.add_argument("--kind", choices=["image-flow", "volume"], default=None,
                     help="default from the image files; image-flow with volumes slices them")
    new.add_argument("--labels", default=None, metavar="TARGET=VALUE,...",
                     help="mask value of each target, e.g. cup=1,disc=2")
    new.add_argument("--threshold", type=float, default=None, metavar="N",
                     help="binarise masks: value >= N is the target (JPEG masks)")
    new.add_argument("--case-id", default=None, metavar="PATTERN",
                     help="template of the case id over the fields, e.g. '{dir1}-{id}'")
    new.add_argument("--modality", default=None, metavar="TEXT",
                     help="the imaging modality, e.g. CT, MR, dermoscopy (recorded in the card; "
                     "models with a modality-specific recipe, such as medsam2-ma's CT window, "
                     "refuse volumes without it); nnU-Net: read from dataset.json")
    new.add_argument("--group", default=None, metavar="TEMPLATE|all",
                     help="2D images: the flows, a template over the fields (e.g. '{dir1}') or "
                     "'all' (default: one flow, or one per split folder such as training/test; "
                     "never one per case folder, which one-prompt could not score)")
    new.add_argument("--chunk-size", type=int, default=None, metavar="N",
                     help="2D images: at most N images per flow (a group is split in chunks)")
    new.add_argument("--prompt-kind", default=None,
                     choices=["point", "point-random", "box", "box-jitter", "mask"],
                     help="the one-prompt prompt kind written to the card (one_prompt_kind; "
                     "default point); `bench run --prompt-kind` overrides it for one run")
    new.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                     help="shell-style pattern of files to leave out, relative to the root, "
                     "* crossing folders (card option exclude; repeatable), e.g. masks "
                     "without an image")
    new.add_argument("--missing-mask", choices=["error", "skip"], default=None,
                     help="an image without a mask: 'error' (default, refused) or 'skip' "
                     "(left out; card option missing_mask)")
    new.add_argument("--image-column", default="image", help="--hf: column of the images")
    new.add_argument("--mask-column", default="mask", help="--hf: column of the masks")
    new.add_argument("--out", type=Path, default=None, metavar="DIR",
                     help="folder to write NAME.toml to")
    new.add_argument("--force", action="store_true", help="replace an existing NAME.toml")
    new.set_defaults(handler=handlers.cmd_datasets_new)


def _add_cards_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cards", type=Path, action="append", default=[], metavar="DIR",
                        help="folder of dataset cards, searched before datasets/ beside "
                        "bench.toml and the built-in cards (repeatable)")


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _ints(text: str) -> list[int]:
    try:
        return [int(part) for part in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from None


if __name__ == "__main__":
    sys.exit(main())
