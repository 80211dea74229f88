"""Tables for the terminal: queue status by state and by grid factor, dispatched workers,
final results, each factor's effect on a final figure (computed by db.stats, as the
dashboard's Factor effects page computes it), and GPU-hours spent and left (computed by
db.costs, as the dashboard's Overview page computes them)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from db import costs, states, stats

# Every text that comes from a grid file or the database (names, values, errors, workers)
# is escaped before it goes into a table: Rich reads "[/bold]" in a cell as markup.

#: Each state's style in the terminal (db.states, as the dashboard's colours are).


def counts_table(counts_by_grid: dict[str, dict[str, int]]) -> Table:
    table = Table(title="Jobs by state", title_justify="left")
    table.add_column("grid")
    for s in states.ALL:
        table.add_column(s, justify="right", style=states.TERMINAL_STYLE[s])
    table.add_column("total", justify="right", style="bold")
    for grid, counts in counts_by_grid.items():
        table.add_row(escape(grid), *(str(counts.get(s, 0)) for s in states.ALL), str(sum(counts.values())))
    return table


#: A factor with more values than this gets a line, not a table, unless asked for by name.
MAX_FACTOR_ROWS = 30


def factor_tables(rows: list[tuple[dict[str, Any], str]], only: list[str] | None = None) -> list[Table | str]:
    """One table per grid factor: each value's jobs by state (a factor with very many values,
    such as 1,000 seeds, gets one line saying how to see it)."""
    by_factor: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for factors, state in rows:
        for name, value in factors.items():
            if only and name not in only:
                continue
            by_factor[name][_fmt(value)][state] += 1
    tables: list[Table | str] = []
    for name, values in by_factor.items():
        if len(values) < 2 and not only:
            continue  # a factor with one value says nothing
        if len(values) > MAX_FACTOR_ROWS and not only:
            tables.append(f"By {escape(name)}: {len(values):,} values, not listed (see them with --by {escape(name)})")
            continue
        table = Table(title=f"By {escape(name)}", title_justify="left")
        table.add_column(escape(name))
        for s in states.ALL:
            table.add_column(s, justify="right", style=states.TERMINAL_STYLE[s])
        for value, counter in values.items():
            table.add_row(escape(value), *(str(counter.get(s, 0) or "") for s in states.ALL))
        tables.append(table)
    return tables


#: Figures `gridlab results` shows when no --metric is given (those a job has).
HEADLINE_METRICS = ("val_loss", "val_perplexity", "trainable_params", "params")


def shown_metrics(rows, metrics: list[str] | None = None) -> tuple[list[str], int]:
    """The figures a results table shows (those named in ``metrics``, else the headline
    ones the rows have), and how many others the rows have."""
    present: list[str] = []
    for row in rows:
        if row.name not in present:
            present.append(row.name)
    if metrics:
        names = [n for n in metrics if n in present]
    else:
        names = [n for n in HEADLINE_METRICS if n in present] or [n for n in present if "/" not in n]
    return names, len(set(present) - set(names))


#: Judge jobs compare other jobs' answers; ``gridlab compare`` shows their verdicts, not ``results``.
JUDGE = "judge"
#: The formats ``gridlab results --format`` prints: a table for people, the rest for programs.
FORMATS = ("table", "csv", "tsv", "json")


@dataclass(frozen=True)
class Results:
    """What ``gridlab results`` shows: per job (judge jobs left out) its factors and final
    figures. ``constant``: the factors every job has with one value (a heading, not
    columns); ``varying``: the other factors, in the grid's order; ``metrics``: the figures
    shown (the named ones, else the headline ones, else every one); ``hidden``: how many
    other figures the jobs have; ``judges``: judge jobs left out."""

    jobs: tuple[int, ...]
    states: dict[int, str]
    factors: dict[int, dict[str, Any]]
    figures: dict[int, dict[str, float | None]]
    constant: dict[str, Any]
    varying: tuple[str, ...]
    metrics: tuple[str, ...]
    hidden: int
    judges: int


def results(rows, metrics: list[str] | None = None, *, every_figure: bool = False) -> Results:
    """:class:`Results` from ``jobs.reports.summaries`` rows. ``every_figure``: without
    ``metrics``, show every figure the jobs have rather than the headline ones."""
    judges = {row.id for row in rows if getattr(row, "experiment", None) == JUDGE}
    rows = [row for row in rows if row.id not in judges]
    figures: dict[int, dict[str, float | None]] = {}
    factors: dict[int, dict[str, Any]] = {}
    states_by_job: dict[int, str] = {}
    for row in rows:
        figures.setdefault(row.id, {})[row.name] = row.value
        factors[row.id] = row.factors
        states_by_job[row.id] = row.state
    if every_figure and not metrics:
        names = list(dict.fromkeys(row.name for row in rows))
        hidden = 0
    else:
        names, hidden = shown_metrics(rows, metrics)
    order: list[str] = []
    for f in factors.values():
        order.extend(k for k in f if k not in order)
    # A factor with one value in every job says nothing per row: it goes to the heading
    # (with several jobs; one job's factors are its row).
    constant = {f: next(iter(factors.values()))[f] for f in order
                if len(factors) > 1 and all(f in v for v in factors.values())
                and len({_fmt(v[f]) for v in factors.values()}) == 1}
    return Results(jobs=tuple(figures), states=states_by_job, factors=factors, figures=figures,
                   constant=constant, varying=tuple(f for f in order if f not in constant),
                   metrics=tuple(names), hidden=hidden, judges=len(judges))


def _header(name: str, values: list[str]) -> Text:
    """A column heading no wider than it must be: a name longer than the column's values is
    broken after its underscores (``val_`` / ``perplexity``), so values set the width."""
    widest = max((len(v) for v in values), default=0)
    if len(name) <= widest or "_" not in name:
        return Text(name)
    *heads, last = name.split("_")
    parts = [p + "_" for p in heads] + [last]
    width = max(widest, *map(len, parts))
    lines = [""]
    for part in parts:
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append(part)
        else:
            lines[-1] += part
    return Text("\n".join(lines))


def results_table(view: Results, provenance: dict[str, dict[int, str]] | None = None,
                  width: int | None = None) -> Group:
    """The results for a terminal: a heading with the factors every job shares, then one
    row per job with its varying factors and figures. Factor values are never cut: their
    columns are as wide as their longest value and one space apart (the box's divider, no
    padding), and where whole headings would make the table wider than ``width`` (the
    terminal's), headings longer than their values break after underscores, and figures
    that still do not fit leave the table, named in its caption; the demo grid's table
    fits 100 columns whole.
    ``provenance``: extra columns (e.g. "code") giving each job's label, shown where
    pooled jobs ran different code or environments."""
    extra = provenance or {}
    shared = ", ".join(f"{k}={_one_line(v)}" for k, v in view.constant.items())
    heading = Text("Results", style="bold")
    if shared:
        heading.append(f"  every job: {shared}", style="")
    factor_columns = [(f, [_one_line(view.factors[j].get(f, "")) for j in view.jobs], "left") for f in view.varying]
    figure_columns = [(n, [_num(view.figures[j].get(n)) for j in view.jobs], "right") for n in view.metrics]
    labels = [(c, [labels.get(j, "not recorded") for j in view.jobs]) for c, labels in extra.items()]
    base = len("job") + sum(_width(Text(c), values) + 1 for c, values in labels)

    def total(columns, heads) -> int:
        return base + sum(_width(heads(name, values), values) + 1 for name, values, _ in columns)

    columns = factor_columns + figure_columns
    heads = lambda name, values: Text(name)  # noqa: E731
    if width is not None and total(columns, heads) > width:
        heads = _header
        # Still too wide: the figures that do not fit leave the table (the caption names
        # them); factors, which say what a row is, always stay whole.
        while figure_columns and total(factor_columns + figure_columns, heads) > width:
            figure_columns = figure_columns[:-1]
        columns = factor_columns + figure_columns
    left_out = [n for n in view.metrics if n not in {name for name, _, _ in figure_columns}]
    notes = []
    if left_out:
        notes.append(f"{', '.join(left_out)}: no room at this width (see a wider terminal or --format csv)")
    if view.hidden:
        notes.append(f"{view.hidden} more figures per job; name them with --metric NAME (or --format csv: all)")
    if view.judges:
        notes.append(f"{view.judges} judge job(s) left out: their verdicts are in `gridlab compare`")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=0,
                  caption="; ".join(notes) or None, caption_justify="left")
    table.add_column("job", justify="right", no_wrap=True)
    for name, values, justify in columns:
        head = heads(name, values)
        table.add_column(head, justify=justify, no_wrap=True, min_width=_width(head, values))
    for c, _ in labels:
        table.add_column(Text(c), style="yellow", no_wrap=True)
    for i, job_id in enumerate(view.jobs):
        table.add_row(str(job_id), *(Text(values[i]) for _, values, _ in columns),
                      *(Text(values[i]) for _, values in labels))
    return Group(heading, table)


def _one_line(value: Any) -> str:
    """A factor value as a table cell: tabs and line breaks as spaces, so it measures as it prints."""
    return " ".join(_fmt(value).splitlines()).replace("\t", " ")


def _width(head: Text, values: list[str]) -> int:
    return max(max(map(len, values), default=1), *(len(line) for line in head.plain.splitlines()))


def results_records(view: Results, provenance: dict[str, dict[int, str]] | None = None) -> list[dict[str, Any]]:
    """The results for programs: one dict per job with every column, constant factors
    included: job, state, each factor (as the grid file wrote it), each figure (None where a
    job lacks it or it is not finite), each provenance label."""
    extra = provenance or {}
    factors = [*view.constant, *view.varying]
    out = []
    for j in view.jobs:
        record: dict[str, Any] = {"job": j, "state": view.states[j]}
        record.update({f: view.factors[j].get(f) for f in factors})
        for n in view.metrics:
            v = view.figures[j].get(n)
            record[n] = v if v is None or math.isfinite(v) else None
        record.update({c: labels.get(j, "not recorded") for c, labels in extra.items()})
        out.append(record)
    return out


def results_text(view: Results, fmt: str, provenance: dict[str, dict[int, str]] | None = None) -> str:
    """The results as ``fmt``: "csv" or "tsv" (a header row, then a row per job; written
    with the csv module, so values holding commas, tabs or quotes read back whole; a
    factor as the grid file writes it, a figure at full precision, empty where missing) or
    "json" (a list of objects, as :func:`results_records`)."""
    records = results_records(view, provenance)
    if fmt == "json":
        return json.dumps(records, indent=1, default=str)
    if fmt not in ("csv", "tsv"):
        raise ValueError(f"format is one of {', '.join(FORMATS)}, got {fmt!r}")
    columns = list(records[0]) if records else ["job", "state"]
    out = io.StringIO()
    writer = csv.writer(out, dialect="excel-tab" if fmt == "tsv" else "excel", lineterminator="\n")
    writer.writerow(columns)
    for r in records:
        writer.writerow(["" if r.get(c) is None else _cell(r.get(c)) for c in columns])
    return out.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return _fmt(value)


def effects_table(rows, metric: str) -> Table | str:
    """Each grid factor's effect on final figure ``metric`` over the succeeded jobs: per
    level, the mean and 95% t interval over every job at that level (the rest of the grid
    pooled, the interval within the range the figure can take), factors ordered by eta
    squared (the share of the figure's variance their levels explain alone). The
    dashboard's Factor effects page shows the same numbers."""
    data = [(row.factors, row.value) for row in rows
            if row.name == metric and row.state == states.SUCCEEDED and row.value is not None]
    effects = stats.factor_effects(data, bounds=stats.quantity_range(metric))
    if not effects:
        return f"Effects on {metric}: no factor varies among the succeeded jobs that have it."
    table = Table(title=f"Effect of each factor on {metric} (mean and 95% t interval over the rest of the grid)",
                  title_justify="left", caption="η²: share of the variance the factor's levels explain alone")
    for col, justify in (("factor", "left"), ("η²", "right"), ("level", "left"), ("jobs", "right"),
                         ("mean", "right"), ("95% interval", "right")):
        table.add_column(col, justify=justify)
    for effect in effects:
        for i, (level, interval) in enumerate(effect.levels):
            span = (f"[{_num(interval.low)}, {_num(interval.high)}]"
                    if interval.n >= 2 and interval.low == interval.low else "")
            table.add_row(effect.factor if i == 0 else "", f"{effect.eta_squared:.2f}" if i == 0 else "",
                          _fmt(level), str(interval.n), _num(interval.mean), span,
                          end_section=i == len(effect.levels) - 1)
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as the grid file writes it
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _num(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 1000 and float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.4g}"


def params_table(experiment: str, params: dict) -> Table:
    """What a grid file may set for ``experiment``: name, kind, default, allowed values, meaning."""
    from jobs.params import REQUIRED

    table = Table(title=f"Parameters of experiment {experiment!r}", title_justify="left")
    for col in ("name", "kind", "default", "allowed", "meaning"):
        table.add_column(col, overflow="fold")
    for name, p in params.items():
        if p.default is REQUIRED:
            default = "(required)"
        else:
            default = _fmt(p.default) if p.default != "" else "''"
        if p.choices:
            allowed = ", ".join(map(str, p.choices))
        elif p.minimum is not None:
            allowed = f">= {p.minimum:g}"
        else:
            allowed = ""
        table.add_row(name, p.kind.__name__, default, allowed, p.help)
    return table


def cell_label(factors: dict[str, Any], width: int = 60) -> str:
    """A grid cell in one short line: its factors as key=value."""
    text = " ".join(f"{k}={_fmt(v)}" for k, v in factors.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def progress_text(job) -> str:
    """How far a running job has got: ``step 120/400 (30%)``, or ``starting``."""
    if job.step is None:
        return "starting"
    if job.total_steps:
        return f"step {job.step}/{job.total_steps} ({job.step / job.total_steps:.0%})"
    return f"step {job.step}"


def running_table(running: list) -> Table:
    """Running jobs: where each one's training has got, its loss, its worker, its heartbeat."""
    table = Table(title="Running", title_justify="left")
    for col, justify in (("job", "right"), ("grid", "left"), ("cell", "left"), ("attempt", "right"),
                         ("progress", "left"), ("loss", "right"), ("worker", "left"), ("heartbeat", "right")):
        table.add_column(col, justify=justify)
    for j in running:
        age = "" if j.heartbeat_age_s is None else f"{j.heartbeat_age_s:.0f} s ago"
        loss = "" if j.value is None else f"{j.value:.4g}"
        table.add_row(str(j.id), escape(j.grid), escape(cell_label(j.factors)), str(j.attempt), progress_text(j), loss,
                      escape(j.worker or ""), age)
    return table


#: Worker states in the order a worker passes through them (others sort after, by name).
WORKER_ORDER = ["PENDING", "SUBMITTED", "RUNNING", "REQUEUED", "COMPLETING"]


def workers_table(counts: dict[tuple[str, str], int]) -> Table:
    """Dispatched workers by executor and state (``slurm.supervise.worker_counts``)."""
    table = Table(title="Workers", title_justify="left")
    for col in ("executor", "state", "workers"):
        table.add_column(col)
    order = WORKER_ORDER
    for (executor, state), n in sorted(counts.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]) if kv[0][1] in order else 99, kv[0][1])):
        table.add_row(executor, state.lower(), str(n))
    return table


# GPU-hours are computed in db.costs (the dashboard's Overview page shows the same figures);
# the tables below only draw them.


def gpu_hours_table(hours: dict[str, Any]) -> Table:
    """:func:`db.costs.grid_rows` as a terminal table."""
    table = Table(title="GPU-hours (attempts' wall time x their GPUs)", title_justify="left")
    for col, justify in zip(costs.GRID_COLUMNS, ("left", "right", "right", "right", "right")):
        table.add_column(col, justify=justify)
    for grid, spent, left, estimate, unestimated in costs.grid_rows(hours):
        table.add_row(escape(grid), f"{spent:.2f}", str(left), f"{estimate:.2f}", str(unestimated))
    return table


def gpu_hours_by_factor(hours: dict[str, Any], only: list[str] | None = None) -> list[Table]:
    """:func:`db.costs.factor_rows` as terminal tables, one per factor (of ``only``, if given;
    a factor of more than MAX_FACTOR_ROWS values is left out)."""
    tables = []
    for factor, values in costs.factor_rows(hours, only=only, max_values=MAX_FACTOR_ROWS).items():
        table = Table(title=f"GPU-hours by {escape(factor)}", title_justify="left")
        table.add_column(escape(factor))
        table.add_column("GPU-hours", justify="right")
        for value, spent in values:
            table.add_row(escape(value), f"{spent:.2f}")
        tables.append(table)
    return tables


# --- provenance (`gridlab show`) ---------------------------------------------------------


def provenance_lines(jp) -> list[str]:
    """Plain lines (print them without markup): the grid file version a job was enqueued
    from, and per attempt the code, environment and machine it ran on (a db.provenance.
    JobProvenance). An attempt like the one before it says so in one line."""
    import time

    lines = []
    v = jp.grid_version
    if v is None:
        lines.append("grid file: version not recorded (enqueued before gridlab kept grid file versions)")
    else:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v.created_at))
        lines.append(f"grid file: version {v.number} of {v.of} (sha256 {v.text_hash[:12]}, read from "
                     f"{v.source_path or '?'} on {when}); print it with --grid-file")
    previous = None
    for a in jp.attempts:
        where = f"Slurm job {a.slurm_job_id} on {a.node or '?'}" if a.slurm_job_id else ""
        if a.code is None:
            lines.append(f"attempt {a.number}: provenance not recorded" + (f" ({where})" if where else ""))
            previous = None
            continue
        same = previous is not None and (a.code.id, a.environment.id, a.machine.id, a.code_root) == previous
        previous = (a.code.id, a.environment.id, a.machine.id, a.code_root)
        if same:
            lines.append(f"attempt {a.number}: same code, environment and machine as attempt {a.number - 1}"
                         + (f" ({where})" if where else ""))
            continue
        c, e, m = a.code, a.environment, a.machine
        if c.git_commit is None:
            code = f"no git; {c.files} source files, sha256 {c.files_hash[:12]}"
        else:
            state = f"dirty, diff sha256 {(c.diff_hash or '?')[:12]} (print it with --diff)" if c.git_dirty else "clean"
            code = f"commit {c.git_commit[:12]}, {state}; {c.files} source files, sha256 {c.files_hash[:12]}"
        origin = f"pinned snapshot {a.code_root}" if a.pinned else f"live tree {a.code_root}"
        pkgs = e.packages
        cuda = pkgs.get("torch_cuda") or "none"
        versions = ", ".join(f"{k} {pkgs[k]}" for k in ("transformers", "peft", "datasets", "lm-eval", "llm-blender",
                                                        "gridlab") if pkgs.get(k))
        lines.append(f"attempt {a.number}: code {c.label} ({code}) from {origin}")
        lines.append(f"  environment: {e.python}; torch {pkgs.get('torch') or 'not installed'} (CUDA {cuda}); "
                     f"{versions} (all packages: --freeze)")
        gpu = f"{m.gpus}, driver {m.gpu_driver or '-'}, CUDA {m.cuda_driver or '-'}" if m.gpu_count else "no GPU"
        lines.append(f"  machine: {m.host} ({m.platform}), {m.cpu_count} CPUs, {gpu}" + (f"; {where}" if where else ""))
    if not jp.attempts:
        lines.append("attempts: none yet (provenance is recorded when a worker claims the job)")
    return lines
