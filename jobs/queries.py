"""Every SQL statement the queue runs, in one place: its writes and the reads only it
makes (the reads it shares with the dashboard are :mod:`db.views`).

Each function takes an open connection (inside a transaction from
:func:`db.session.scope`) and runs one statement, or one small fixed group of them.
Statements are SQLAlchemy Core (no ORM on the hot path) and always parameterised.

Every write made under a lease is fenced by one condition, :func:`_held_clause` (this owner
still holds this attempt of the job): inside the statement itself (heartbeat, finish,
checkpoint, a metrics batch) or checked first in the same transaction by :func:`fence`
(summaries, answers, verdicts, a rewind).

Claiming is ONE atomic statement:

    UPDATE jobs SET state='running', ... WHERE id = (
        SELECT id FROM jobs WHERE state='pending' AND <runnable>
        ORDER BY priority DESC, id LIMIT 1 [FOR UPDATE SKIP LOCKED]
    ) RETURNING ...

On PostgreSQL ``SKIP LOCKED`` lets claimers pass each other's locked rows. SQLite
has no row locks (SQLAlchemy silently drops FOR UPDATE there); its transactions
begin with ``BEGIN IMMEDIATE`` (see :mod:`db.engine`), so the statement runs under
the database's single write lock and two claimers cannot pick the same row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import (Double, Integer, Text, and_, bindparam, delete, func, insert, literal, or_,
                        select, update)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from db import clock, views
from db.models import (
    ROLLUP_BUCKETS,
    ROLLUP_FACTOR,
    ROLLUP_LEVELS,
    attempts,
    attention_rows,
    code_versions,
    curve_buckets,
    curve_rollups,
    environments,
    events,
    generations,
    grid_versions,
    grids,
    job_dependencies,
    jobs,
    judgments,
    machines,
    meta,
    metrics,
    provenances,
    summaries,
    worker_jobs,
)
from jobs import states
from jobs.errors import LeaseLost
from jobs.records import Lease

_JOB_COLUMNS = (
    jobs.c.id,
    jobs.c.grid_id,
    jobs.c.spec_hash,
    jobs.c.spec,
    jobs.c.factors,
    jobs.c.experiment,
    jobs.c.state,
    jobs.c.priority,
    jobs.c.attempts,
    jobs.c.max_attempts,
    jobs.c.checkpoint_path,
    jobs.c.checkpoint_step,
    jobs.c.resource_class,
)


def _is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _dialect_insert(conn: Connection, table):
    return (postgresql.insert if _is_pg(conn) else sqlite.insert)(table)


def db_now(conn: Connection) -> float:
    """Seconds since the epoch by the database's clock (:func:`db.views.db_now`)."""
    return views.db_now(conn)


def database_id(conn: Connection) -> str:
    """This database's own id (minted with the schema): run folders on disk carry it."""
    return conn.execute(select(meta.c.value).where(meta.c.key == "database_id")).scalar_one()


# --- grids and enqueueing ---------------------------------------------------------


def upsert_grid(conn: Connection, *, name: str, source_path: str | None, source_text: str | None) -> int:
    """The grid's id, its row made or updated, and so locked until commit: enqueues of
    one grid take turns (on SQLite every writer does, from BEGIN IMMEDIATE)."""
    stmt = _dialect_insert(conn, grids).values(
        name=name, source_path=source_path, source_text=source_text, created_at=clock.now()
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[grids.c.name],
        set_={"source_path": source_path, "source_text": source_text},
    ).returning(grids.c.id)
    return conn.execute(stmt).scalar_one()


def grid_id(conn: Connection, name: str) -> int | None:
    return conn.execute(select(grids.c.id).where(grids.c.name == name)).scalar()


def grid_name(conn: Connection, grid_id: int) -> str:
    return conn.execute(select(grids.c.name).where(grids.c.id == grid_id)).scalar_one()


def grid_names(conn: Connection) -> list[str]:
    return list(conn.execute(select(grids.c.name).order_by(grids.c.id)).scalars())


def spec_hashes(conn: Connection, grid: int) -> set[str]:
    return set(conn.execute(select(jobs.c.spec_hash).where(jobs.c.grid_id == grid)).scalars())


def last_job_id(conn: Connection, grid: int) -> int:
    """The highest job id the grid has (0 if none): its next jobs' ids are higher."""
    return conn.execute(select(func.coalesce(func.max(jobs.c.id), 0)).where(jobs.c.grid_id == grid)).scalar_one()


#: Column order of the rows insert_jobs takes (spec and factors as JSON text).
JOB_ROW = ("grid_id", "spec_hash", "spec", "factors", "experiment", "priority", "max_attempts", "backoff_s",
           "resource_class")


def insert_jobs(conn: Connection, rows: Sequence[tuple], *, created_at: float, chunk: int = 5000, progress=None,
                grid_version_id: int | None = None) -> int:
    """Insert new pending jobs (tuples in JOB_ROW order), made by grid file version
    ``grid_version_id``; returns how many.

    Plain inserts, no conflict handling: the caller has locked the grid
    (:func:`upsert_grid`) and left out the spec hashes it already has
    (:func:`spec_hashes`), so every row is new. The unique (grid, spec hash)
    constraint still stands behind that: a duplicate fails the whole transaction.

    Bulk paths: executemany on SQLite; COPY straight into ``jobs`` on PostgreSQL
    (row-by-row inserts of 100,000 jobs take seconds there; COPY a fraction of one)."""
    if not rows:
        return 0
    cursor = conn.connection.cursor()
    columns = ", ".join(JOB_ROW)
    if not _is_pg(conn):
        sql = (
            f"INSERT INTO jobs ({columns}, state, attempts, created_at, updated_at, grid_version_id) "
            f"VALUES ({', '.join('?' * len(JOB_ROW))}, '{states.PENDING}', 0, ?, ?, ?)"
        )
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            cursor.executemany(sql, [(*r, created_at, created_at, grid_version_id) for r in part])
            if progress is not None:
                progress(len(part))
        return len(rows)
    tail = (states.PENDING, 0, created_at, created_at, grid_version_id)
    with cursor.copy(f"COPY jobs ({columns}, state, attempts, created_at, updated_at, grid_version_id) FROM STDIN") as copy:
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            for r in part:
                copy.write_row(r + tail)
            if progress is not None:
                progress(len(part))
    return len(rows)


def insert_dependencies(conn: Connection, *, grid: int, pairs: Sequence[tuple[str, str]]) -> None:
    """(job spec hash, upstream spec hash) pairs within one grid; existing pairs are kept."""
    if not pairs:
        return
    ids = dict(conn.execute(select(jobs.c.spec_hash, jobs.c.id).where(jobs.c.grid_id == grid)).all())
    rows = [{"job_id": ids[a], "depends_on": ids[b]} for a, b in pairs]
    stmt = _dialect_insert(conn, job_dependencies).on_conflict_do_nothing()
    conn.execute(stmt, rows)


def blocked_dependents(conn: Connection, job_id: int) -> list[Row]:
    """Pending jobs that wait on ``job_id`` (which will now never succeed)."""
    stmt = (
        select(jobs.c.id, jobs.c.attempts)
        .join(job_dependencies, job_dependencies.c.job_id == jobs.c.id)
        .where(job_dependencies.c.depends_on == job_id, jobs.c.state == states.PENDING)
    )
    return list(conn.execute(stmt))


def doomed_dependents(conn: Connection, *, grid: int | None = None, job_ids: Sequence[int] | None = None) -> list[Row]:
    """Pending jobs (of ``grid``, or among ``job_ids``) with an upstream job that is failed,
    diverged or cancelled: they can never run. Rows of (id, attempts, upstream id)."""
    upstream = jobs.alias("upstream")
    stmt = (
        select(jobs.c.id, jobs.c.attempts, func.min(upstream.c.id).label("upstream"))
        .join(job_dependencies, job_dependencies.c.job_id == jobs.c.id)
        .join(upstream, upstream.c.id == job_dependencies.c.depends_on)
        .where(jobs.c.state == states.PENDING,
               upstream.c.state.in_([states.FAILED, states.DIVERGED, states.CANCELLED]))
        .group_by(jobs.c.id, jobs.c.attempts)
        .order_by(jobs.c.id)
    )
    if grid is not None:
        stmt = stmt.where(jobs.c.grid_id == grid)
    if job_ids is not None:
        stmt = stmt.where(jobs.c.id.in_([int(i) for i in job_ids]))
    return list(conn.execute(stmt))


def dependencies_of(conn: Connection, job_ids: Sequence[int]) -> list[Row]:
    stmt = select(job_dependencies.c.job_id, job_dependencies.c.depends_on, jobs.c.state).join(
        jobs, jobs.c.id == job_dependencies.c.depends_on
    ).where(job_dependencies.c.job_id.in_(list(job_ids)))
    return list(conn.execute(stmt))


def insert_enqueue_events(conn: Connection, *, grid: int, after_id: int, created_at: float, actor: str) -> None:
    """One 'created' event for every job of the grid with an id above ``after_id``
    (:func:`last_job_id` before this enqueue inserted): server-side, no round trips."""
    conn.execute(
        insert(events).from_select(
            ["job_id", "at", "from_state", "to_state", "attempt", "actor", "reason"],
            select(
                jobs.c.id,
                literal(created_at, type_=events.c.at.type),
                literal(None, type_=events.c.from_state.type),
                literal(states.PENDING),
                literal(None, type_=events.c.attempt.type),
                literal(actor),
                literal("enqueued"),
            ).where(jobs.c.grid_id == grid, jobs.c.id > after_id),
        )
    )


# --- claiming, leases and outcomes --------------------------------------------------
#
# The hot path (claim, heartbeat, finish) is written in Core like everything else,
# but compiled once per dialect and run on the driver's cursor: SQLAlchemy's
# per-execution machinery costs more than these one-row statements themselves
# (benchmarks/queue_lifecycle.py measures the API against hand-written SQL).


class _Prepared:
    """A Core statement compiled once per dialect, executed on the DBAPI cursor."""

    def __init__(self, build) -> None:
        self._build = build  # build(pg: bool) -> statement
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}

    def _for(self, conn: Connection):
        name = conn.dialect.name
        if name not in self._compiled:
            compiled = self._build(name == "postgresql").compile(dialect=conn.dialect)
            order = tuple(compiled.positiontup) if compiled.positional else None
            self._compiled[name] = (compiled.string, order, dict(compiled.params))
        return self._compiled[name]

    def run(self, conn: Connection, params: dict[str, Any]):
        sql, order, defaults = self._for(conn)
        merged = {**defaults, **params}
        cursor = conn.connection.cursor()
        cursor.execute(sql, tuple(merged[k] for k in order) if order is not None else merged)
        return cursor


def _held_clause():
    """The fencing condition: this owner still holds this attempt of this job."""
    return and_(
        jobs.c.id == bindparam("job_id"),
        jobs.c.state == states.RUNNING,
        jobs.c.lease_owner == bindparam("owner"),
        jobs.c.attempts == bindparam("attempt"),
    )


@lru_cache(maxsize=None)
def _claim_stmt(pg: bool, one: bool = False, classed: bool = False):
    """The claim; with ``one``, only the job ``:job_id`` (``gridlab run JOB``); with
    ``classed``, only jobs of resource class ``:resource_class`` (a worker launched for it)."""
    now = clock.now()
    dep = job_dependencies.alias("dep")
    upstream = jobs.alias("upstream")
    unmet = (
        select(dep.c.job_id)
        .join(upstream, upstream.c.id == dep.c.depends_on)
        .where(dep.c.job_id == jobs.c.id, upstream.c.state != states.SUCCEEDED)
    )
    runnable = (
        select(jobs.c.id)
        .where(
            jobs.c.state == states.PENDING,
            or_(jobs.c.not_before.is_(None), jobs.c.not_before <= now),
            ~unmet.exists(),
        )
        .order_by(jobs.c.priority.desc(), jobs.c.id)
        .limit(1)
    )
    if one:
        runnable = runnable.where(jobs.c.id == bindparam("job_id"))
    if classed:
        runnable = runnable.where(jobs.c.resource_class == bindparam("resource_class"))
    if pg:
        runnable = runnable.with_for_update(skip_locked=True)
    return (
        update(jobs)
        .where(jobs.c.id == runnable.scalar_subquery())
        .values(
            state=states.RUNNING,
            lease_owner=bindparam("owner"),
            lease_expires_at=now + bindparam("lease_s", type_=Double),
            heartbeat_at=now,
            attempts=jobs.c.attempts + 1,
            metrics_batch=0,
            not_before=None,
            started_at=func.coalesce(jobs.c.started_at, now),
            updated_at=now,
        )
        .returning(*_JOB_COLUMNS, jobs.c.updated_at)
    )


_CLAIM = _Prepared(_claim_stmt)
_CLAIM_ONE = _Prepared(lambda pg: _claim_stmt(pg, one=True))
_CLAIM_CLASS = _Prepared(lambda pg: _claim_stmt(pg, classed=True))
CLAIMED_COLUMNS = tuple(c.name for c in _JOB_COLUMNS) + ("updated_at",)


def claim(conn: Connection, *, owner: str, lease_s: float, job_id: int | None = None,
          resource_class: str | None = None) -> dict[str, Any] | None:
    """Atomically take the most urgent runnable job (of ``resource_class``, if given; or job
    ``job_id``, if it is runnable): its columns by name, or None."""
    if job_id is None and resource_class is not None:
        row = _CLAIM_CLASS.run(conn, {"owner": owner, "lease_s": lease_s, "resource_class": resource_class}).fetchone()
    elif job_id is None:
        row = _CLAIM.run(conn, {"owner": owner, "lease_s": lease_s}).fetchone()
    else:
        row = _CLAIM_ONE.run(conn, {"owner": owner, "lease_s": lease_s, "job_id": job_id}).fetchone()
    if row is None:
        return None
    out = dict(zip(CLAIMED_COLUMNS, row))
    for key in ("spec", "factors"):  # psycopg decodes JSON itself; sqlite3 hands text
        if isinstance(out[key], str):
            out[key] = json.loads(out[key])
    return out


_INSERT_ATTEMPT = _Prepared(lambda pg: insert(attempts).values(
    {c: bindparam(c) for c in ("job_id", "number", "worker", "host", "pid", "started_at",
                               "slurm_job_id", "slurm_array_index", "node", "devices", "cells_sharing",
                               "provenance_id")}))


def insert_attempt(
    conn: Connection,
    *,
    job_id: int,
    number: int,
    worker: str,
    host: str,
    pid: int,
    started_at: float,
    slurm_job_id: str | None = None,
    slurm_array_index: int | None = None,
    node: str | None = None,
    devices: int | None = None,
    cells_sharing: int | None = None,
    provenance_id: int | None = None,
) -> None:
    _INSERT_ATTEMPT.run(
        conn,
        {
            "job_id": job_id, "number": number, "worker": worker, "host": host, "pid": pid,
            "started_at": started_at, "slurm_job_id": slurm_job_id, "devices": devices,
            "cells_sharing": cells_sharing if cells_sharing and cells_sharing > 1 else None,
            "slurm_array_index": slurm_array_index, "node": node, "provenance_id": provenance_id,
        },
    )


_HEARTBEAT = _Prepared(lambda pg: (
    update(jobs)
    # Not once expired by the database's clock: a worker that lost the lease (it was frozen,
    # or its heartbeats could not get through) stops rather than racing a reaper.
    .where(_held_clause(), jobs.c.lease_expires_at >= clock.now())
    .values(heartbeat_at=clock.now(), lease_expires_at=clock.now() + bindparam("lease_s", type_=Double))
))


def heartbeat(conn: Connection, *, job_id: int, owner: str, attempt: int, lease_s: float) -> bool:
    """Extend the lease. False means the lease is gone (cancelled, reclaimed or expired)."""
    cursor = _HEARTBEAT.run(conn, {"job_id": job_id, "owner": owner, "attempt": attempt, "lease_s": lease_s})
    return cursor.rowcount == 1


def _holds_stmt(pg: bool):
    stmt = select(jobs.c.id).where(_held_clause())
    # On PostgreSQL the row is share-locked until commit, so the lease cannot be
    # taken away while the caller writes under it.
    return stmt.with_for_update(read=True) if pg else stmt


_HOLDS = _Prepared(_holds_stmt)


def holds_lease(conn: Connection, *, job_id: int, owner: str, attempt: int) -> bool:
    """Whether this owner still holds this attempt of this job (the fencing condition,
    :func:`_held_clause`); on PostgreSQL the job's row stays share-locked until commit."""
    return _HOLDS.run(conn, {"job_id": job_id, "owner": owner, "attempt": attempt}).fetchone() is not None


def fence(conn: Connection, lease: Lease, what: str) -> None:
    """The one check before a write made under ``lease`` in this transaction (summaries,
    answers, verdicts, a rewind; metrics and checkpoints carry :func:`_held_clause` in their
    own statement): raises LeaseLost, and the transaction writes nothing, once the lease is
    no longer the job's current one."""
    if not holds_lease(conn, job_id=lease.job_id, owner=lease.owner, attempt=lease.attempt):
        raise LeaseLost(f"job {lease.job_id} attempt {lease.attempt}: lease lost, {what} refused")


@lru_cache(maxsize=None)
def _finish(final: bool, delay: bool, checkpoint: bool, extra: bool) -> _Prepared:
    return _Prepared(lambda pg: _finish_stmt(final, delay, checkpoint, extra))


def _finish_stmt(final: bool, delay: bool, checkpoint: bool, extra: bool):
    now = clock.now()
    values: dict[str, Any] = {
        "state": bindparam("new_state"),
        "lease_owner": None,
        "lease_expires_at": None,
        "updated_at": now,
        "last_error": bindparam("error", type_=Text),
    }
    if final:
        values["finished_at"] = now
    if delay:
        values["not_before"] = now + bindparam("delay_s", type_=Double)
    if checkpoint:
        values["checkpoint_path"] = bindparam("checkpoint_path", type_=Text)
    if extra:
        values["max_attempts"] = jobs.c.max_attempts + bindparam("extra", type_=Integer)
    return update(jobs).where(_held_clause()).values(**values)


def finish(
    conn: Connection,
    *,
    job_id: int,
    owner: str,
    attempt: int,
    state: str,
    error: str | None = None,
    not_before_delay_s: float | None = None,
    checkpoint_path: str | None = None,
    extra_attempts: int = 0,
) -> bool:
    """End this attempt: move the job to ``state`` and drop the lease. False if the
    lease was already gone (the write is refused)."""
    stmt = _finish(state in states.FINAL, not_before_delay_s is not None, checkpoint_path is not None, bool(extra_attempts))
    params = {
        "job_id": job_id, "owner": owner, "attempt": attempt, "new_state": state, "error": error,
        "delay_s": not_before_delay_s, "checkpoint_path": checkpoint_path, "extra": extra_attempts,
    }
    return stmt.run(conn, params).rowcount == 1


def retry_policy(conn: Connection, job_id: int) -> Row:
    """The job's max_attempts and backoff_s."""
    return conn.execute(select(jobs.c.max_attempts, jobs.c.backoff_s).where(jobs.c.id == job_id)).one()


_END_ATTEMPT = _Prepared(lambda pg: (
    update(attempts)
    .where(attempts.c.job_id == bindparam("a_job_id"), attempts.c.number == bindparam("a_number"), attempts.c.ended_at.is_(None))
    .values(ended_at=clock.now(), outcome=bindparam("a_outcome"), error=bindparam("a_error", type_=Text),
            error_type=bindparam("a_error_type", type_=Text), device_seconds=_device_seconds())
))


def _device_seconds():
    """An ending attempt's device-seconds: its wall time (database clock) x its devices, over the
    cells its worker shared them between (each of K cells on one GPU is charged a K-th)."""
    return ((clock.now() - attempts.c.started_at) * func.coalesce(attempts.c.devices, 0)
            / func.coalesce(attempts.c.cells_sharing, 1))


def end_attempt(conn: Connection, *, job_id: int, number: int, outcome: str, error: str | None,
                error_type: str | None = None) -> None:
    _END_ATTEMPT.run(conn, {"a_job_id": job_id, "a_number": number, "a_outcome": outcome, "a_error": error,
                            "a_error_type": error_type})


def end_open_attempts(conn: Connection, *, job_id: int, outcome: str, error: str | None) -> None:
    """Close whatever attempt of the job is still open (a running job cancelled by the user)."""
    conn.execute(update(attempts).where(attempts.c.job_id == job_id, attempts.c.ended_at.is_(None))
                 .values(ended_at=clock.now(), outcome=outcome, error=error, device_seconds=_device_seconds()))


def set_checkpoint(conn: Connection, *, job_id: int, owner: str, attempt: int, path: str, step: int) -> bool:
    """Record a sealed checkpoint (fenced): the one a later attempt resumes from."""
    stmt = update(jobs).where(_held_clause()).values(checkpoint_path=bindparam("path"), checkpoint_step=bindparam("step"))
    params = {"job_id": job_id, "owner": owner, "attempt": attempt, "path": path, "step": step}
    return conn.execute(stmt, params).rowcount == 1


def clear_checkpoint(conn: Connection, job_ids: Sequence[int]) -> None:
    """Forget the jobs' checkpoints: their next attempt starts fresh (``gridlab retry --fresh``)."""
    ids = [int(i) for i in job_ids]
    if ids:
        conn.execute(update(jobs).where(jobs.c.id.in_(ids)).values(checkpoint_path=None, checkpoint_step=None))


def rewind(conn: Connection, *, job_id: int, to_step: int | None) -> int:
    """Make the job's stored figures those of the run the new attempt continues: points and
    attention rows past ``to_step`` (all of them, when None: a fresh start) are deleted, with
    the summaries and roll-ups; a fresh start also drops the answers the job generated (they
    come from the model it trains again). A judge's verdicts stay: they are on its arms' final answers, and a
    resumed judge skips them (``gridlab retry --fresh`` drops them too: :func:`drop_outputs`).
    Returns the number of points deleted."""
    cut = delete(metrics).where(metrics.c.job_id == job_id)
    probes = delete(attention_rows).where(attention_rows.c.job_id == job_id)
    if to_step is not None:
        cut = cut.where(metrics.c.step > to_step)
        probes = probes.where(attention_rows.c.step > to_step)
    deleted = conn.execute(cut).rowcount
    conn.execute(probes)
    conn.execute(delete(summaries).where(summaries.c.job_id == job_id))
    drop_curve_rollups(conn, [job_id])
    if to_step is None:
        conn.execute(delete(generations).where(generations.c.job_id == job_id))
    return deleted


def drop_outputs(conn: Connection, job_ids: Sequence[int]) -> None:
    """Delete the jobs' answers and verdicts (a retry that starts over)."""
    ids = [int(i) for i in job_ids]
    if ids:
        conn.execute(delete(generations).where(generations.c.job_id.in_(ids)))
        conn.execute(delete(judgments).where(judgments.c.job_id.in_(ids)))


def set_resumed_from(conn: Connection, *, job_id: int, number: int, step: int | None) -> None:
    conn.execute(update(attempts).where(attempts.c.job_id == job_id, attempts.c.number == number)
                 .values(resumed_from_step=step))


def stale_leases(conn: Connection, *, limit: int = 1000) -> list[Row]:
    """Running jobs whose lease has expired by the database's clock."""
    stmt = (
        select(jobs.c.id, jobs.c.attempts, jobs.c.max_attempts, jobs.c.backoff_s, jobs.c.lease_owner)
        .where(views.lease_held(), jobs.c.lease_expires_at < clock.now())
        .order_by(jobs.c.id)
        .limit(limit)
    )
    if _is_pg(conn):
        stmt = stmt.with_for_update(skip_locked=True)
    return list(conn.execute(stmt))


def release_stale(conn: Connection, *, job_id: int, owner: str, attempt: int, state: str, delay_s: float, error: str) -> bool:
    """Take an expired lease away. Re-checks expiry, so a late heartbeat wins."""
    now = clock.now()
    values: dict[str, Any] = {
        "state": state,
        "lease_owner": None,
        "lease_expires_at": None,
        "updated_at": now,
        "last_error": error,
        "not_before": now + delay_s,
    }
    if state in states.FINAL:
        values["finished_at"] = now
    stmt = update(jobs).where(_held_clause(), jobs.c.lease_expires_at < now).values(**values)
    return conn.execute(stmt, {"job_id": job_id, "owner": owner, "attempt": attempt}).rowcount == 1


# --- operator actions -----------------------------------------------------------


def select_jobs(
    conn: Connection,
    *,
    grid: int | None = None,
    ids: Iterable[int] | None = None,
    in_states: Iterable[str] | None = None,
) -> list[Row]:
    stmt = select(
        jobs.c.id, jobs.c.grid_id, jobs.c.state, jobs.c.factors, jobs.c.attempts,
        jobs.c.lease_owner, jobs.c.last_error, jobs.c.spec_hash,
    ).order_by(jobs.c.id)
    if grid is not None:
        stmt = stmt.where(jobs.c.grid_id == grid)
    if ids is not None:
        stmt = stmt.where(jobs.c.id.in_(list(ids)))
    if in_states is not None:
        stmt = stmt.where(jobs.c.state.in_(list(in_states)))
    return list(conn.execute(stmt))


def cancel(conn: Connection, *, job_id: int, from_state: str) -> bool:
    now = clock.now()
    result = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state == from_state)
        .values(
            state=states.CANCELLED,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
            finished_at=now,
        )
    )
    return result.rowcount == 1


def requeue(conn: Connection, *, job_id: int, from_state: str, extra_attempts: int) -> bool:
    """Put a finished job back in the queue with ``extra_attempts`` more tries."""
    now = clock.now()
    result = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state == from_state)
        .values(
            state=states.PENDING,
            max_attempts=jobs.c.attempts + extra_attempts,
            not_before=None,
            finished_at=None,
            updated_at=now,
        )
    )
    return result.rowcount == 1


_EVENT_COLUMNS = ("job_id", "from_state", "to_state", "attempt", "actor", "reason")
_INSERT_EVENT = _Prepared(lambda pg: insert(events).values(at=clock.now(), **{c: bindparam(c) for c in _EVENT_COLUMNS}))


def event(job_id: int, from_state: str | None, to_state: str, attempt: int | None, actor: str,
          reason: str) -> dict[str, Any]:
    """One row for :func:`insert_events`: a state change of a job, who made it and why."""
    return {"job_id": job_id, "from_state": from_state, "to_state": to_state, "attempt": attempt, "actor": actor,
            "reason": reason}


def insert_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Rows of job_id, from_state, to_state, attempt, actor, reason; stamped with DB time."""
    if len(rows) == 1:
        _INSERT_EVENT.run(conn, rows[0])
    elif rows:
        conn.execute(insert(events).values(at=clock.now()), list(rows))


# --- metrics and summaries ------------------------------------------------------


_METRIC_COLUMNS = "job_id, attempt, name, step, value, wall_time"

#: Outcomes of :func:`store_metrics`.
STORED, ALREADY_STORED, LEASE_GONE = "stored", "already stored", "lease gone"

_CLAIM_BATCH = _Prepared(lambda pg: (
    update(jobs)
    .where(_held_clause(), jobs.c.metrics_batch < bindparam("batch"))
    .values(metrics_batch=bindparam("batch"))
))


def store_metrics(conn: Connection, *, job_id: int, owner: str, attempt: int, batch: int,
                  rows: Sequence[tuple[int, int, str, int, float | None, float]], keep_first: bool = False,
                  attention: Sequence[dict[str, Any]] = ()) -> str:
    """Store batch number ``batch`` of the attempt's points and attention rows (rows of the
    ``attention_rows`` columns, :func:`insert_attention`), fenced and exactly once.

    One statement both checks the lease and takes the batch number (``jobs.metrics_batch``,
    reset at each claim): a batch retried after its commit's acknowledgement was lost finds
    its number taken and is skipped, and a worker that lost its lease writes nothing. The
    rows are then plain inserts (COPY straight into ``metrics`` on PostgreSQL, executemany on
    SQLite). A (job, name, step) that is already stored (an experiment logging a step twice)
    keeps its first value: SQLite's ``ON CONFLICT DO NOTHING``; on PostgreSQL a COPY that hits
    the unique index fails its transaction (batch number included), and the caller sends the
    batch again with ``keep_first`` (``INSERT ... ON CONFLICT DO NOTHING``). Returns STORED,
    ALREADY_STORED or LEASE_GONE."""
    params = {"job_id": job_id, "owner": owner, "attempt": attempt, "batch": batch}
    if _CLAIM_BATCH.run(conn, params).rowcount != 1:
        return ALREADY_STORED if holds_lease(conn, job_id=job_id, owner=owner, attempt=attempt) else LEASE_GONE
    insert_metrics(conn, rows, keep_first=keep_first)
    insert_attention(conn, attention)
    return STORED


def insert_metrics(conn: Connection, rows: Sequence[tuple[int, int, str, int, float | None, float]], *,
                   keep_first: bool = True) -> None:
    """(job_id, attempt, name, step, value, wall_time) rows (see :func:`store_metrics`, the
    fenced way in). On PostgreSQL without ``keep_first``: one COPY, which fails on a
    (job, name, step) already stored."""
    if not rows:
        return
    cursor = conn.connection.cursor()
    if not _is_pg(conn):
        cursor.executemany(
            f"INSERT INTO metrics ({_METRIC_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (job_id, name, step) DO NOTHING",
            rows,
        )
        return
    if keep_first:
        cursor.executemany(
            f"INSERT INTO metrics ({_METRIC_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (job_id, name, step) DO NOTHING",
            rows,
        )
        return
    with cursor.copy(f"COPY metrics ({_METRIC_COLUMNS}) FROM STDIN") as copy:
        for r in rows:
            copy.write_row(r)


_ATTENTION_KEY = ("job_id", "step", "phase", "stack", "layer")


def insert_attention(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Attention rows (job_id, attempt, step, phase, stack, layer, entropy, entropy_norm, nan,
    max_entropy), in a metrics batch's transaction (:func:`store_metrics`, the fenced way in).
    A (job, step, phase, stack, layer) already stored keeps its first row, as a metric point
    logged twice does."""
    if rows:
        conn.execute(_dialect_insert(conn, attention_rows).on_conflict_do_nothing(index_elements=list(_ATTENTION_KEY)),
                     list(rows))


def upsert_summaries(conn: Connection, *, job_id: int, attempt: int, values: dict[str, float | None]) -> None:
    if not values:
        return
    stmt = _dialect_insert(conn, summaries)
    stmt = stmt.on_conflict_do_update(
        index_elements=[summaries.c.job_id, summaries.c.name],
        set_={"value": stmt.excluded.value, "attempt": stmt.excluded.attempt},
    )
    conn.execute(stmt, [{"job_id": job_id, "name": k, "value": v, "attempt": attempt} for k, v in values.items()])


# --- generated answers and judges' verdicts (fenced by the caller: :func:`fence`) -----


def insert_generations(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Store answers (rows of the ``generations`` columns); a (job, prompt set, question,
    turn) already stored keeps its first answer. Returns how many were new."""
    return _insert_new(conn, generations, rows, keys=("job_id", "prompt_set", "question_id", "turn"))


def insert_judgments(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Store a judge job's verdicts (rows of the ``judgments`` columns); a (job, prompt set,
    question, turn) already judged keeps its first verdict. Returns how many were new."""
    return _insert_new(conn, judgments, rows, keys=("job_id", "prompt_set", "question_id", "turn"))


def _insert_new(conn: Connection, table, rows: Sequence[dict[str, Any]], *, keys: tuple[str, ...]) -> int:
    if not rows:
        return 0
    stmt = (_dialect_insert(conn, table).values(created_at=clock.now())
            .on_conflict_do_nothing(index_elements=list(keys)).returning(table.c.id))
    return len(conn.execute(stmt, list(rows)).all())


# --- curve roll-ups ---------------------------------------------------------------


def drop_curve_rollups(conn: Connection, job_ids: Sequence[int]) -> None:
    """Remove the jobs' curve roll-ups (a job going back to the queue logs more points)."""
    ids = [int(i) for i in job_ids]
    if not ids:
        return
    conn.execute(delete(curve_buckets).where(curve_buckets.c.job_id.in_(ids)))
    conn.execute(delete(curve_rollups).where(curve_rollups.c.job_id.in_(ids)))


_HAS_POINTS = _Prepared(lambda pg: select(metrics.c.job_id).where(metrics.c.job_id == bindparam("job_id")).limit(1))


def write_curve_rollups(conn: Connection, job_ids: Sequence[int]) -> None:
    """Roll up every curve of the jobs, which have just reached a final state (their
    metrics can no longer change: writes are fenced by the lease they no longer have).

    Each (job, metric) gets, per level, its step range and grain (as
    db.models.rollup_grain) in curve_rollups, and one curve_buckets row per grain of
    steps holding points, count of numbers, sum, min, max and last step: level 0 from
    the points, each coarser level from the level below. Replaces earlier roll-ups of
    these jobs. Reads each point once: tens of milliseconds for a 4,500-step run,
    seconds for a 1,000,000-point curve."""
    ids = [int(i) for i in job_ids]
    if len(ids) == 1:  # the common case, a job finishing: one prepared probe on the hot path
        ids = ids if _HAS_POINTS.run(conn, {"job_id": ids[0]}).fetchone() is not None else []
    if not ids:
        return  # no points, no curves (and a job gets points only while running, after retry dropped its roll-up)
    drop_curve_rollups(conn, ids)
    r, b = curve_rollups, curve_buckets
    first, last = func.min(metrics.c.step), func.max(metrics.c.step)
    rollup_columns = ["job_id", "name", "level", "first_step", "last_step", "grain", "points"]
    conn.execute(insert(r).from_select(rollup_columns, (
        select(metrics.c.job_id, metrics.c.name, literal(0, Integer), first, last,
               (last - first + ROLLUP_BUCKETS) // ROLLUP_BUCKETS, func.count())  # ceil(span / ROLLUP_BUCKETS)
        .where(metrics.c.job_id.in_(ids))
        .group_by(metrics.c.job_id, metrics.c.name)
    )))
    for level in range(1, ROLLUP_LEVELS):
        conn.execute(insert(r).from_select(rollup_columns, (
            select(r.c.job_id, r.c.name, literal(level, Integer), r.c.first_step, r.c.last_step,
                   r.c.grain * ROLLUP_FACTOR**level, r.c.points)
            .where(r.c.job_id.in_(ids), r.c.level == 0)
        )))
    bucket_columns = ["job_id", "name", "level", "bucket", "last_step", "points", "value_count", "value_sum",
                      "value_min", "value_max"]
    bucket = (metrics.c.step - r.c.first_step) // r.c.grain  # integer division on both backends
    conn.execute(insert(b).from_select(bucket_columns, (
        select(metrics.c.job_id, metrics.c.name, r.c.level, bucket, func.max(metrics.c.step), func.count(),
               func.count(metrics.c.value), func.sum(metrics.c.value), func.min(metrics.c.value),
               func.max(metrics.c.value))
        .select_from(r)
        .join(metrics, and_(metrics.c.job_id == r.c.job_id, metrics.c.name == r.c.name))
        .where(r.c.job_id.in_(ids), r.c.level == 0)
        .group_by(metrics.c.job_id, metrics.c.name, r.c.level, bucket)
        # In key order: on PostgreSQL a curve's rows then share heap pages, and reading
        # 250 curves touches a few thousand pages, not a page per row.
        .order_by(metrics.c.job_id, metrics.c.name, bucket)
    )))
    for level in range(1, ROLLUP_LEVELS):
        coarser = b.c.bucket // ROLLUP_FACTOR
        conn.execute(insert(b).from_select(bucket_columns, (
            select(b.c.job_id, b.c.name, literal(level, Integer), coarser, func.max(b.c.last_step),
                   func.sum(b.c.points), func.sum(b.c.value_count), func.sum(b.c.value_sum), func.min(b.c.value_min),
                   func.max(b.c.value_max))
            .where(b.c.job_id.in_(ids), b.c.level == level - 1)
            .group_by(b.c.job_id, b.c.name, coarser)
            .order_by(b.c.job_id, b.c.name, coarser)
        )))


# --- reading ----------------------------------------------------------------------


def factor_states(conn: Connection, *, grid: int | None = None) -> list[Row]:
    stmt = select(jobs.c.factors, jobs.c.state)
    if grid is not None:
        stmt = stmt.where(jobs.c.grid_id == grid)
    return list(conn.execute(stmt))


def pending_by_class(conn: Connection) -> dict[str, int]:
    """Pending jobs per resource class (what ``gridlab launch`` submits workers for)."""
    stmt = select(jobs.c.resource_class, func.count()).where(jobs.c.state == states.PENDING).group_by(jobs.c.resource_class)
    return {cls: n for cls, n in conn.execute(stmt)}


def runnable_or_running(conn: Connection, *, resource_class: str | None = None) -> int:
    """Jobs that still need a worker: pending (now or after backoff) or running (of
    ``resource_class``, if given)."""
    stmt = select(func.count()).where(jobs.c.state.in_([states.PENDING, states.RUNNING]))
    if resource_class is not None:
        stmt = stmt.where(jobs.c.resource_class == resource_class)
    return conn.execute(stmt).scalar_one()


def job_metrics(conn: Connection, job_id: int, name: str | None = None) -> list[Row]:
    stmt = select(metrics.c.name, metrics.c.step, metrics.c.value, metrics.c.attempt).where(metrics.c.job_id == job_id)
    if name is not None:
        stmt = stmt.where(metrics.c.name == name)
    return list(conn.execute(stmt.order_by(metrics.c.name, metrics.c.step)))


def job_summaries(conn: Connection, job_id: int) -> dict[str, float]:
    """The job's final figures, name -> value (:func:`db.views.summaries_of`)."""
    return {r.name: r.value for r in views.summaries_of(conn, job_id)}


# --- dispatched workers (worker_jobs) and the attempts they run --------------------


def insert_worker_jobs(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Rows of executor, external_id, array_index, state, folder; stamped with DB time."""
    if rows:
        now = db_now(conn)
        conn.execute(insert(worker_jobs), [{**r, "reason": None, "submitted_at": now, "updated_at": now} for r in rows])


def update_worker_job(conn: Connection, *, executor: str, external_id: str, state: str, reason: str | None) -> bool:
    """Record what the executor last said about one worker; False if unknown or unchanged."""
    stmt = (
        update(worker_jobs)
        .where(
            worker_jobs.c.executor == executor,
            worker_jobs.c.external_id == external_id,
            or_(worker_jobs.c.state != state, worker_jobs.c.reason.is_distinct_from(reason)),
        )
        .values(state=state, reason=reason, updated_at=clock.now())
    )
    return conn.execute(stmt).rowcount == 1


def worker_jobs_in(conn: Connection, *, executor: str | None = None, in_states: Iterable[str] | None = None) -> list[Row]:
    stmt = select(worker_jobs).order_by(worker_jobs.c.id)
    if executor is not None:
        stmt = stmt.where(worker_jobs.c.executor == executor)
    if in_states is not None:
        stmt = stmt.where(worker_jobs.c.state.in_(list(in_states)))
    return list(conn.execute(stmt))


def worker_job_counts(conn: Connection) -> dict[tuple[str, str], int]:
    """(executor, state) -> number of workers."""
    stmt = select(worker_jobs.c.executor, worker_jobs.c.state, func.count()).group_by(
        worker_jobs.c.executor, worker_jobs.c.state
    )
    return {(executor, state): n for executor, state, n in conn.execute(stmt)}


def expired_slurm_attempts(conn: Connection, *, within_s: float = 7 * 86400) -> list[Row]:
    """Attempts run by a Slurm job that ended as ``lease_expired`` (the reaper got there
    before any sacct pass) in the last ``within_s`` seconds, by the database's clock:
    job_id, number, worker, slurm_job_id."""
    stmt = (
        select(attempts.c.job_id, attempts.c.number, attempts.c.worker, attempts.c.slurm_job_id)
        .where(
            attempts.c.outcome == states.OUTCOME_LEASE_EXPIRED,
            attempts.c.slurm_job_id.is_not(None),
            attempts.c.ended_at > clock.now() - bindparam("within_s", type_=Double),
        )
        .order_by(attempts.c.job_id, attempts.c.number)
    )
    return list(conn.execute(stmt, {"within_s": within_s}))


def refine_expired_outcome(conn: Connection, *, job_id: int, number: int, outcome: str, note: str) -> bool:
    """Give an attempt that ended ``lease_expired`` the cause Slurm knows (``node_fail``,
    ``oom``, ...), keeping its error text and adding ``note``. True if it was refined."""
    stmt = (
        update(attempts)
        .where(attempts.c.job_id == job_id, attempts.c.number == number,
               attempts.c.outcome == states.OUTCOME_LEASE_EXPIRED)
        .values(outcome=outcome,
                error=func.coalesce(attempts.c.error + literal("\n"), literal("")) + literal(note))
    )
    return conn.execute(stmt).rowcount == 1


def running_slurm_attempts(conn: Connection) -> list[Row]:
    """Attempts the database calls running (their job is running, under this attempt's
    lease) that a Slurm job runs: job_id, number, worker, slurm_job_id, started_at."""
    stmt = (
        select(attempts.c.job_id, attempts.c.number, attempts.c.worker, attempts.c.slurm_job_id, attempts.c.started_at)
        .join(jobs, jobs.c.id == attempts.c.job_id)
        .where(
            jobs.c.state == states.RUNNING,
            jobs.c.attempts == attempts.c.number,
            jobs.c.lease_owner == attempts.c.worker,
            attempts.c.ended_at.is_(None),
            attempts.c.slurm_job_id.is_not(None),
        )
        .order_by(attempts.c.job_id)
    )
    return list(conn.execute(stmt))


def runnable_count(conn: Connection, *, resource_class: str | None = None) -> int:
    """Pending jobs a worker could claim now or after their backoff (dependencies aside)."""
    stmt = select(func.count()).where(jobs.c.state == states.PENDING)
    if resource_class is not None:
        stmt = stmt.where(jobs.c.resource_class == resource_class)
    return conn.execute(stmt).scalar_one()


#: Summaries where a job records its peak memory (MiB): the device's, or the process's RSS.
PEAK_MEMORY = ("peak_mem_mib", "peak_rss_mib")


def peak_memory(conn: Connection, *, resource_class: str | None = None) -> float | None:
    """The largest peak memory a succeeded job (of ``resource_class``) recorded, or None."""
    stmt = (select(func.max(summaries.c.value)).join(jobs, jobs.c.id == summaries.c.job_id)
            .where(summaries.c.name.in_(PEAK_MEMORY), jobs.c.state == states.SUCCEEDED))
    if resource_class is not None:
        stmt = stmt.where(jobs.c.resource_class == resource_class)
    return conn.execute(stmt).scalar_one()


# --- provenance and grid file versions (migration 0007) ------------------------------
#
# Rows are found by fingerprint (or, for grid versions, by grid and text hash) and
# inserted when missing, never updated: ON CONFLICT DO NOTHING, then one SELECT, so that
# workers racing to store the same row all end up with its id.


def grid_version(conn: Connection, *, grid: int, source_path: str | None, source_text: str) -> int:
    """The id of the grid's version with this text, stored (as the grid's next number) if
    new. The caller holds the grid's row lock (:func:`upsert_grid`), so numbers never race."""
    digest = hashlib.sha256(source_text.encode("utf-8", "surrogatepass")).hexdigest()
    found = conn.execute(select(grid_versions.c.id).where(grid_versions.c.grid_id == grid,
                                                          grid_versions.c.text_hash == digest)).scalar()
    if found is not None:
        return found
    number = conn.execute(select(func.coalesce(func.max(grid_versions.c.number), 0) + 1)
                          .where(grid_versions.c.grid_id == grid)).scalar_one()
    return conn.execute(insert(grid_versions).values(
        grid_id=grid, number=number, text_hash=digest, source_path=source_path, source_text=source_text,
        created_at=clock.now()).returning(grid_versions.c.id)).scalar_one()


def _get_or_insert(conn: Connection, table, values: dict[str, Any]) -> int:
    stmt = _dialect_insert(conn, table).values(**values, created_at=clock.now())
    conn.execute(stmt.on_conflict_do_nothing(index_elements=[table.c.fingerprint]))
    return conn.execute(select(table.c.id).where(table.c.fingerprint == values["fingerprint"])).scalar_one()


def provenance_id(conn: Connection, p) -> int:
    """The id of provenance ``p`` (a jobs.provenance.Provenance), its code, environment and
    machine rows stored first where missing."""
    code, env, machine = p.code, p.environment, p.machine
    code_id = _get_or_insert(conn, code_versions, {
        "fingerprint": code.fingerprint, "files_hash": code.files_hash, "files": code.files,
        "git_commit": code.git_commit, "git_dirty": code.git_dirty, "diff_hash": code.diff_hash,
        "diff": code.diff})
    environment_id = _get_or_insert(conn, environments, {
        "fingerprint": env.fingerprint, "python": env.python, "packages": dict(env.packages), "freeze": env.freeze})
    machine_id = _get_or_insert(conn, machines, {
        "fingerprint": machine.fingerprint, "host": machine.host, "platform": machine.platform,
        "cpu_count": machine.cpu_count, "gpu_count": machine.gpu_count, "gpu_name": machine.gpu_name,
        "gpu_driver": machine.gpu_driver, "cuda_driver": machine.cuda_driver})
    return _get_or_insert(conn, provenances, {
        "fingerprint": p.fingerprint, "code_id": code_id, "environment_id": environment_id, "machine_id": machine_id,
        "code_root": p.code_root, "pinned": p.pinned})
