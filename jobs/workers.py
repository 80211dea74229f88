"""Workers handed to an executor (Slurm, or local processes) and the attempts they run:
the bookkeeping ``gridlab launch`` and the supervisor (:mod:`slurm.supervise`) keep in
``worker_jobs``, and the attempts they reconcile with what ``sacct`` says.

Each function is one transaction over the engine, of statements from :mod:`jobs.queries`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Engine, Row

from db.session import scope
from jobs import queries


def record(engine: Engine, executor: str, workers: Sequence[tuple[str, int | None]], *, folder: str | None,
           state: str = "SUBMITTED", resource_class: str | None = None) -> None:
    """Remember workers handed to an executor: (external id, array index) pairs."""
    rows = [{"executor": executor, "external_id": ext, "array_index": idx, "state": state, "folder": folder,
             "resource_class": resource_class} for ext, idx in workers]
    with scope(engine) as conn:
        queries.insert_worker_jobs(conn, rows)


def update(engine: Engine, executor: str, seen: dict[str, tuple[str, str | None]]) -> int:
    """external id -> (state, reason) as the executor reports it; returns rows changed."""
    changed = 0
    with scope(engine) as conn:
        for ext, (state, reason) in seen.items():
            changed += queries.update_worker_job(conn, executor=executor, external_id=ext, state=state, reason=reason)
    return changed


def dispatched(engine: Engine, *, executor: str | None = None, in_states: Sequence[str] | None = None) -> list[Row]:
    """The workers recorded (of ``executor``, in the executor's ``in_states``), oldest first."""
    with scope(engine, write=False) as conn:
        return queries.worker_jobs_in(conn, executor=executor, in_states=in_states)


def counts(engine: Engine) -> dict[tuple[str, str], int]:
    """(executor, state) -> number of workers."""
    with scope(engine, write=False) as conn:
        return queries.worker_job_counts(conn)


def running_slurm_attempts(engine: Engine) -> list[Row]:
    """Attempts the database calls running inside a Slurm job (for reconciling)."""
    with scope(engine, write=False) as conn:
        return queries.running_slurm_attempts(conn)


def expired_slurm_attempts(engine: Engine) -> list[Row]:
    """Recent attempts run by Slurm that ended ``lease_expired`` (for reconciling)."""
    with scope(engine, write=False) as conn:
        return queries.expired_slurm_attempts(conn)


def refine_expired_outcome(engine: Engine, job_id: int, number: int, outcome: str, note: str) -> bool:
    """Record the cause Slurm gives for an attempt that ended ``lease_expired``. The job's
    state is left alone: the retry policy already acted on the expiry."""
    with scope(engine) as conn:
        return queries.refine_expired_outcome(conn, job_id=job_id, number=number, outcome=outcome, note=note)
