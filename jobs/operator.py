"""What a person (or the reaper) does to the queue, as opposed to a worker: enqueue a
grid's jobs, cancel and retry jobs, and take back leases that expired.

Each function is one transaction (:func:`db.session.scope`) over the engine, of statements
from :mod:`jobs.queries`, and writes an event for every state change it makes. The
worker's side (claim, heartbeat, finish) is :class:`jobs.queue.Queue`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from db.errors import GridlabError
from db.session import scope
from jobs import dependencies, queries, reports, states
from jobs import retry as retry_policy
from jobs.records import EnqueueResult


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to enqueue: one grid cell's resolved spec."""

    spec_hash: str
    spec: dict[str, Any]
    factors: dict[str, Any]
    experiment: str
    priority: int = 0
    max_attempts: int = 3
    backoff_s: float = 10.0
    #: spec hashes of jobs in the same grid that must succeed before this one runs
    depends_on: tuple[str, ...] = ()
    #: the spec as JSON text, if the caller already has it (it hashed it)
    spec_json: str | None = None
    #: ``json.dumps(factors)``, if the caller already has it
    factors_json: str | None = None
    #: what the cell needs to run (jobs.resources): workers of a class claim only its jobs
    resource_class: str = "default"


# --- enqueueing ---------------------------------------------------------------------


def enqueue(
    engine: Engine,
    grid: str,
    new_jobs: Sequence[NewJob],
    *,
    source_path: str | None = None,
    source_text: str | None = None,
    actor: str = "enqueue",
    chunk: int = 5000,
    progress=None,
) -> EnqueueResult:
    """Add the grid's jobs; jobs whose spec hash the grid already has are skipped.
    All or nothing: one transaction."""
    with scope(engine) as conn:
        # Upserting the grid's row locks it until commit (on SQLite the whole database
        # is locked from BEGIN), so enqueues of one grid take turns: the hashes read
        # next are all the grid has, and the rows left after them are all new.
        grid_id = queries.upsert_grid(conn, name=grid, source_path=source_path, source_text=source_text)
        version_id = (queries.grid_version(conn, grid=grid_id, source_path=source_path, source_text=source_text)
                      if source_text is not None else None)
        created_at = queries.db_now(conn)
        seen = queries.spec_hashes(conn, grid_id)
        fresh: list[NewJob] = []
        for j in new_jobs:
            if j.spec_hash not in seen:
                seen.add(j.spec_hash)
                fresh.append(j)
        if progress is not None and len(fresh) < len(new_jobs):
            progress(len(new_jobs) - len(fresh))
        rows = [
            (grid_id, j.spec_hash, j.spec_json or json.dumps(j.spec), j.factors_json or json.dumps(j.factors),
             j.experiment, j.priority, j.max_attempts, j.backoff_s, j.resource_class)
            for j in fresh
        ]
        after_id = queries.last_job_id(conn, grid_id)
        new = queries.insert_jobs(conn, rows, created_at=created_at, chunk=chunk, progress=progress,
                                  grid_version_id=version_id)
        if new:
            queries.insert_enqueue_events(conn, grid=grid_id, after_id=after_id, created_at=created_at, actor=actor)
        pairs = [(j.spec_hash, up) for j in new_jobs for up in j.depends_on]
        queries.insert_dependencies(conn, grid=grid_id, pairs=pairs)
        if pairs:  # a new dependent of an arm that already failed can never run
            dependencies.cancel_doomed(conn, grid=grid_id, actor=actor)
    return EnqueueResult(grid=grid, total=len(new_jobs), new=new, existing=len(new_jobs) - new)


def existing_hashes(engine: Engine, grid: str) -> set[str]:
    """The spec hashes grid ``grid`` already has (none, for a grid not enqueued yet)."""
    with scope(engine, write=False) as conn:
        grid_id = queries.grid_id(conn, grid)
        return set() if grid_id is None else queries.spec_hashes(conn, grid_id)


# --- recovery -------------------------------------------------------------------------


def reclaim_stale(engine: Engine, *, actor: str = "reaper") -> list[int]:
    """Take back jobs whose lease expired (a worker died, hung or lost its network):
    back to pending if attempts are left, else failed. Returns the job ids."""
    reclaimed: list[int] = []
    with scope(engine) as conn:
        for row in queries.stale_leases(conn):
            decision = retry_policy.decide(
                attempts=row.attempts, max_attempts=row.max_attempts, backoff_s=row.backoff_s,
                outcome=states.OUTCOME_LEASE_EXPIRED,
            )
            error = f"lease of {row.lease_owner} expired (no heartbeat)"
            if queries.release_stale(
                conn, job_id=row.id, owner=row.lease_owner, attempt=row.attempts, state=decision.state,
                delay_s=decision.delay_s, error=error,
            ):
                queries.end_attempt(conn, job_id=row.id, number=row.attempts, outcome=states.OUTCOME_LEASE_EXPIRED,
                                    error=error)
                queries.insert_events(conn, [queries.event(row.id, states.RUNNING, decision.state, row.attempts,
                                                           actor, error)])
                if not decision.retry:
                    queries.write_curve_rollups(conn, [row.id])
                    dependencies.cancel_dependents(conn, row.id, actor=actor)
                reclaimed.append(row.id)
    return reclaimed


# --- operator actions -------------------------------------------------------------------


def cancel(engine: Engine, *, ids: Iterable[int] | None = None, grid: str | None = None,
           where: dict[str, Any] | None = None, actor: str = "cli") -> list[int]:
    """Cancel pending and running jobs. A running job's worker finds its lease gone
    at its next heartbeat and stops."""
    done: list[int] = []
    with scope(engine) as conn:
        rows = _select(conn, ids=ids, grid=grid, where=where, in_states=states.CANCELLABLE)
        events = []
        for row in rows:
            if queries.cancel(conn, job_id=row.id, from_state=row.state):
                done.append(row.id)
                events.append(queries.event(row.id, row.state, states.CANCELLED, row.attempts, actor,
                                            "cancelled by user"))
                if row.state == states.RUNNING:  # its attempt ends here; its worker is fenced out
                    queries.end_open_attempts(conn, job_id=row.id, outcome=states.OUTCOME_CANCELLED,
                                              error=f"cancelled by {actor}")
        queries.insert_events(conn, events)
        queries.write_curve_rollups(conn, done)  # an earlier attempt may have logged points
        for job_id in list(done):
            done.extend(dependencies.cancel_dependents(conn, job_id, actor=actor))
    return done


def retry(engine: Engine, *, ids: Iterable[int] | None = None, grid: str | None = None,
          where: dict[str, Any] | None = None, in_states: Sequence[str] = states.RETRYABLE,
          extra_attempts: int = 1, fresh: bool = False, actor: str = "cli") -> list[int]:
    """Put failed, diverged or cancelled jobs back in the queue. The next attempt resumes
    from the job's recorded checkpoint, its curve cut back to that step; with ``fresh`` the
    checkpoint is forgotten and the run starts over, its old points replaced. A retried
    dependent whose upstream still cannot succeed is cancelled again, with the reason."""
    bad = set(in_states) - set(states.RETRYABLE)
    if bad:
        raise GridlabError(
            f"cannot retry jobs in state {', '.join(sorted(bad))}",
            f"retry takes jobs that are {', '.join(states.RETRYABLE)}",
        )
    done: list[int] = []
    with scope(engine) as conn:
        rows = _select(conn, ids=ids, grid=grid, where=where, in_states=in_states)
        events = []
        for row in rows:
            if queries.requeue(conn, job_id=row.id, from_state=row.state, extra_attempts=extra_attempts):
                done.append(row.id)
                events.append(queries.event(row.id, row.state, states.PENDING, row.attempts, actor, "retried by user"))
        queries.insert_events(conn, events)
        queries.drop_curve_rollups(conn, done)  # it will log more points
        if fresh:
            queries.clear_checkpoint(conn, done)
            queries.drop_outputs(conn, done)
        doomed = set(dependencies.cancel_doomed(conn, job_ids=done, actor=actor))
    return [j for j in done if j not in doomed]


def _select(conn, *, ids, grid, where, in_states):
    rows = queries.select_jobs(conn, grid=reports.grid_id(conn, grid), ids=ids, in_states=in_states)
    if where:
        rows = [r for r in rows if all(_matches(r.factors.get(k), v) for k, v in where.items())]
    return rows


def _matches(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, (list, tuple, set)):
        return any(_matches(actual, w) for w in wanted)
    return actual == wanted or str(actual) == str(wanted)
