"""GPU-hours: what each grid and each factor level has spent, and an estimate of what the
pending cells will cost, from the cells that finished (by shape).

One implementation for ``gridlab status`` (:mod:`harness.report` draws the terminal tables)
and the dashboard's Overview page (:mod:`dashboards.queries` wraps it in DataFrames), so both
print the same figures. The input is the rows :func:`db.views.job_device_seconds` reads, one
per job (grid, factors, spec, state, seconds: its attempts' wall time x their devices, by the
database's clock); nothing here touches the database. Standard library only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from db import states

#: The settings that make two cells cost the same (model, PEFT method, sequence length, steps):
#: a pending cell's GPU-hours are estimated from finished cells of its shape.
SHAPE = ("model", "peft", "max_length", "seq_len", "steps", "experiment", "kind")

#: The states a cell still has to be run (or finish running) in: what the estimate covers.
LEFT = (states.PENDING, states.RUNNING)

#: The columns of :func:`grid_rows`, in order.
GRID_COLUMNS = ("grid", "spent", "cells left", "estimate left", "no estimate")

#: The columns of :func:`factor_rows`, in order.
FACTOR_COLUMNS = ("factor", "value", "GPU-hours")


def shape_of(spec: dict[str, Any]) -> tuple:
    """The cell's shape: its :data:`SHAPE` settings, as (name, str(value)) pairs."""
    return tuple((k, str(spec.get(k))) for k in SHAPE if k in spec)


def gpu_hours(rows: Iterable) -> dict[str, Any]:
    """From :func:`db.views.job_device_seconds` rows: GPU-hours spent per grid and per factor
    value, and an estimate of what the pending cells will cost: each pending (or running) cell at
    the mean of the succeeded cells of its grid and shape (:data:`SHAPE`); cells of a shape never
    run have none.

    Returns a dict: ``spent`` (grid -> hours, every grid with jobs), ``by_factor`` (factor ->
    str(value) -> hours), ``estimate`` (grid -> hours, grids with an estimated cell),
    ``unestimated`` (grid -> cells without an estimate), ``pending`` (grid -> cells left)."""
    rows = list(rows)
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
    pending = [r for r in rows if r.state in LEFT]
    estimate: dict[str, float] = defaultdict(float)
    unknown: dict[str, int] = defaultdict(int)
    for r in pending:
        known = by_shape.get((r.grid, shape_of(r.spec)))
        if known:
            estimate[r.grid] += sum(known) / len(known)
        else:
            unknown[r.grid] += 1
    return {"spent": dict(spent_by_grid), "by_factor": {k: dict(v) for k, v in spent_by_factor.items()},
            "estimate": dict(estimate), "unestimated": dict(unknown),
            "pending": {g: sum(1 for r in pending if r.grid == g) for g in spent_by_grid}}


def any_spent(hours: dict[str, Any]) -> bool:
    """Whether any device seconds are recorded (machines with GPUs, or cells that asked for them)."""
    return any(hours["spent"].values())


def grid_rows(hours: dict[str, Any]) -> list[tuple[str, float, int, float, int]]:
    """One row per grid (:data:`GRID_COLUMNS`): GPU-hours spent, cells left, the estimate of
    what they will cost, and the cells left without an estimate; grids as :func:`gpu_hours` met them."""
    return [(grid, spent, hours["pending"].get(grid, 0), hours["estimate"].get(grid, 0.0),
             hours["unestimated"].get(grid, 0))
            for grid, spent in hours["spent"].items()]


def factor_rows(hours: dict[str, Any], only: Iterable[str] | None = None,
                max_values: int | None = None) -> dict[str, list[tuple[str, float]]]:
    """Factor -> (value, GPU-hours spent) pairs, most spent first: factors (of ``only``, if
    given) that spent anything, and (``max_values``) have no more values than that."""
    only = list(only) if only else None
    out: dict[str, list[tuple[str, float]]] = {}
    for factor, values in hours["by_factor"].items():
        if (only and factor not in only) or (max_values is not None and len(values) > max_values):
            continue
        if not any(values.values()):
            continue
        out[factor] = sorted(values.items(), key=lambda kv: -kv[1])
    return out
