"""Build the report document of a run (the content; renderers format it).

Sections: warnings, protocol, results overview, the paper's layouts (Table 1,
Table 2, Figure 4; only for the paper's datasets and their demo stand-ins),
the user's own datasets under their own heading, the official metrics beside
the harness's, prompted frames (``--score-prompted``), per-dataset tables with
counts, definitions, a per-case distribution figure and the per-case values
(collapsed; all of them in ``per_case.csv``), paired comparisons, spread across
seeds, Dice against clicks, published numbers beside reproduced ones, the
qualitative gallery, definitions and provenance.

(Slightly over 500 lines on purpose: one function per report section, in the
order they appear, reads better than sections spread over several modules;
the tables themselves are built in :mod:`bench.report.tables`.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

import bench.report.figures as figs
import bench.report.kcurve as kcurve
import bench.report.published as published
import bench.report.steps as steps
import bench.report.tables as tables
from bench.aggregate import is_scored, per_case
from bench.compare import compare_models
from bench.errors import ConfigError, DataError
from bench.metrics import METRIC_DEFINITIONS
from bench.prompts import PROTOCOLS
from bench.provenance import describe as describe_code
from bench.readers.cards import Card
from bench.report.document import Bullets, Document, Figure, Heading, Note, Paragraph, Table
from bench.report.gallery import build_gallery
from bench.rundir import RunDir
from bench.store import safe_name

COUNTS_TEXT = ("Mean [95 % bootstrap CI, patients resampled]. `n`: cases scored; `n_excluded`: "
               "prediction and reference both empty (excluded from means); `n_penalised`: exactly "
               "one empty (scored Dice 0, IoU 0, distances = image diagonal; inside `n`); "
               "`n_failed`: no prediction (adapter error); `patients`: independent units "
               "resampled by the bootstrap.")
PER_CASE_FILE = "per_case.csv"
"""The per-case values of a run, in its run directory (:func:`tables.per_case_values`)."""
PER_CASE_TEXT = (f"Per-case values: `{PER_CASE_FILE}` in the run directory, one row per "
                 "dataset, case, target, model and seed with a column per metric (empty where "
                 "there is no value) and the case's status.")
#: The paper's datasets (Table 1, Table 2, Figure 4) and the official code's copies of them:
#: the datasets of the built-in suites that reproduce something. Only these, and the
#: synthetic demo stand-ins, are drawn in the paper's layouts; any other dataset (a card
#: from ``bench datasets new``) gets a section of its own.
PAPER_DATASETS = frozenset({
    "btcv", "refuge2", "brats", "tnmix", "isic", "kits23", "kits23-volumes", "atlas23",
    "tdsc-abus", "wbc",
    "segrap", "crossmoda23", "refuge", "cadvidset", "stare", "toothfairy", "official-btcv",
    "official-refuge"})
#: Metrics with a bar figure (the paper's Table 2 metrics), in this order.
FIGURE_METRICS = ("dice", "iou", "hd95")


@dataclass
class RunContext:
    """Everything about a run the report reads, loaded once from its run directory."""

    rundir: RunDir
    table: pd.DataFrame
    summary: dict[str, Any]
    aggregates: pd.DataFrame
    manifest: dict[str, Any]
    config: dict[str, Any]
    ledger: list[dict[str, Any]]
    cards: Mapping[str, Card]
    per_case: pd.DataFrame | None = None

    def figure(self, path: Path, caption: str) -> Figure:
        """A figure block for a PNG written under the run directory."""
        return Figure(path.relative_to(self.rundir.path), caption)

    @property
    def synthetic_datasets(self) -> list[str]:
        """Datasets the manifest marks as built-in synthetic data."""
        return sorted(name for name, entry in self.manifest.get("datasets", {}).items()
                      if entry.get("synthetic"))

    @property
    def synthetic(self) -> bool:
        """All data synthetic: the plan says demo, or every dataset read was synthetic."""
        names = list(self.manifest.get("datasets", {}))
        return bool(self.summary.get("demo_data")) or (
            bool(names) and len(self.synthetic_datasets) == len(names))

    def is_paper_dataset(self, name: str) -> bool:
        """One of the paper's datasets (:data:`PAPER_DATASETS`) or a synthetic stand-in."""
        card = self.cards.get(name)
        entry = self.manifest.get("datasets", {}).get(name, {})
        return (name in PAPER_DATASETS or bool(card is not None and card.synthetic)
                or bool(entry.get("synthetic")))

    @property
    def figure_metrics(self) -> list[str]:
        """Metrics of :data:`FIGURE_METRICS` with a value in the aggregates."""
        valued = set(self.aggregates.loc[self.aggregates["mean"].notna(), "metric"])
        return [m for m in FIGURE_METRICS if m in valued]

    @property
    def metrics(self) -> list[str]:
        return list(self.summary.get("metric_definitions", {})) or sorted(
            self.table["metric"].unique())


def prompt_kinds(ledger: list[dict[str, Any]], cards: Mapping[str, Card],
                 datasets: list[str]) -> dict[str, str]:
    """The prompt kind of each dataset: the ledger's most common kind, else the card's."""
    counts: dict[str, Counter] = {}
    for row in ledger:
        if row["kind"] not in ("empty-mask", "support"):  # support rows: k_shot's support sets
            counts.setdefault(row["dataset"], Counter())[row["kind"]] += 1
    kinds = {}
    for name in datasets:
        if name in counts:
            # most_common breaks ties by first insertion; sort for a stable choice.
            kinds[name] = sorted(counts[name].items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        elif name in cards and cards[name].one_prompt_kind:
            kinds[name] = cards[name].one_prompt_kind
    return kinds


def distance_unit(entry: Mapping[str, Any] | None) -> str:
    """The unit of distance metrics of a dataset, from the spacing recorded in the manifest."""
    flows = (entry or {}).get("flows", [])
    spacings = [f.get("spacing") for f in flows if "spacing" in f]
    if not flows or len(spacings) < len(flows):
        return "mm where the reader knows the spacing, else pixels"
    if all(s for s in spacings):
        return "mm"
    if not any(s for s in spacings):
        return "pixels (no spacing known)"
    return "mm for flows with a known spacing, pixels for the others"


def build_document(ctx: RunContext, *, gallery: bool = True) -> Document:
    """The report of the run in ``ctx`` as a :class:`Document` (writes figures)."""
    summary, aggregates = ctx.summary, ctx.aggregates
    doc = Document(f"medsam2-bench report: suite {summary['suite']}")
    _warnings(doc, ctx)
    datasets = [d["name"] for d in ctx.config.get("plan", {}).get("datasets", [])] or sorted(
        aggregates["dataset"].unique() if not aggregates.empty else [])
    kinds = prompt_kinds(ctx.ledger, ctx.cards, datasets)
    _protocol(doc, summary, kinds)
    _templates(doc, ctx)
    if aggregates.empty:
        doc.add(Heading("Results"), Paragraph("No results: the run scored no case."))
        _closing(doc, ctx)
        return doc

    names = sorted(aggregates["dataset"].unique())
    own = [name for name in names if not ctx.is_paper_dataset(name)]
    paper = aggregates[~aggregates["dataset"].isin(own)]
    reproduced = _reproduced_layout(ctx) if not paper.empty else None
    if reproduced:  # the suite reproduces one of the paper's layouts: it leads
        _paper_layouts(doc, ctx, kinds, reproduced, paper)
    doc.add(Heading("Results"), Paragraph(COUNTS_TEXT),
            Table(tables.results_table(aggregates, ctx.metrics)))
    if not reproduced and not paper.empty:
        _paper_layouts(doc, ctx, kinds, None, paper)
    if own:
        _own_datasets(doc, ctx, kinds, own)
    _official(doc, ctx)
    _prompted(doc, ctx)
    _per_dataset(doc, ctx, kinds)
    _paired(doc, ctx)
    _namesakes(doc, ctx)
    _seeds(doc, ctx)
    _clicks(doc, ctx)
    steps.add_section(doc, ctx)
    kcurve.add_section(doc, ctx)
    _published(doc, ctx)
    if gallery:
        _gallery(doc, ctx)
    _costs(doc, ctx)
    _closing(doc, ctx)
    return doc


def _table_section(doc: Document, heading: str, text: str, table: pd.DataFrame) -> bool:
    """A section of ``heading``, its explanation and ``table``; nothing when the table is
    empty. Returns whether it was added."""
    if table.empty:
        return False
    doc.add(Heading(heading), Paragraph(text), Table(table))
    return True


def _costs(doc: Document, ctx: RunContext) -> None:
    units = ctx.rundir.read_unit_table()
    if units is None:
        return
    _table_section(doc, "Cost",
                   "Wall time and peak memory per model, from `units.csv` (one row per unit of "
                   "work). Seconds per frame count the units that ran (not cache hits; n/a when "
                   "none did). Peak RSS is the worker process's high-water mark, model weights "
                   "included; cache hits were scored again from stored masks.",
                   tables.cost_strings(tables.unit_costs(units, ctx.manifest)))


def _warnings(doc: Document, ctx: RunContext) -> None:
    summary = ctx.summary
    if ctx.synthetic:
        reason = ("No dataset root is configured for this suite, so it ran on the built-in "
                  "synthetic demo data." if summary.get("unconfigured") else
                  "Every dataset of this run is built-in synthetic demo data.")
        doc.add(Note(f"**Synthetic data.** {reason} These numbers exercise the pipeline; they "
                     "say nothing about performance on real medical images."))
    elif ctx.synthetic_datasets:
        doc.add(Note(f"**Synthetic data** in {', '.join(ctx.synthetic_datasets)}: their numbers "
                     "say nothing about performance on real medical images."))
    stamped = summary.get("random_weights") or [
        name for name, fp in summary.get("adapters", {}).items()
        if isinstance(fp, dict) and fp.get("meaningless")]
    if stamped:
        doc.add(Note(f"**Meaningless results for {', '.join(stamped)}:** randomly initialised "
                     "weights (smoke test only)."))
    for model, reason in summary.get("skipped_models", {}).items():
        doc.add(Note(f"**Model `{model}` of this suite was not run:** {reason}"))
    for name in ctx.config.get("plan", {}).get("extra_datasets", []):
        doc.add(Note(f"**Dataset `{name}` is not part of the suite's published list.**"))
    layout = [f"{name}: {p['path']}: {p['message']}"
              for name, entry in ctx.manifest.get("datasets", {}).items()
              for p in entry.get("layout", []) if p.get("severity") == "warning"]
    if layout:
        doc.add(Note("**Dataset layout warnings** (as `bench datasets check` reports them): "
                     + "; ".join(layout)))
    missing = ctx.rundir.missing_units() if ctx.rundir.manifest_path.exists() else []
    if missing:
        shard = ctx.config.get("shard")
        doc.add(Note(f"**Incomplete run:** {len(missing)} unit(s) of the plan have no result"
                     + (f" (this is shard {shard}: join the shards with `bench merge`)."
                        if shard else "; resume it with `bench run --resume`.")
                     + " The tables cover only the units present."))
    doc.add(*(Note(f"**Truncated by --limit {cut['limit']}:** `{name}` scored the {cut['how']}.")
              for name, e in ctx.manifest.get("datasets", {}).items()
              if (cut := e.get("truncated"))))
    failed = summary.get("failed_units", [])
    read_failures = sum(len(e.get("failures", [])) for e in ctx.manifest.get("datasets",
                                                                              {}).values())
    doc.add(Paragraph(f"Failed units: **{len(failed)}**; unreadable cases: "
                      f"**{read_failures}**."))


def _protocol(doc: Document, summary: dict[str, Any], kinds: dict[str, str]) -> None:
    params = ", ".join(f"{k} = {v!r}" for k, v in sorted(summary["protocol_params"].items()))
    doc.add(Heading("Protocol"),
            Paragraph(f"`{summary['protocol']}` ({params or 'defaults'}); seeds: "
                      f"{', '.join(map(str, summary['seeds']))}."))
    spec = PROTOCOLS.get(summary["protocol"])
    if spec is None:
        doc.add(Paragraph(f"Protocol `{summary['protocol']}` is not in this version's registry: "
                          "no protocol card."))
        return
    used = sorted(set(kinds.values())) or [None]
    for kind in used:
        try:
            card = spec.card(summary["protocol_params"], prompt_kind=kind)
        except ConfigError as err:  # an old run's parameters may no longer validate
            card = f"(protocol card unavailable: {err})"
        if kind is not None and len(used) > 1:
            names = ", ".join(sorted(d for d, k in kinds.items() if k == kind))
            doc.add(Paragraph(f"**{kind} prompts** ({names}): {card}"))
        else:
            doc.add(Paragraph(card))


# The paper's layouts in the order a report shows them, by what the suite reproduces: a
# one-prompt suite (Figure 4) shows no table layouts; other runs show all three.
LAYOUT_ORDER = {"Figure 4": ("Figure 4",), "Table 1": ("Table 1", "Table 2", "Figure 4"),
                "Table 2": ("Table 2", "Table 1", "Figure 4")}
_ALL_LAYOUTS = ("Table 1", "Table 2", "Figure 4")


def _reproduced_layout(ctx: RunContext) -> str | None:
    """The paper layout the run's suite reproduces (``reproduces`` of its plan), if any."""
    reproduces = str(ctx.config.get("plan", {}).get("reproduces", ""))
    return next((name for name in LAYOUT_ORDER if reproduces.startswith(name)), None)


def _templates(doc: Document, ctx: RunContext) -> None:
    _table_section(doc, "Templates",
                   "The prompted frame (template) of each flow, target and seed: the case of "
                   "an image flow, the slice of a volume.",
                   tables.template_table(ctx.ledger, ctx.manifest).astype(str))


def _paper_layouts(doc: Document, ctx: RunContext, kinds: dict[str, str],
                   reproduced: str | None, aggregates: pd.DataFrame) -> None:
    """The paper's layouts of ``aggregates`` (the rows of the paper's datasets)."""
    order = LAYOUT_ORDER.get(reproduced or "", _ALL_LAYOUTS)
    doc.add(Heading(f"Paper layouts ({reproduced} reproduced)" if reproduced
                    else "Paper layouts"))
    for name in order:
        {"Table 1": _table1_layout, "Table 2": _table2_layout,
         "Figure 4": _figure4_layout}[name](doc, ctx, kinds, aggregates)


def _table1_layout(doc: Document, ctx: RunContext, kinds: dict[str, str],
                   aggregates: pd.DataFrame) -> None:
    models = ctx.config.get("plan", {}).get("models")
    # Table 1 is the multi-organ volume layout; image flows appear in the Table 2 layout.
    multi = [d for d, g in aggregates[aggregates["metric"] == "dice"].groupby("dataset")
             if g["target"].nunique() > 1
             and (d not in ctx.cards or ctx.cards[d].kind == "volume")]
    for dataset in multi:
        wide = tables.table1(aggregates, dataset, models=models)
        doc.add(Heading(f"Table 1 layout: {dataset}", 3),
                Table(tables.display_table1(wide),
                      f"Dice per target of {dataset} and their unweighted average (Ave), a row "
                      "per model, as in the paper's Table 1. Ave is '-' when a target has no "
                      "value for the model.", wide=len(wide.columns) > 8))


def _table2_layout(doc: Document, ctx: RunContext, kinds: dict[str, str],
                   aggregates: pd.DataFrame) -> None:
    models = ctx.config.get("plan", {}).get("models")
    t2_metrics = [m for m in ("dice", "iou", "hd95") if m in set(aggregates["metric"])]
    if t2_metrics:
        wide = tables.table2(aggregates, metrics=t2_metrics, models=models)
        pieces = tables.chunk_groups(wide)
        unit = "mm (pixels where the spacing is unknown)"
        if pieces:
            doc.add(Heading("Table 2 layout", 3))
        for i, piece in enumerate(pieces):
            part = f" (part {i + 1} of {len(pieces)})" if len(pieces) > 1 else ""
            doc.add(Table(tables.display_table2(piece),
                          f"Mean Dice and IoU in %, HD95 in {unit}, per dataset (and target), "
                          f"a row per model, as in the paper's Table 2{part}.", wide=True))


def _figure4_layout(doc: Document, ctx: RunContext, kinds: dict[str, str],
                    aggregates: pd.DataFrame) -> None:
    drawn = _metric_bars(ctx, aggregates, kinds, "figure4")
    if "dice" not in drawn:
        return
    doc.add(Heading("Figure 4 layout", 3),
            ctx.figure(drawn.pop("dice"),
                       "Mean Dice (95 % CI whiskers) per dataset and model, a panel per prompt "
                       "kind, as in the paper's Figure 4."))
    for metric, path in drawn.items():
        doc.add(ctx.figure(path, f"Mean {figs.METRIC_NAMES[metric]} in the same layout "
                                 f"(not in the paper){_unit_note(metric)}."))


def _unit_note(metric: str) -> str:
    return "" if metric in figs.FRACTION_METRICS else "; mm, pixels where the spacing is unknown"


def _metric_bars(ctx: RunContext, aggregates: pd.DataFrame, kinds: dict[str, str],
                 prefix: str) -> dict[str, Path]:
    """A bar figure per metric of :attr:`RunContext.figure_metrics` (a panel per prompt
    kind), written as ``figures/{prefix}_{metric}_by_prompt_kind.png``."""
    drawn = {}
    for metric in ctx.figure_metrics:
        data = tables.figure4_data(aggregates, kinds, metric=metric)
        path = figs.figure4(data, ctx.rundir.figures_dir / f"{prefix}_{metric}_by_prompt_kind.png",
                            synthetic=ctx.synthetic, metric=metric)
        if path is not None:
            drawn[metric] = path
    return drawn


def _own_datasets(doc: Document, ctx: RunContext, kinds: dict[str, str],
                  own: list[str]) -> None:
    """The datasets outside the paper's: their own heading, a table and a figure per metric."""
    aggregates = ctx.aggregates[ctx.aggregates["dataset"].isin(own)]
    doc.add(Heading(f"Your datasets: {', '.join(own)}"),
            Paragraph("Datasets outside the paper's (not among its evaluation datasets or "
                      "their demo stand-ins), so drawn in no paper layout: the mean of each "
                      "metric per dataset (and target), a row per model, and a bar figure per "
                      "metric (95 % CI whiskers, a panel per prompt kind). Intervals and counts "
                      "are in the per-dataset results below."))
    metrics = ctx.figure_metrics
    wide = tables.table2(aggregates, metrics=metrics, models=ctx.config.get("plan", {})
                         .get("models")) if metrics else pd.DataFrame()
    pieces = tables.chunk_groups(wide)
    for i, piece in enumerate(pieces):
        part = f" (part {i + 1} of {len(pieces)})" if len(pieces) > 1 else ""
        doc.add(Table(tables.display_table2(piece),
                      f"Mean Dice and IoU in %, HD95 in mm (pixels where the spacing is "
                      f"unknown){part}.", wide=True))
    for metric, path in _metric_bars(ctx, aggregates, kinds, "datasets").items():
        doc.add(ctx.figure(path, f"Mean {figs.METRIC_NAMES[metric]} (95 % CI whiskers) per "
                                 f"dataset and model{_unit_note(metric)}."))


def _official(doc: Document, ctx: RunContext) -> None:
    """The official code's metrics beside the harness's, and which models have none.

    Only rows with an official value: a run (or a model) without one gets no empty row;
    when no model has one, the section only says why.
    """
    missing = tables.unavailable_metrics(ctx.table)
    reasons = Bullets([f"`{r.metric}` for `{r.model}`: {r.reason}"
                       for r in missing.itertuples()])
    if not _table_section(
            doc, "Official metric beside the harness metric",
            "`dice` / `iou`: the harness's metrics on binary masks at the source resolution. "
            "`dice_official` / `iou_official`: the official MedSAM-2 code's own definition, "
            "computed from the model's logits at 1024 px (images: logits > 0.5; volumes: mean "
            "over logit thresholds 0.1/0.3/0.5/0.7/0.9 and over the scored slices; "
            "empty/empty = 1). The difference shows how much the definition alone moves the "
            "number; the two are never mixed in one column. Rows only where an official "
            "value exists.",
            tables.official_side_by_side(ctx.aggregates)):
        if reasons.items:
            doc.add(Heading("Official metric beside the harness metric"),
                    Paragraph("No model of this run produced an official metric value:"),
                    reasons)
        return
    if reasons.items:
        doc.add(Paragraph("Without an official value (no row above):"), reasons)


def _prompted(doc: Document, ctx: RunContext) -> None:
    """Rows of frames whose answer the prompt gave (``--score-prompted``), apart."""
    _table_section(doc, "Prompted frames (given, not predicted)",
                   "Kept with `--score-prompted` and shown only here: these frames received "
                   "their prompt for the target (a one-prompt template image, or a "
                   "ground-truth mask prompt), so their score measures how the model echoes "
                   "its prompt, not segmentation. Image flows: the prompted images themselves; "
                   "volumes: the volume scored with its mask-prompted slices left in. They are "
                   "in no other table or mean of this report.",
                   tables.prompted_table(ctx.table))


def _per_dataset(doc: Document, ctx: RunContext, kinds: dict[str, str]) -> None:
    doc.add(Heading("Per-dataset results"), Paragraph(COUNTS_TEXT), Paragraph(PER_CASE_TEXT))
    values = ctx.per_case if ctx.per_case is not None else tables.per_case_values(
        ctx.table, ctx.metrics)
    seeds = ", ".join(map(str, ctx.summary["seeds"]))
    definitions = ctx.summary.get("metric_definitions", METRIC_DEFINITIONS)
    distance_metrics = [m for m in ctx.metrics if m in ("hd95", "hd95_max", "assd")]
    for dataset in sorted(ctx.aggregates["dataset"].unique()):
        entry = ctx.manifest.get("datasets", {}).get(dataset, {})
        facts = [f"prompt kind: `{kinds.get(dataset, 'unknown')}`",
                 f"protocol: `{ctx.summary['protocol']}`", f"seeds: {seeds}"]
        if entry:
            facts.append(f"flows read: {len(entry.get('flows', []))}, unreadable: "
                         f"{len(entry.get('failures', []))}")
        bullets = []
        for metric in distance_metrics:
            bullets.append(f"`{metric}`: {definitions.get(metric, metric)}; unit here: "
                           f"{distance_unit(entry)}")
        doc.add(Heading(dataset, 3), Paragraph("; ".join(facts) + "."))
        if bullets:
            doc.add(Bullets(bullets))
        doc.add(Table(tables.dataset_table(ctx.aggregates, dataset, ctx.metrics)))
        _case_distribution(doc, ctx, dataset, bool(entry.get("synthetic")))
        shown = tables.display_per_case(values, dataset)
        if not shown.empty:
            doc.add(Table(shown, details=f"Per-case values of {dataset} ({len(shown)} rows)",
                          csv=PER_CASE_FILE))


def _case_distribution(doc: Document, ctx: RunContext, dataset: str, synthetic: bool) -> None:
    """The box (and dots) figure of one dataset's per-case values, all seeds pooled."""
    rows = per_case(ctx.table)
    rows = rows[(rows["dataset"] == dataset) & is_scored(rows)]
    path = figs.case_distribution(
        rows[["target", "model", "metric", "value"]],
        ctx.rundir.figures_dir / f"per_case_{safe_name(dataset)}.png", dataset=dataset,
        metrics=ctx.figure_metrics, synthetic=synthetic or ctx.synthetic)
    if path is not None:
        doc.add(ctx.figure(path, f"Per-case values of {dataset}: a box (quartiles, whiskers "
                                 "to 1.5 IQR) per target and model with every scored case as a "
                                 "dot, all seeds pooled; excluded and failed cases are not "
                                 "drawn."))


def _paired(doc: Document, ctx: RunContext) -> None:
    models = list(dict.fromkeys(ctx.table["model"]))
    if len(models) < 2:
        return
    metric = "dice" if "dice" in ctx.metrics else ctx.metrics[0]
    result = compare_models(ctx.table, models, metrics=[metric], n_resamples=1000)
    if result.empty:
        return
    result = result.sort_values(["dataset", "target"], kind="stable")
    doc.add(Heading("Paired comparisons between models"),
            Paragraph(f"Difference b - a of `{metric}` over the cases both models scored, under "
                      "identical prompts (one ledger per run). 95 % CI: percentile bootstrap "
                      "resampling patients; p: two-sided Wilcoxon signed-rank test on per-patient "
                      "mean "
                      "differences. `n_unpaired`: cases without a score from at least one of "
                      "the two (failed or missing); "
                      "`n_excluded`: both masks empty on either side."),
            Table(tables.format_comparison(result)))


NAMESAKES = ("medsam2", "medsam2-ma")
"""Zhu et al. 2024 (Medical SAM 2) and Ma et al. 2025 (MedSAM2): two models, one name."""


def _namesakes(doc: Document, ctx: RunContext) -> None:
    """The two MedSAM2s side by side, per target, with their cost (when both ran)."""
    if not set(NAMESAKES) <= set(ctx.table["model"]):
        return
    metric = "dice" if "dice" in ctx.metrics else ctx.metrics[0]
    result = compare_models(ctx.table, list(NAMESAKES), metrics=[metric], n_resamples=1000)
    doc.add(Heading("The two MedSAM2s"),
            Paragraph(f"`medsam2` is Medical SAM 2 (Zhu et al. 2024), `medsam2-ma` is MedSAM2 "
                      f"(Ma et al. 2025); b - a of `{metric}` per target as in the paired "
                      "comparisons above, and their cost from `units.csv`."))
    if not result.empty:
        result = result.sort_values(["dataset", "target"], kind="stable")
        doc.add(Table(tables.format_comparison(result)))
    units = ctx.rundir.read_unit_table()
    costs = tables.unit_costs(units, ctx.manifest) if units is not None else pd.DataFrame()
    if not costs.empty:
        doc.add(Table(tables.cost_strings(costs[costs["model"].isin(NAMESAKES)])))


def _seeds(doc: Document, ctx: RunContext) -> None:
    spread = tables.seed_spread(ctx.table)
    if not _table_section(doc, "Spread across seeds",
                          "Mean Dice per seed (each seed draws its own random templates and "
                          "prompts), their standard deviation and range.",
                          tables.as_strings(spread)):
        return
    path = figs.seed_strip(spread, ctx.rundir.figures_dir / "seed_spread.png",
                           synthetic=ctx.synthetic)
    if path is not None:
        doc.add(ctx.figure(path, "Mean Dice of each seed (dots) and their mean (bar)."))


def _clicks(doc: Document, ctx: RunContext) -> None:
    curve = tables.click_curve(ctx.table)
    if curve.empty:
        return
    doc.add(Heading("Dice against the number of clicks"))
    path = figs.click_lines(curve, ctx.rundir.figures_dir / "dice_vs_clicks.png",
                            synthetic=ctx.synthetic)
    if path is not None:
        doc.add(ctx.figure(path, "Mean Dice after each click."))
    doc.add(Table(tables.as_strings(curve)))


def _published(doc: Document, ctx: RunContext) -> None:
    if ctx.synthetic:
        return
    try:
        beside = published.published_beside(ctx.aggregates)
    except DataError as err:  # the published tables are missing or damaged
        doc.add(Heading("Published numbers"),
                Paragraph(f"Published numbers unavailable: {err}"))
        return
    if beside.empty:
        return
    shown = pd.DataFrame({
        "table": beside["table"], "column": beside["column"], "model": beside["model"],
        "dataset/target": beside["dataset"] + "/" + beside["target"],
        "metric": beside["metric"], "printed": beside["printed"],
        "published": [tables.format_number(v, 3) for v in beside["published"]],
        "reproduced [95 % CI]": [tables.format_estimate(r.reproduced, r.ci_low, r.ci_high)
                                 for r in beside.itertuples()],
        "difference": [tables.format_number(v, 3) for v in beside["difference"]],
        "n": beside["n"].astype(str),
    })
    doc.add(Heading("Published numbers beside reproduced ones"),
            Paragraph("The paper's cells (`reports/paper_table*.csv`, as printed; published = "
                      "in harness units: fractions, mm) next to this run's means; difference = "
                      "reproduced - published. Names map as documented in "
                      "`bench/report/published.py`."),
            Table(shown))
    check = published.table1_average_check()
    off = check[check["difference"].abs() > published.AVERAGE_ROUNDING]
    if (beside["table"] == "Table 1").any() and not off.empty:
        doc.add(Paragraph("The paper's printed Table 1 `Ave` is not the mean of its organ "
                          "columns for: " + ", ".join(
                              f"{r.model} (printed {r.printed_ave:.3f}, mean {r.row_mean:.4f})"
                              for r in off.itertuples()) + "."))
    consistency = published.iou_dice_consistency()
    if (beside["table"] == "Table 2").any() and not consistency.empty:
        doc.add(Paragraph(f"{len(consistency)} printed Table 2 IoU values are below the mean "
                          "Dice's lower bound D/(2-D) (Jensen), which per-case means over one "
                          "set of cases cannot produce, e.g. " + ", ".join(
                              f"{r.model} {r.group} (Dice {r.dice:.1f}, IoU {r.iou:.1f} < "
                              f"{r.iou_lower_bound:.1f})"
                              for r in consistency.head(3).itertuples()) + "."))


def _gallery(doc: Document, ctx: RunContext) -> None:
    drawn, notes = build_gallery(ctx.rundir, ctx.table, ctx.ledger, synthetic=ctx.synthetic)
    if not drawn and not notes:
        return
    doc.add(Heading("Qualitative gallery"),
            Paragraph("Best, median and worst case by Dice per model and dataset (first seed): "
                      "ground truth in green, prediction dashed red, prompts in yellow "
                      "(stars: positive clicks, crosses: negative clicks, rectangles: boxes). "
                      "Volumes show the slice with the most ground truth."))
    for dataset, path in drawn:
        doc.add(ctx.figure(path, f"{dataset}: best, median, worst."))
    if notes:
        doc.add(Paragraph("Not drawn:"), Bullets(notes))


def unit_notes(units: pd.DataFrame | None) -> dict[str, str]:
    """Per model, what its adapter chose per unit (``notes`` of ``units.csv``), by dataset.

    E.g. ``medsam2``'s memory: the report says which memory produced each
    dataset's numbers. Empty for models without notes (and for runs written
    before ``units.csv`` had the column).
    """
    if units is None or "notes" not in units.columns:
        return {}
    # An all-empty column reads back as float NaN.
    units = units.assign(notes=[v if isinstance(v, str) else "" for v in units["notes"]])
    text = {}
    for model, rows in units[units["notes"] != ""].groupby("model", sort=True):
        counts = rows.groupby(["notes", "dataset"], sort=True).size()
        parts = [f"{dataset}: {note} ({n} unit{'s' if n != 1 else ''})"
                 for (note, dataset), n in counts.items()]
        text[str(model)] = " Per unit (`notes` in `units.csv`): " + "; ".join(parts) + "."
    return text


def _closing(doc: Document, ctx: RunContext) -> None:
    summary = ctx.summary
    doc.add(Heading("Metric definitions"))
    items = [f"`{name}`: {text}" for name, text in summary.get("metric_definitions", {}).items()]
    policy = summary.get("empty_policy", {})
    items.append(f"Empty masks (policy version {policy.get('version')}): both empty -> "
                 f"{'excluded from means' if policy.get('both_empty') == 'exclude' else 'scored 1'}"
                 "; exactly one empty -> Dice 0, IoU 0, distances = image diagonal in mm.")
    items.append("Confidence intervals: 95 % percentile bootstrap of the mean, patients "
                 "resampled with all their cases, seeded per group.")
    doc.add(Bullets(items))

    failed = summary.get("failed_units", [])
    read_failures = {name: entry["failures"] for name, entry in
                     ctx.manifest.get("datasets", {}).items() if entry.get("failures")}
    if failed or read_failures:
        items = [f"{f['dataset']} / {f['flow']} / {f['model']} / seed {f['seed']}: "
                 f"{f['message']}" for f in failed]
        for name, failures in read_failures.items():
            items += [f"{name} (reading): {f.get('error')}" for f in failures]
        doc.add(Heading("Failures"), Bullets(items))

    doc.add(Heading("Models"))
    per_unit = unit_notes(ctx.rundir.read_unit_table())
    doc.add(Bullets([f"`{name}`: {fp.get('description', '')}".rstrip(": ")
                     + (f" Memory setting: {fp['memory_policy']}." if "memory_policy" in fp
                        else "") + per_unit.get(name, "")
                     for name, fp in summary.get("adapters", {}).items()] or ["(none recorded)"]))
    provenance = summary.get("provenance", {})
    versions = provenance.get("versions", {})
    doc.add(Heading("Provenance"),
            Bullets([describe_code(provenance),
                     "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v)]))
