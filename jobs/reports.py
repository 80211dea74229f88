"""Reading the queue: jobs by state, what runs now, one job's history, final figures,
device time, and what is left to do.

Each function is one read-only transaction over the engine. The reads the dashboard
shows too come from :mod:`db.views` (so the CLI and the dashboard say the same thing);
the rest (what the workers, the pool and ``gridlab launch`` ask) are the queue's own
statements in :mod:`jobs.queries`. A grid is named by its name; an unknown one is an
error that lists the known ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine, Row

from db import views
from db.errors import GridlabError
from db.session import scope
from jobs import queries, states
from jobs.records import RunningJob


def counts(engine: Engine, grid: str | None = None) -> dict[str, int]:
    """Jobs (of ``grid``) in every state, 0 where none."""
    with scope(engine, write=False) as conn:
        found = views.state_counts(conn, grid=grid_id(conn, grid))
    return {s: found.get(s, 0) for s in states.ALL}


def factor_states(engine: Engine, grid: str | None = None) -> list[tuple[dict[str, Any], str]]:
    """(factors, state) of every job (of ``grid``)."""
    with scope(engine, write=False) as conn:
        rows = queries.factor_states(conn, grid=grid_id(conn, grid))
    return [(r.factors, r.state) for r in rows]


def summaries(engine: Engine, grid: str | None = None) -> list[Row]:
    """Every final figure (of ``grid``) with its job: id, experiment, factors, state, name, value."""
    with scope(engine, write=False) as conn:
        return views.summaries_table(conn, grid=grid_id(conn, grid))


def running(engine: Engine, grid: str | None = None) -> list[RunningJob]:
    """Running jobs with the newest step and value of their loss curve."""
    with scope(engine, write=False) as conn:
        return views.running(conn, grid=grid_id(conn, grid))


def grids(engine: Engine) -> list[str]:
    """Every grid's name, oldest first."""
    with scope(engine, write=False) as conn:
        return queries.grid_names(conn)


def stale(engine: Engine) -> int:
    """Running jobs whose lease has expired by the database's clock."""
    with scope(engine, write=False) as conn:
        return views.stale_count(conn)


def jobs(engine: Engine, *, grid: str | None = None, in_states: Sequence[str] | None = None) -> list[Row]:
    """Jobs (of ``grid``, in ``in_states``): id, grid_id, state, factors, attempts, lease_owner,
    last_error, spec_hash."""
    with scope(engine, write=False) as conn:
        return queries.select_jobs(conn, grid=grid_id(conn, grid), in_states=in_states)


def job(engine: Engine, job_id: int) -> Row | None:
    """One job's row (with its grid's name), or None."""
    with scope(engine, write=False) as conn:
        return views.job(conn, job_id)


def events(engine: Engine, job_id: int) -> list[Row]:
    """The job's state changes, oldest first."""
    with scope(engine, write=False) as conn:
        return views.events_of(conn, job_id)


def attempts(engine: Engine, job_id: int) -> list[Row]:
    """The job's attempts, first to last."""
    with scope(engine, write=False) as conn:
        return views.attempts_of(conn, job_id)


def device_seconds(engine: Engine, grid: str | None = None) -> list[Row]:
    """Per job: grid, factors, spec, state, resource class and its attempts' device-seconds
    (:func:`db.views.job_device_seconds`; :mod:`db.costs` turns them into GPU-hours)."""
    with scope(engine, write=False) as conn:
        return views.job_device_seconds(conn, grid=grid_id(conn, grid))


def unfinished(engine: Engine, *, resource_class: str | None = None) -> int:
    """Jobs pending or running (of ``resource_class``, if given): what is left to do."""
    with scope(engine, write=False) as conn:
        return queries.runnable_or_running(conn, resource_class=resource_class)


def pending(engine: Engine, *, resource_class: str | None = None) -> int:
    """Jobs runnable now or after their backoff (of ``resource_class``, if given)."""
    with scope(engine, write=False) as conn:
        return queries.runnable_count(conn, resource_class=resource_class)


def pending_by_class(engine: Engine) -> dict[str, int]:
    """Pending jobs per resource class (jobs.resources)."""
    with scope(engine, write=False) as conn:
        return queries.pending_by_class(conn)


def peak_memory(engine: Engine, *, resource_class: str | None = None) -> float | None:
    """The largest peak memory (MiB: the device's, else the process's resident set) that a
    succeeded job (of ``resource_class``) recorded; None before any did."""
    with scope(engine, write=False) as conn:
        return queries.peak_memory(conn, resource_class=resource_class)


@dataclass(frozen=True)
class GridResults:
    """What a grid's report and export read, in one read-only transaction: its jobs (id,
    experiment, state, spec_hash, factors, spec, ...), final figures (id, factors, state, name,
    value), the points of the curves asked for (job_id, name, step, value), every curve's name,
    the stored answers and the verdicts on them."""

    grid: str
    jobs: list[Row]
    summaries: list[Row]
    curves: list[Row]
    curve_names: list[str]
    generations: list[views.StoredGeneration]
    judgments: list[views.StoredJudgment]
    attention: list[views.AttentionRow] = ()  # each job's probes at its last step per phase


def grid_results(engine: Engine, grid: str, *, curves: Sequence[str] | None = None) -> GridResults:
    """Everything ``gridlab report`` and ``gridlab export`` show of ``grid`` (an unknown grid is
    an error listing the known ones); ``curves``: only these curves' points (None: all; a name
    ending in ``/`` stands for every curve it begins, ``attn_entropy_norm/`` say)."""
    with scope(engine, write=False) as conn:
        gid = grid_id(conn, grid)
        names = views.grid_metric_names(conn, gid)
        wanted = None if curves is None else [
            n for n in names if n in curves or any(c.endswith("/") and n.startswith(c) for c in curves)]
        return GridResults(
            grid=grid, jobs=views.grid_jobs(conn, gid), summaries=views.summaries_table(conn, grid=gid),
            curves=views.grid_curves(conn, gid, wanted) if wanted is None or wanted else [], curve_names=names,
            generations=views.grid_generations(conn, gid), judgments=views.arm_judgments(conn, gid),
            attention=views.grid_attention_at_last_step(conn, gid))


def grid_id(conn, grid: str | None) -> int | None:
    """The id of the grid named ``grid`` (None for None); an unknown name is a GridlabError
    that lists the known ones."""
    if grid is None:
        return None
    found = queries.grid_id(conn, grid)
    if found is None:
        raise GridlabError(f"no grid named {grid!r} in this database", known_grids_hint(conn))
    return found


def known_grids_hint(conn) -> str:
    names = queries.grid_names(conn)
    return f"known grids: {', '.join(names)}" if names else "this database has no grids yet; run `gridlab enqueue GRID.yaml`"
