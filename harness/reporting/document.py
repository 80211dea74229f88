"""``gridlab report``: a grid's Markdown report with PNG figures, from the database alone.

:func:`write` reads the grid once (:func:`jobs.reports.grid_results`), computes the tables
(:mod:`harness.reporting.tables`), draws the figures (:mod:`harness.reporting.figures`) and writes
``DIR/report.md`` and ``DIR/figures/*.png``; it hands back the tables so the command prints them
too (:func:`terminal_tables`). Nothing is read from run folders.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from db import stats
from harness.reporting import arms, figures, tables
from harness.reporting.tables import TextTable
from jobs import reports

#: The curves drawn, one figure each (those the grid logged): the seeds' plots.
CURVES = ("loss", "val_loss", "grad_norm", "token_accuracy")
#: Per-layer normalised attention entropy, as harness.training.diagnostics.row_metrics logs it.
ENTROPY = "attn_entropy_norm/"
#: What write() reports progress on, in order.
STEPS = ("read the database", "tables", *(f"figure: {c}" for c in CURVES), "figure: entropy", "write report.md")


@dataclass(frozen=True)
class Report:
    path: Path  # report.md
    figures: tuple[Path, ...]
    sections: tuple[tuple[str, tuple[TextTable | str, ...]], ...]  # (heading, tables or lines)


@dataclass(frozen=True)
class Entropy:
    """A heatmap's data: one row per arm (seeds averaged), one column per layer."""

    rows: tuple[str, ...]
    layers: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]
    step: str


def entropy_from_rows(rows: Sequence, cells: Sequence[arms.Cell], lay: arms.Layout) -> Entropy | None:
    """Each arm's normalised attention entropy per layer at each job's last probed step, from the
    database's attention rows (mean over heads, then over seeds); training probes where a job has
    them, else its evaluation probes (fine-tuning jobs probe at evaluation). None without rows."""
    by_job: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_job[r.job_id][r.phase].append(r)
    last: dict[tuple[int, str], float] = {}
    phases: set[str] = set()
    for job_id, per_phase in by_job.items():
        phase = "train" if "train" in per_phase else "eval" if "eval" in per_phase else None
        if phase is None:
            continue
        phases.add(phase)
        for r in per_phase[phase]:
            heads = [v for v in r.entropy_norm if v is not None and math.isfinite(v)]
            if heads:
                last[(job_id, f"{r.stack}.L{r.layer}" if r.stack else f"L{r.layer}")] = sum(heads) / len(heads)
    entropy = _per_arm(last, cells, lay)
    if entropy is None:
        return None
    return Entropy(entropy.rows, entropy.layers, entropy.values,
                   "last probed " + " or ".join(sorted(phases, reverse=True)) + " step")


def _per_arm(last: dict[tuple[int, str], float], cells: Sequence[arms.Cell], lay: arms.Layout) -> Entropy | None:
    """(job, layer) -> value into one row per arm (mean over its seeds), one column per layer."""
    if not last:
        return None
    by_id = {c.id: c for c in cells}
    layers = sorted({layer for _, layer in last})
    per_series: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (job_id, layer), value in last.items():
        if job_id in by_id:
            c = by_id[job_id]
            label = f"{lay.group(c)} | {lay.arm(c)}" if lay.has_norm else lay.group(c)
            per_series[label][layer].append(value)
    if not per_series:
        return None
    names = sorted(per_series)
    values = tuple(tuple(stats.mean_interval(per_series[n].get(layer, [])).mean for layer in layers) for n in names)
    return Entropy(tuple(names), tuple(layers), values, "")


def entropy_from_metrics(curves: Sequence, cells: Sequence[arms.Cell], lay: arms.Layout) -> Entropy | None:
    """Each arm's normalised attention entropy per layer at its last logged step (mean over
    heads, as the metrics table holds it; mean over seeds), or None where no job logged any.
    (Databases from before the attention table, migration 0009, have only these.)"""
    last: dict[tuple[int, str], tuple[int, float]] = {}
    for r in curves:
        if r.name.startswith(ENTROPY) and r.value is not None and math.isfinite(r.value):
            key = (r.job_id, r.name[len(ENTROPY):])
            if key not in last or r.step >= last[key][0]:
                last[key] = (r.step, r.value)
    entropy = _per_arm({k: v for k, (_, v) in last.items()}, cells, lay)
    return None if entropy is None else Entropy(entropy.rows, entropy.layers, entropy.values, "last logged step")


def _curve_panels(results, cells: Sequence[arms.Cell], lay: arms.Layout, metric: str):
    by_id = {c.id: c for c in cells}
    per_job: dict[int, tuple[list[int], list[float | None]]] = {}
    for r in results.curves:
        if r.name == metric and r.job_id in by_id:
            steps, values = per_job.setdefault(r.job_id, ([], []))
            steps.append(r.step)
            values.append(r.value)
    panels: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for job_id, curve in sorted(per_job.items()):
        c = by_id[job_id]
        panels[lay.group(c) if lay.has_norm else "all cells"][lay.series(c)].append(curve)
    return {k: dict(v) for k, v in sorted(panels.items())}


def write(engine, grid: str, out: Path, *, source: str = "", on_step: Callable[[str], None] | None = None) -> Report:
    """Write ``out/report.md`` and ``out/figures/*.png`` for ``grid``; ``on_step(name)`` after
    each of STEPS; ``source``: how the report names the database (a redacted URL)."""
    step = on_step or (lambda _name: None)
    out = Path(out)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    results = reports.grid_results(engine, grid, curves=[*CURVES, ENTROPY])
    step(STEPS[0])
    cells = arms.cells(results.jobs, results.summaries)
    lay = arms.layout(cells)
    key = tables.key_results(cells, lay)
    h2h = tables.head_to_head(results.judgments, cells, lay)
    timing = tables.timing(tables.arm_timings(results.generations, cells), lay)
    quality = tables.quality(cells, lay)
    step(STEPS[1])
    drawn: list[Path] = []
    figure_lines: list[str] = []
    for metric in CURVES:
        panels = _curve_panels(results, cells, lay, metric)
        if panels:
            path = figures.curves_figure(panels, fig_dir / f"{metric}.png", metric=metric)
            drawn.append(path)
            figure_lines.append(f"![{metric}](figures/{path.name})")
        else:
            figure_lines.append(f"No {metric} curve in this database.")
        step(f"figure: {metric}")
    from_rows = entropy_from_rows(results.attention, cells, lay)
    entropy = from_rows or entropy_from_metrics(results.curves, cells, lay)
    if entropy is None:
        entropy_lines = ["no attention data in this database"]
    else:
        path = figures.heatmap_figure(entropy.rows, entropy.layers, entropy.values, fig_dir / "attention_entropy.png",
                                      title=f"normalised attention entropy per layer (mean over heads and seeds), "
                                            f"{entropy.step}")
        drawn.append(path)
        entropy_lines = [f"![attention entropy](figures/{path.name})",
                         ("From the attention rows: each layer's heads averaged" if from_rows else
                          "From the per-layer means over heads in the metrics table")
                         + " (0: all attention on one key, 1: uniform)."]
    step(STEPS[-2])
    counts: dict[str, int] = defaultdict(int)
    for j in results.jobs:
        counts[j.state] += 1
    header = [f"Grid `{grid}`: {len(results.jobs)} jobs ("
              + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f"), {len(cells)} of them cells "
              f"(the rest judge jobs). Read from {source or 'the results database'} on "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; every figure below is computed from it alone.",
              f"Groups by {', '.join(lay.group_factors) or 'nothing'}; arms by {', '.join(lay.arm_factors) or 'cell'}"
              + (f"; baseline {lay.baseline_label}." if lay.baseline_label else ".")]
    sections = (("Summary", tuple(header)), ("Key results", (key,)), ("PairRM head-to-head", (h2h,)),
                ("Inference timing", (timing,)), ("Loss and reference metrics (PEFT)", (quality,)),
                ("Curves", tuple(figure_lines)), ("Attention entropy", tuple(entropy_lines)))
    path = out / "report.md"
    path.write_text(markdown(f"Report: {grid}", sections), encoding="utf-8")
    step(STEPS[-1])
    return Report(path, tuple(drawn), sections)


# --- printing a TextTable: Markdown and the terminal ---------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(t: TextTable) -> str:
    lines = [f"**{t.title}**", "", "| " + " | ".join(map(_md_cell, t.columns)) + " |",
             "|" + "|".join("---" for _ in t.columns) + "|"]
    lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in t.rows]
    lines += [""] + [f"_{n}_" for n in t.notes]
    return "\n".join(lines)


def markdown(title: str, sections) -> str:
    out = [f"# {title}", ""]
    for heading, items in sections:
        out += [f"## {heading}", ""]
        for item in items:
            out += [markdown_table(item) if isinstance(item, TextTable) else str(item), ""]
    return "\n".join(out)


def terminal_tables(t: TextTable) -> list[Table]:
    """A TextTable for the console, one table per value of its first column (the group, long
    text) with that value in the title, so the numbers keep the width of a 100-column terminal;
    the notes are the last table's caption."""
    groups: dict[str, list[tuple[str, ...]]] = {}
    for row in t.rows:
        groups.setdefault(row[0], []).append(row[1:])
    out = []
    for i, (group, rows) in enumerate(groups.items()):
        last = i == len(groups) - 1
        table = Table(title=escape(f"{t.title}\n{t.columns[0]}: {group}"), title_justify="left",
                      caption=escape(" ".join(t.notes)) if last and t.notes else None, caption_justify="left")
        for j, column in enumerate(t.columns[1:]):
            table.add_column(escape(column), justify="left" if j == 0 else "right", overflow="fold")
        for row in rows:
            table.add_row(*(escape(c) for c in row))
        out.append(table)
    return out
