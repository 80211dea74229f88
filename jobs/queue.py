"""The queue's API: enqueue, claim, heartbeat, finish, reclaim, cancel, retry.

Each method is one transaction (:func:`db.session.scope`) made of statements from
:mod:`jobs.queries`, and writes an event for every state change it makes. Writes made
under a lease (heartbeat, metrics, completion) are fenced: they pass only while the
caller's :class:`~jobs.records.Lease` is still the job's current one.
"""

from __future__ import annotations

import glob
import json
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from db.errors import GridlabError
from db.session import scope
from jobs import provenance as provenance_mod
from jobs import queries, resources, retry, states
from jobs.errors import LeaseLost
from jobs.records import Claimed, EnqueueResult, JobRecord, Lease, RunningJob


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
    """gridlab's job queue over one database engine."""

    def __init__(self, engine: Engine, *, lease_s: float = 30.0) -> None:
        self.engine = engine
        self.lease_s = lease_s
        self._database_id: str | None = None
        self._grid_names: dict[int, str] = {}
        self._provenance_ids: dict[str, int] = {}  # provenance fingerprint -> provenances.id, once committed

    # --- enqueueing ---------------------------------------------------------------

    def enqueue(
        self,
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
        with scope(self.engine) as conn:
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
                _cancel_doomed(conn, grid=grid_id, actor=actor)
        return EnqueueResult(grid=grid, total=len(new_jobs), new=new, existing=len(new_jobs) - new)

    def existing_hashes(self, grid: str) -> set[str]:
        with scope(self.engine, write=False) as conn:
            grid_id = queries.grid_id(conn, grid)
            return set() if grid_id is None else queries.spec_hashes(conn, grid_id)

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
                [_event(job.id, states.PENDING, states.RUNNING, job.attempts, owner, "claimed")],
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
            if not queries.holds_lease(conn, job_id=lease.job_id, owner=lease.owner, attempt=lease.attempt):
                raise LeaseLost(f"job {lease.job_id} attempt {lease.attempt}: lease lost before rewinding")
            queries.rewind(conn, job_id=lease.job_id, to_step=step)
            queries.set_resumed_from(conn, job_id=lease.job_id, number=lease.attempt, step=step)
            if path is None:
                queries.clear_checkpoint(conn, [lease.job_id])
            else:
                queries.set_checkpoint(conn, job_id=lease.job_id, owner=lease.owner, attempt=lease.attempt,
                                       path=path, step=step)
            where = f"from step {step}" if step is not None else "fresh"
            queries.insert_events(conn, [_event(lease.job_id, states.RUNNING, states.RUNNING, lease.attempt,
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
            _cancel_dependents(conn, lease.job_id, actor=lease.owner)

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
                _cancel_dependents(conn, lease.job_id, actor=lease.owner)
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
        queries.insert_events(conn, [_event(lease.job_id, states.RUNNING, state, lease.attempt, lease.owner, reason)])
        if state in states.FINAL:  # its curves are final: roll them up for the dashboard
            queries.write_curve_rollups(conn, [lease.job_id])

    # --- recovery -------------------------------------------------------------------

    def reclaim_stale(self, *, actor: str = "reaper") -> list[int]:
        """Take back jobs whose lease expired (a worker died, hung or lost its network):
        back to pending if attempts are left, else failed. Returns the job ids."""
        reclaimed: list[int] = []
        with scope(self.engine) as conn:
            for row in queries.stale_leases(conn):
                decision = retry.decide(
                    attempts=row.attempts, max_attempts=row.max_attempts, backoff_s=row.backoff_s,
                    outcome=states.OUTCOME_LEASE_EXPIRED,
                )
                error = f"lease of {row.lease_owner} expired (no heartbeat)"
                if queries.release_stale(
                    conn, job_id=row.id, owner=row.lease_owner, attempt=row.attempts, state=decision.state,
                    delay_s=decision.delay_s, error=error,
                ):
                    queries.end_attempt(conn, job_id=row.id, number=row.attempts, outcome=states.OUTCOME_LEASE_EXPIRED, error=error)
                    queries.insert_events(conn, [_event(row.id, states.RUNNING, decision.state, row.attempts, actor, error)])
                    if not decision.retry:
                        queries.write_curve_rollups(conn, [row.id])
                        _cancel_dependents(conn, row.id, actor=actor)
                    reclaimed.append(row.id)
        return reclaimed

    # --- operator actions -------------------------------------------------------------

    def cancel(self, *, ids: Iterable[int] | None = None, grid: str | None = None,
               where: dict[str, Any] | None = None, actor: str = "cli") -> list[int]:
        """Cancel pending and running jobs. A running job's worker finds its lease gone
        at its next heartbeat and stops."""
        done: list[int] = []
        with scope(self.engine) as conn:
            rows = self._select(conn, ids=ids, grid=grid, where=where, in_states=states.CANCELLABLE)
            events = []
            for row in rows:
                if queries.cancel(conn, job_id=row.id, from_state=row.state):
                    done.append(row.id)
                    events.append(_event(row.id, row.state, states.CANCELLED, row.attempts, actor, "cancelled by user"))
                    if row.state == states.RUNNING:  # its attempt ends here; its worker is fenced out
                        queries.end_open_attempts(conn, job_id=row.id, outcome=states.OUTCOME_CANCELLED,
                                                  error=f"cancelled by {actor}")
            queries.insert_events(conn, events)
            queries.write_curve_rollups(conn, done)  # an earlier attempt may have logged points
            for job_id in list(done):
                done.extend(_cancel_dependents(conn, job_id, actor=actor))
        return done

    def retry(self, *, ids: Iterable[int] | None = None, grid: str | None = None,
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
        with scope(self.engine) as conn:
            rows = self._select(conn, ids=ids, grid=grid, where=where, in_states=in_states)
            events = []
            for row in rows:
                if queries.requeue(conn, job_id=row.id, from_state=row.state, extra_attempts=extra_attempts):
                    done.append(row.id)
                    events.append(_event(row.id, row.state, states.PENDING, row.attempts, actor, "retried by user"))
            queries.insert_events(conn, events)
            queries.drop_curve_rollups(conn, done)  # it will log more points
            if fresh:
                queries.clear_checkpoint(conn, done)
                queries.drop_outputs(conn, done)
            doomed = set(_cancel_doomed(conn, job_ids=done, actor=actor))
        return [j for j in done if j not in doomed]

    def _select(self, conn, *, ids, grid, where, in_states):
        grid_id = None
        if grid is not None:
            grid_id = queries.grid_id(conn, grid)
            if grid_id is None:
                raise GridlabError(f"no grid named {grid!r} in this database", _known_grids_hint(conn))
        rows = queries.select_jobs(conn, grid=grid_id, ids=ids, in_states=in_states)
        if where:
            rows = [r for r in rows if all(_matches(r.factors.get(k), v) for k, v in where.items())]
        return rows

    # --- reading ----------------------------------------------------------------------

    def counts(self, grid: str | None = None) -> dict[str, int]:
        with scope(self.engine, write=False) as conn:
            grid_id = self._grid_id(conn, grid)
            counts = queries.state_counts(conn, grid=grid_id)
        return {s: counts.get(s, 0) for s in states.ALL}

    def factor_states(self, grid: str | None = None) -> list[tuple[dict[str, Any], str]]:
        with scope(self.engine, write=False) as conn:
            rows = queries.factor_states(conn, grid=self._grid_id(conn, grid))
        return [(r.factors, r.state) for r in rows]

    def summaries(self, grid: str | None = None):
        with scope(self.engine, write=False) as conn:
            return queries.summaries_table(conn, grid=self._grid_id(conn, grid))

    def running(self, grid: str | None = None) -> list[RunningJob]:
        """Running jobs with the newest step and value of their loss curve."""
        with scope(self.engine, write=False) as conn:
            rows = queries.running_progress(conn, grid=self._grid_id(conn, grid))
        return [RunningJob(id=r.id, grid=r.grid, factors=r.factors, attempt=r.attempts, worker=r.lease_owner,
                           step=r.step, total_steps=_int_or_none(r.spec.get("steps")), value=r.value,
                           heartbeat_age_s=r.heartbeat_age_s) for r in rows]

    def grids(self) -> list[str]:
        with scope(self.engine, write=False) as conn:
            return queries.grid_names(conn)

    def unfinished(self, *, resource_class: str | None = None) -> int:
        """Jobs pending or running (of ``resource_class``, if given): what is left to do."""
        with scope(self.engine, write=False) as conn:
            return queries.runnable_or_running(conn, resource_class=resource_class)

    def stale(self) -> int:
        with scope(self.engine, write=False) as conn:
            return queries.stale_count(conn)

    def jobs(self, *, grid: str | None = None, in_states: Sequence[str] | None = None):
        with scope(self.engine, write=False) as conn:
            return queries.select_jobs(conn, grid=self._grid_id(conn, grid), in_states=in_states)

    def job(self, job_id: int):
        """One job's row, or None."""
        with scope(self.engine, write=False) as conn:
            return queries.job_row(conn, job_id)

    def events(self, job_id: int):
        with scope(self.engine, write=False) as conn:
            return queries.job_events(conn, job_id)

    def attempts(self, job_id: int):
        with scope(self.engine, write=False) as conn:
            return queries.job_attempts(conn, job_id)

    # --- dispatched workers -------------------------------------------------------------

    def record_workers(self, executor: str, workers: Sequence[tuple[str, int | None]], *, folder: str | None,
                       state: str = "SUBMITTED", resource_class: str | None = None) -> None:
        """Remember workers handed to an executor: (external id, array index) pairs."""
        rows = [{"executor": executor, "external_id": ext, "array_index": idx, "state": state, "folder": folder,
                 "resource_class": resource_class} for ext, idx in workers]
        with scope(self.engine) as conn:
            queries.insert_worker_jobs(conn, rows)

    def update_workers(self, executor: str, seen: dict[str, tuple[str, str | None]]) -> int:
        """external id -> (state, reason) as the executor reports it; returns rows changed."""
        changed = 0
        with scope(self.engine) as conn:
            for ext, (state, reason) in seen.items():
                changed += queries.update_worker_job(conn, executor=executor, external_id=ext, state=state, reason=reason)
        return changed

    def workers(self, *, executor: str | None = None, in_states: Sequence[str] | None = None):
        with scope(self.engine, write=False) as conn:
            return queries.worker_jobs_in(conn, executor=executor, in_states=in_states)

    def worker_counts(self) -> dict[tuple[str, str], int]:
        with scope(self.engine, write=False) as conn:
            return queries.worker_job_counts(conn)

    def running_slurm_attempts(self):
        """Attempts the database calls running inside a Slurm job (for reconciling)."""
        with scope(self.engine, write=False) as conn:
            return queries.running_slurm_attempts(conn)

    def expired_slurm_attempts(self):
        """Recent attempts run by Slurm that ended ``lease_expired`` (for reconciling)."""
        with scope(self.engine, write=False) as conn:
            return queries.expired_slurm_attempts(conn)

    def refine_expired_outcome(self, job_id: int, number: int, outcome: str, note: str) -> bool:
        """Record the cause Slurm gives for an attempt that ended ``lease_expired``. The job's
        state is left alone: the retry policy already acted on the expiry."""
        with scope(self.engine) as conn:
            return queries.refine_expired_outcome(conn, job_id=job_id, number=number, outcome=outcome, note=note)

    def device_seconds(self, grid: str | None = None):
        """Per job: grid, factors, spec, state, resource class and its attempts' device-seconds."""
        with scope(self.engine, write=False) as conn:
            return queries.device_seconds(conn, grid=self._grid_id(conn, grid))

    def pending_by_class(self) -> dict[str, int]:
        """Pending jobs per resource class (jobs.resources)."""
        with scope(self.engine, write=False) as conn:
            return queries.pending_by_class(conn)

    def pending(self, *, resource_class: str | None = None) -> int:
        """Jobs runnable now (of ``resource_class``, if given)."""
        with scope(self.engine, write=False) as conn:
            return queries.runnable_count(conn, resource_class=resource_class)

    def peak_memory(self, *, resource_class: str | None = None) -> float | None:
        """The largest peak memory (MiB: the device's, else the process's resident set) that a
        succeeded job (of ``resource_class``) recorded; None before any did."""
        with scope(self.engine, write=False) as conn:
            return queries.peak_memory(conn, resource_class=resource_class)

    def _grid_id(self, conn, grid: str | None) -> int | None:
        if grid is None:
            return None
        grid_id = queries.grid_id(conn, grid)
        if grid_id is None:
            raise GridlabError(f"no grid named {grid!r} in this database", _known_grids_hint(conn))
        return grid_id


def _event(job_id: int, from_state: str | None, to_state: str, attempt: int | None, actor: str, reason: str) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "from_state": from_state,
        "to_state": to_state,
        "attempt": attempt,
        "actor": actor,
        "reason": reason,
    }


def _cancel_dependents(conn, job_id: int, *, actor: str) -> list[int]:
    """Jobs waiting on ``job_id``, which will never succeed now, are cancelled (and
    theirs in turn). Retrying them later is the user's call."""
    cancelled: list[int] = []
    frontier = [job_id]
    while frontier:
        upstream = frontier.pop()
        for row in queries.blocked_dependents(conn, upstream):
            if queries.cancel(conn, job_id=row.id, from_state=states.PENDING):
                queries.insert_events(conn, [_event(row.id, states.PENDING, states.CANCELLED, row.attempts, actor,
                                                    f"dependency job {upstream} will not succeed")])
                cancelled.append(row.id)
                frontier.append(row.id)
    queries.write_curve_rollups(conn, cancelled)  # an earlier attempt may have logged points
    return cancelled


def _cancel_doomed(conn, *, grid: int | None = None, job_ids: Sequence[int] | None = None, actor: str) -> list[int]:
    """Pending jobs (of ``grid`` or among ``job_ids``) whose upstream already failed, diverged or
    was cancelled can never run: cancel them (and their dependents) with the reason."""
    cancelled: list[int] = []
    for row in queries.doomed_dependents(conn, grid=grid, job_ids=job_ids):
        if queries.cancel(conn, job_id=row.id, from_state=states.PENDING):
            queries.insert_events(conn, [_event(row.id, states.PENDING, states.CANCELLED, row.attempts, actor,
                                                f"dependency job {row.upstream} will not succeed")])
            cancelled.append(row.id)
            cancelled.extend(_cancel_dependents(conn, row.id, actor=actor))
    return cancelled


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _matches(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, (list, tuple, set)):
        return any(_matches(actual, w) for w in wanted)
    return actual == wanted or str(actual) == str(wanted)


def _known_grids_hint(conn) -> str:
    names = queries.grid_names(conn)
    return f"known grids: {', '.join(names)}" if names else "this database has no grids yet; run `gridlab enqueue GRID.yaml`"
