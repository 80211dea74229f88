"""The worker's side of the queue: claim, heartbeat, finish, release, checkpoint, rewind.

Each method is one transaction (:func:`db.session.scope`) made of statements from
:mod:`jobs.queries`, and writes an event for every state change it makes. Writes made
under a lease (heartbeat, metrics, completion) are fenced: they pass only while the
caller's :class:`~jobs.records.Lease` is still the job's current one.

The rest of the queue lives by its callers: enqueueing, cancelling, retrying and
reclaiming expired leases in :mod:`jobs.operator`; reading it in :mod:`jobs.reports`
(over the views the dashboard shares, :mod:`db.views`); the workers dispatched to Slurm
in :mod:`jobs.workers`.
"""

from __future__ import annotations

import glob
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from db.session import scope
from jobs import dependencies, queries, resources, retry, states
from jobs import provenance as provenance_mod
from jobs.errors import LeaseLost
from jobs.records import Claimed, JobRecord, Lease


@dataclass(frozen=True)
class WorkerInfo:
    """Where an attempt runs; recorded on its attempts row."""

    name: str
    host: str
    pid: int
    slurm_job_id: str | None = None
    slurm_array_index: int | None = None
    node: str | None = None
    #: the resource class this worker was launched for (it claims only such jobs); None: any
    resource_class: str | None = None
    #: GPUs this worker sees (an attempt of a class that names none is given these)
    devices: int = field(default_factory=lambda: visible_gpus())
    #: cells this worker's device is shared between (jobs.pool.DeviceShare's K); 1: its own
    cells_sharing: int = 1
    #: the code, environment and machine this worker runs with (jobs.provenance); None: not recorded
    provenance: provenance_mod.Provenance | None = None

    @classmethod
    def here(cls, name: str | None = None, **slurm: Any) -> "WorkerInfo":
        host = socket.gethostname()
        pid = os.getpid()
        return cls(name=name or f"{host}:{pid}", host=host, pid=pid, provenance=provenance_mod.current(), **slurm)


def visible_gpus() -> int:
    """GPUs this process may use, without importing torch: ``CUDA_VISIBLE_DEVICES`` where set,
    else the NVIDIA device files (0 on a machine without them)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return len(glob.glob("/dev/nvidia[0-9]*"))


class Queue:
    """The worker's side of gridlab's job queue over one database engine (see the module)."""

    def __init__(self, engine: Engine, *, lease_s: float = 30.0) -> None:
        self.engine = engine
        self.lease_s = lease_s
        self._database_id: str | None = None
        self._grid_names: dict[int, str] = {}
        self._provenance_ids: dict[str, int] = {}  # provenance fingerprint -> provenances.id, once committed

    # --- the worker's side ---------------------------------------------------------

    def _provenance_id(self, conn, provenance: provenance_mod.Provenance | None) -> int | None:
        """The provenances row of ``provenance``: from this queue's cache, else found or
        stored (its code, environment and machine each once) in this transaction."""
        if provenance is None:
            return None
        known = self._provenance_ids.get(provenance.fingerprint)
        return known if known is not None else queries.provenance_id(conn, provenance)

    def claim(self, worker: WorkerInfo, *, job_id: int | None = None) -> Claimed | None:
        """Take the most urgent runnable job, start an attempt, and lease it to ``worker``.

        A job's second and later attempts continue the run the database recorded: the
        job's curve is cut back to its recorded checkpoint's step (cleared, if it has none,
        for a fresh start), and its summaries and roll-ups dropped, in this same transaction,
        so a curve never holds points of two runs past the step they share. The worker
        rewinds further (:meth:`rewind`) if that checkpoint turns out unusable."""
        owner = f"{worker.name}"
        with scope(self.engine) as conn:
            row = queries.claim(conn, owner=owner, lease_s=self.lease_s, job_id=job_id,
                                resource_class=worker.resource_class)
            if row is None:
                return None
            job = JobRecord.from_mapping(row)
            provenance_id = self._provenance_id(conn, worker.provenance)
            queries.insert_attempt(
                conn,
                devices=resources.devices_of(job.resource_class, visible=worker.devices),
                cells_sharing=worker.cells_sharing,
                job_id=job.id,
                number=job.attempts,
                worker=worker.name,
                host=worker.host,
                pid=worker.pid,
                started_at=row["updated_at"],
                slurm_job_id=worker.slurm_job_id,
                slurm_array_index=worker.slurm_array_index,
                node=worker.node,
                provenance_id=provenance_id,
            )
            queries.insert_events(
                conn,
                [queries.event(job.id, states.PENDING, states.RUNNING, job.attempts, owner, "claimed")],
            )
            if job.attempts > 1:  # a first attempt has nothing stored to cut
                resume_step = job.checkpoint_step if job.checkpoint_path else None
                queries.rewind(conn, job_id=job.id, to_step=resume_step)
                queries.set_resumed_from(conn, job_id=job.id, number=job.attempts, step=resume_step)
        if provenance_id is not None:  # committed: later claims skip the look-up
            self._provenance_ids[worker.provenance.fingerprint] = provenance_id
        return Claimed(job=job, lease=Lease(job_id=job.id, attempt=job.attempts, owner=owner))

    def rewind(self, lease: Lease, *, to: tuple[str, int] | None, reason: str) -> None:
        """The recorded checkpoint cannot be used: continue from ``to`` (an older sealed
        checkpoint's path and step) or, with None, start fresh. Cuts the curve to match and
        records the choice on the job, the attempt and in the events (fenced)."""
        path, step = to if to is not None else (None, None)
        with scope(self.engine) as conn:
            queries.fence(conn, lease, "rewind")
            queries.rewind(conn, job_id=lease.job_id, to_step=step)
            queries.set_resumed_from(conn, job_id=lease.job_id, number=lease.attempt, step=step)
            if path is None:
                queries.clear_checkpoint(conn, [lease.job_id])
            else:
                queries.set_checkpoint(conn, job_id=lease.job_id, owner=lease.owner, attempt=lease.attempt,
                                       path=path, step=step)
            where = f"from step {step}" if step is not None else "fresh"
            queries.insert_events(conn, [queries.event(lease.job_id, states.RUNNING, states.RUNNING, lease.attempt,
                                                       lease.owner, f"{reason}; attempt {lease.attempt} starts {where}")])

    def holds(self, lease: Lease) -> bool:
        """True while ``lease`` is the job's current one (a check before file writes)."""
        with scope(self.engine, write=False) as conn:
            return queries.holds_lease(conn, job_id=lease.job_id, owner=lease.owner, attempt=lease.attempt)

    def database_id(self) -> str:
        """This database's own id (run folders on disk are named by it)."""
        if self._database_id is None:
            with scope(self.engine, write=False) as conn:
                self._database_id = queries.database_id(conn)
        return self._database_id

    def grid_name(self, grid_id: int) -> str:
        if grid_id not in self._grid_names:
            with scope(self.engine, write=False) as conn:
                self._grid_names[grid_id] = queries.grid_name(conn, grid_id)
        return self._grid_names[grid_id]

    def heartbeat(self, lease: Lease) -> None:
        """Extend the lease; raises LeaseLost if it is no longer ours (or expired). On SQLite
        it waits for another writer's lock a quarter of the lease at most, so a worker
        learns within its lease that its heartbeats are not getting through."""
        with scope(self.engine, busy_s=max(self.lease_s / 4, 0.05)) as conn:
            ok = queries.heartbeat(
                conn, job_id=lease.job_id, owner=lease.owner, attempt=lease.attempt, lease_s=self.lease_s
            )
        if not ok:
            raise LeaseLost(f"job {lease.job_id} attempt {lease.attempt} is no longer held by {lease.owner}")

    def complete(self, lease: Lease) -> None:
        self._end(lease, state=states.SUCCEEDED, outcome=states.OUTCOME_SUCCEEDED, reason="succeeded")

    def diverged(self, lease: Lease, error: str) -> None:
        with scope(self.engine) as conn:
            self._end_in(conn, lease, state=states.DIVERGED, outcome=states.OUTCOME_DIVERGED, reason=error, error=error)
            dependencies.cancel_dependents(conn, lease.job_id, actor=lease.owner)

    def fail(self, lease: Lease, error: str, *, outcome: str = states.OUTCOME_ERROR, error_type: str | None = None) -> str:
        """The attempt failed with ``outcome`` (:func:`jobs.retry.classify`): back to pending
        after a backoff, or failed for good (:data:`jobs.retry.POLICY`). Returns the job's new state."""
        with scope(self.engine) as conn:
            job = queries.retry_policy(conn, lease.job_id)
            decision = retry.decide(
                attempts=lease.attempt, max_attempts=job.max_attempts, backoff_s=job.backoff_s, outcome=outcome
            )
            reason = f"{outcome}: {error}"
            if decision.retry:
                reason += f" (retry in {decision.delay_s:.0f}s)"
            self._end_in(
                conn, lease, state=decision.state, outcome=outcome, reason=reason, error=error,
                delay_s=decision.delay_s if decision.retry else None, error_type=error_type,
            )
            if not decision.retry:
                dependencies.cancel_dependents(conn, lease.job_id, actor=lease.owner)
        return decision.state

    def release(self, lease: Lease, *, reason: str, outcome: str = states.OUTCOME_STOPPED, checkpoint_path: str | None = None) -> None:
        """Hand the job back without blame (preempted, timed out, worker stopping): it is
        runnable again at once and this attempt does not count against its limit."""
        self._end(
            lease, state=states.PENDING, outcome=outcome, reason=reason, error=None,
            delay_s=0.0, checkpoint_path=checkpoint_path, extra_attempts=1,
        )

    def set_checkpoint(self, lease: Lease, path: str, step: int) -> None:
        """Record a sealed checkpoint (fenced): later attempts resume from it."""
        with scope(self.engine) as conn:
            if not queries.set_checkpoint(conn, job_id=lease.job_id, owner=lease.owner, attempt=lease.attempt,
                                          path=path, step=step):
                raise LeaseLost(f"job {lease.job_id}: lease lost before recording checkpoint {path}")

    def _end(self, lease: Lease, **kw: Any) -> None:
        with scope(self.engine) as conn:
            self._end_in(conn, lease, **kw)

    def _end_in(
        self, conn, lease: Lease, *, state: str, outcome: str, reason: str, error: str | None = None,
        delay_s: float | None = None, checkpoint_path: str | None = None, extra_attempts: int = 0,
        error_type: str | None = None,
    ) -> None:
        ok = queries.finish(
            conn, job_id=lease.job_id, owner=lease.owner, attempt=lease.attempt, state=state, error=error,
            not_before_delay_s=delay_s, checkpoint_path=checkpoint_path, extra_attempts=extra_attempts,
        )
        if not ok:
            raise LeaseLost(f"job {lease.job_id} attempt {lease.attempt}: lease lost, {state!r} not recorded")
        queries.end_attempt(conn, job_id=lease.job_id, number=lease.attempt, outcome=outcome, error=error,
                            error_type=error_type)
        queries.insert_events(conn, [queries.event(lease.job_id, states.RUNNING, state, lease.attempt, lease.owner,
                                                   reason)])
        if state in states.FINAL:  # its curves are final: roll them up for the dashboard
            queries.write_curve_rollups(conn, [lease.job_id])
