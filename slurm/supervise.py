"""Keep the database and Slurm in step: ``gridlab supervise`` and ``launch --keep-alive``.

Every interval, ONE ``sacct`` call about all of gridlab's live worker jobs
(:func:`slurm.accounting.runs`), then:

1. ``worker_jobs`` rows take the state Slurm reports;
2. attempts the database still calls running whose Slurm run has ended (node crash,
   OOM kill, SIGKILL, a cancel the worker could not hand back in time) are ended now
   with the failure class Slurm gives (``preempted``, ``timeout``, ``node_fail``,
   ``oom``, ``cancelled``, ``error``) instead of waiting for their lease to expire;
   the retry policy decides whether the job runs again, from its last checkpoint;
   an attempt the reaper ended first (``lease_expired``, no supervisor was running) gets
   Slurm's class afterwards, for the record (the job already went on);
3. if runnable jobs remain and fewer workers are alive than wanted, more are submitted.

A run is judged only ``grace_s`` after Slurm ended it, so a worker that got its signal
has time to checkpoint and hand its job back itself (that path blames nobody).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from collections.abc import Callable
from dataclasses import dataclass, field

from jobs import reports, resources
from jobs import workers as worker_jobs
from jobs.errors import LeaseLost
from jobs.queue import Queue
from jobs.records import Lease
from slurm import accounting
from slurm.launch import worker_error
from slurm.worker import DatabaseUnreachableFromNode, parse_worker_name

log = logging.getLogger(__name__)

EXECUTOR = "slurm"
#: worker_jobs states of workers that are (or will be) running.
LIVE = ("SUBMITTED", *sorted(accounting.ACTIVE))


@dataclass
class Tick:
    """What one reconcile pass saw and did."""

    workers_alive: int = 0
    #: live workers per resource class they were submitted for (None: older, unclassed ones)
    alive_by_class: dict[str | None, int] = field(default_factory=dict)
    workers_changed: int = 0
    attempts_ended: list[tuple[int, int, str]] = field(default_factory=list)  # (job, attempt, outcome)
    attempts_refined: list[tuple[int, int, str]] = field(default_factory=list)  # lease_expired -> outcome
    submitted: int = 0
    worker_errors: list[str] = field(default_factory=list)  # last lines of workers that failed

    def describe(self) -> str:
        """The pass in one line, as ``gridlab supervise`` prints it."""
        parts = [f"workers alive {self.workers_alive}"]
        if self.submitted:
            parts.append(f"submitted {self.submitted}")
        for job, attempt, outcome in self.attempts_ended:
            parts.append(f"job {job} attempt {attempt} ended {outcome}")
        for job, attempt, outcome in self.attempts_refined:
            parts.append(f"job {job} attempt {attempt}: lease had expired, Slurm says {outcome}")
        parts += self.worker_errors
        return "; ".join(parts)

    @property
    def eventful(self) -> bool:
        """Whether the pass changed or learned anything (quiet passes are not printed)."""
        return bool(self.attempts_ended or self.attempts_refined or self.submitted or self.workers_changed
                    or self.worker_errors)


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return time.mktime(time.strptime(iso, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def reconcile(queue: Queue, *, grace_s: float = 10.0, now: Callable[[], float] = time.time) -> Tick:
    """One pass: one sacct call, then the database brought in line with it."""
    tick = Tick()
    live = worker_jobs.dispatched(queue.engine, executor=EXECUTOR, in_states=LIVE)
    attempts = worker_jobs.running_slurm_attempts(queue.engine)
    expired = worker_jobs.expired_slurm_attempts(queue.engine)
    ids = {w.external_id for w in live} | {a.slurm_job_id for a in attempts} | {a.slurm_job_id for a in expired}
    if not ids:
        return tick
    all_runs = accounting.runs(ids)
    latest = accounting.current(all_runs)

    seen = {w.external_id: (latest[w.external_id].state, latest[w.external_id].reason)
            for w in live if w.external_id in latest}
    tick.workers_changed = worker_jobs.update(queue.engine, EXECUTOR, seen)
    for w in live:
        run = latest.get(w.external_id)
        if run is not None and run.state == "FAILED" and w.folder:
            message = worker_error(Path(w.folder), w.external_id)
            if message:
                tick.worker_errors.append(f"worker {w.external_id}: {message}")
    alive = [w for w in live if w.external_id not in latest or latest[w.external_id].active]
    tick.workers_alive = len(alive)
    for w in alive:
        tick.alive_by_class[w.resource_class] = tick.alive_by_class.get(w.resource_class, 0) + 1

    for a in expired:
        run = _run_of(a, all_runs)
        if run is None or run.active or run.state == "COMPLETED":
            continue  # still running (a hung worker) or ended cleanly: the expiry is the whole story
        outcome = accounting.outcome_of(run.state)
        note = f"Slurm job {a.slurm_job_id} ended {run.state} on {run.node or '?'} (found after the lease expired)"
        if worker_jobs.refine_expired_outcome(queue.engine, a.job_id, a.number, outcome, note):
            log.warning("job %d attempt %d: %s (%s)", a.job_id, a.number, note, outcome)
            tick.attempts_refined.append((a.job_id, a.number, outcome))

    for a in attempts:
        run = _run_of(a, all_runs)
        if run is None or run.active:
            continue  # sacct does not know this start yet, or it still runs
        ended = _epoch(run.end)
        if ended is not None and now() - ended < grace_s:
            continue  # the worker may still be handing the job back itself
        outcome = accounting.outcome_of(run.state)
        error = f"Slurm job {a.slurm_job_id} ended {run.state} on {run.node or '?'} while running this attempt"
        try:
            queue.fail(Lease(job_id=a.job_id, attempt=a.number, owner=a.worker), error, outcome=outcome)
        except LeaseLost:
            continue  # the worker (or the reaper) got there first
        log.warning("job %d attempt %d: %s (%s)", a.job_id, a.number, error, outcome)
        tick.attempts_ended.append((a.job_id, a.number, outcome))
    return tick


def _run_of(attempt, all_runs: dict[str, list[accounting.Run]]) -> accounting.Run | None:
    """The start of its Slurm job that ran ``attempt`` (a requeued job starts again under
    the same id; the worker's name counts its restarts), or None if sacct lacks it yet."""
    parsed = parse_worker_name(attempt.worker)
    restart = parsed[1] if parsed else 0
    runs = all_runs.get(attempt.slurm_job_id, [])
    return runs[restart] if len(runs) > restart else None


def wanted_workers(queue: Queue, target: int, resource_class: str | None = None) -> int:
    """Workers worth having (of a resource class): no more than its jobs pending or running
    need, a worker of a ``cells_per_gpu: K`` class running K of them at once."""
    left = reports.unfinished(queue.engine, resource_class=resource_class)
    return min(target, resources.workers_for(left, resource_class))


def missing_by_class(queue: Queue, tick: Tick, target: int) -> dict[str, int]:
    """Workers to submit per resource class with pending work: up to ``target`` per class, less
    those alive for it (unclassed workers, which claim anything, count for ``default``)."""
    missing = {}
    for cls in sorted(reports.pending_by_class(queue.engine)):
        alive = tick.alive_by_class.get(cls, 0) + (tick.alive_by_class.get(None, 0) if cls == "default" else 0)
        n = wanted_workers(queue, target, cls) - alive
        if n > 0:
            missing[cls] = n
    return missing


def supervise(queue: Queue, *, workers: int, submit: Callable[[int, str], int], interval_s: float = 10.0,
              grace_s: float = 10.0, keep_alive: bool = True, on_tick: Callable[[Tick], None] | None = None,
              should_stop: Callable[[], bool] = lambda: False) -> Tick:
    """Reconcile every ``interval_s`` until no job is pending or running and no worker is
    alive; with ``keep_alive``, keep each resource class with pending work staffed: submit
    workers for it (``submit(n, resource_class) -> n submitted``) while its runnable jobs
    outnumber its live workers. Returns the last pass."""
    while True:
        tick = reconcile(queue, grace_s=grace_s)
        unreachable = [e for e in tick.worker_errors if DatabaseUnreachableFromNode.__name__ in e]
        if unreachable:  # more workers would fail the same way
            raise DatabaseUnreachableFromNode(unreachable[0].split(f"{DatabaseUnreachableFromNode.__name__}: ", 1)[-1])
        if keep_alive:
            for cls, n in missing_by_class(queue, tick, workers).items():
                submitted = submit(n, cls)
                tick.submitted += submitted
                tick.workers_alive += submitted
                tick.alive_by_class[cls] = tick.alive_by_class.get(cls, 0) + submitted
        if on_tick is not None:
            on_tick(tick)
        if reports.unfinished(queue.engine) == 0 and tick.workers_alive == 0:
            return tick
        if should_stop():
            return tick
        time.sleep(interval_s)



def worker_counts(queue: Queue, *, timeout_s: float = 10.0) -> dict[tuple[str, str], int]:
    """Dispatched workers by (executor, state), in Slurm's current word where one ``sacct``
    call answers for the live ones (else as last recorded): the Workers table of ``gridlab status``."""
    rows = worker_jobs.dispatched(queue.engine)
    live = {w.external_id for w in rows if w.executor == EXECUTOR and w.state in LIVE}
    now_state: dict[str, str] = {}
    if live:
        try:
            now_state = {k: r.state for k, r in accounting.current(accounting.runs(live, timeout_s=timeout_s)).items()}
        except accounting.SlurmUnavailable:
            pass
    counts: dict[tuple[str, str], int] = {}
    for w in rows:
        state = now_state.get(w.external_id, w.state) if w.executor == EXECUTOR else w.state
        counts[(w.executor, state)] = counts.get((w.executor, state), 0) + 1
    return counts
