"""Tables for the terminal: queue status by state and by grid factor, final results."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from rich.table import Table

from jobs import states

STATE_STYLE = {
    states.PENDING: "yellow",
    states.RUNNING: "cyan",
    states.SUCCEEDED: "green",
    states.FAILED: "red",
    states.DIVERGED: "magenta",
    states.CANCELLED: "dim",
}


def counts_table(counts_by_grid: dict[str, dict[str, int]]) -> Table:
    table = Table(title="Jobs by state", title_justify="left")
    table.add_column("grid")
    for s in states.ALL:
        table.add_column(s, justify="right", style=STATE_STYLE[s])
    table.add_column("total", justify="right", style="bold")
    for grid, counts in counts_by_grid.items():
        table.add_row(grid, *(str(counts.get(s, 0)) for s in states.ALL), str(sum(counts.values())))
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
            tables.append(f"By {name}: {len(values):,} values, not listed (see them with --by {name})")
            continue
        table = Table(title=f"By {name}", title_justify="left")
        table.add_column(name)
        for s in states.ALL:
            table.add_column(s, justify="right", style=STATE_STYLE[s])
        for value, counter in values.items():
            table.add_row(value, *(str(counter.get(s, 0) or "") for s in states.ALL))
        tables.append(table)
    return tables


#: Figures `gridlab results` shows when no --metric is given (those a job has).
HEADLINE_METRICS = ("val_loss", "val_perplexity", "trainable_params", "params")


def results_table(rows, metrics: list[str] | None = None) -> Table:
    """Final figures per job: one row per job, the factors that vary, and the headline
    figures (or the ones named in ``metrics``)."""
    per_job: dict[int, dict[str, Any]] = {}
    factors: dict[int, dict[str, Any]] = {}
    present: list[str] = []
    for row in rows:
        per_job.setdefault(row.id, {})[row.name] = row.value
        factors[row.id] = row.factors
        if row.name not in present:
            present.append(row.name)
    if metrics:
        names = [n for n in metrics if n in present]
    else:
        names = [n for n in HEADLINE_METRICS if n in present] or [n for n in present if "/" not in n]
    hidden = len(set(present) - set(names))
    factor_names: list[str] = []
    for f in factors.values():
        factor_names.extend(k for k in f if k not in factor_names)
    # A factor with one value across these rows says nothing: leave it out.
    factor_names = [f for f in factor_names if len({_fmt(v.get(f, "")) for v in factors.values()}) > 1] or factor_names
    caption = f"{hidden} more figures per job; name them with --metric NAME" if hidden else None
    table = Table(title="Results", title_justify="left", caption=caption)
    table.add_column("job", justify="right")
    for f in factor_names:
        table.add_column(f)
    for n in names:
        table.add_column(n, justify="right")
    for job_id, values in per_job.items():
        table.add_row(
            str(job_id),
            *(_fmt(factors[job_id].get(f, "")) for f in factor_names),
            *(_num(values.get(n)) for n in names),
        )
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
    from harness.params import REQUIRED

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
        table.add_row(str(j.id), j.grid, cell_label(j.factors), str(j.attempt), progress_text(j), loss,
                      j.worker or "", age)
    return table


#: The settings that make two cells cost the same (model, PEFT method, sequence length, steps):
#: a pending cell's GPU-hours are estimated from finished cells of its shape.
SHAPE = ("model", "peft", "max_length", "seq_len", "steps", "experiment", "kind")


def shape_of(spec: dict[str, Any]) -> tuple:
    return tuple((k, str(spec.get(k))) for k in SHAPE if k in spec)


def gpu_hours(rows) -> dict[str, Any]:
    """From ``Queue.device_seconds`` rows: GPU-hours spent per grid and per factor value, and
    an estimate of what the pending cells will cost: each pending cell at the mean of the
    succeeded cells of its shape (:data:`SHAPE`); cells of a shape never run have none."""
    spent_by_grid: dict[str, float] = defaultdict(float)
    spent_by_factor: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    by_shape: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        hours = (r.seconds or 0.0) / 3600
        spent_by_grid[r.grid] += hours
        for k, v in r.factors.items():
            spent_by_factor[k][str(v)] += hours
        if r.state == states.SUCCEEDED:
            by_shape[(r.grid, shape_of(r.spec))].append(hours)
    pending = [r for r in rows if r.state in (states.PENDING, states.RUNNING)]
    estimate, unknown = defaultdict(float), defaultdict(int)
    for r in pending:
        known = by_shape.get((r.grid, shape_of(r.spec)))
        if known:
            estimate[r.grid] += sum(known) / len(known)
        else:
            unknown[r.grid] += 1
    return {"spent": dict(spent_by_grid), "by_factor": {k: dict(v) for k, v in spent_by_factor.items()},
            "estimate": dict(estimate), "unestimated": dict(unknown),
            "pending": {g: sum(1 for r in pending if r.grid == g) for g in spent_by_grid}}


def gpu_hours_table(hours: dict[str, Any]) -> Table:
    table = Table(title="GPU-hours (attempts' wall time x their GPUs)", title_justify="left")
    for col, justify in (("grid", "left"), ("spent", "right"), ("cells left", "right"), ("estimate left", "right"),
                         ("no estimate", "right")):
        table.add_column(col, justify=justify)
    for grid, spent in hours["spent"].items():
        table.add_row(grid, f"{spent:.2f}", str(hours["pending"].get(grid, 0)), f"{hours['estimate'].get(grid, 0.0):.2f}",
                      str(hours["unestimated"].get(grid, 0)))
    return table


def gpu_hours_by_factor(hours: dict[str, Any], only: list[str] | None = None) -> list[Table]:
    tables = []
    for factor, values in hours["by_factor"].items():
        if (only and factor not in only) or len(values) > MAX_FACTOR_ROWS or not any(values.values()):
            continue
        table = Table(title=f"GPU-hours by {factor}", title_justify="left")
        table.add_column(factor)
        table.add_column("GPU-hours", justify="right")
        for value, spent in sorted(values.items(), key=lambda kv: -kv[1]):
            table.add_row(value, f"{spent:.2f}")
        tables.append(table)
    return tables
