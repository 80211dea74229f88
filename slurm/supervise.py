"""Keep the database and Slurm in step: ``gridlab supervise`` and ``launch --keep-alive``.

Every interval, ONE ``sacct`` call about all of gridlab's live worker jobs
(:func:`slurm.accounting.runs`), then:

1. ``worker_jobs`` rows take the state Slurm reports;
2. attempts the database still calls running whose Slurm run has ended (node crash,
   OOM kill, SIGKILL, a cancel the worker could not hand back in time) are ended now
   with the failure class Slurm gives (``preempted``, ``timeout``, ``node_fail``,
   ``oom``, ``cancelled``, ``error``) instead of waiting for their lease to expire;
   the retry policy decides whether the job runs again, from its last checkpoint;
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

from jobs.errors import LeaseLost
from jobs.queue import Queue
from jobs.records import Lease
from slurm import accounting
from slurm.launch import worker_error
from slurm.worker import DatabaseUnreachableFromNode, parse_worker_name

log = logging.getLogger("gridlab.slurm.supervise")

EXECUTOR = "slurm"
#: worker_jobs states of workers that are (or will be) running.
LIVE = ("SUBMITTED", *sorted(accounting.ACTIVE))


@dataclass
class Tick:
    """What one reconcile pass saw and did."""

    workers_alive: int = 0
    workers_changed: int = 0
    attempts_ended: list[tuple[int, int, str]] = field(default_factory=list)  # (job, attempt, outcome)
    submitted: int = 0
    worker_errors: list[str] = field(default_factory=list)  # last lines of workers that failed


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
    live = queue.workers(executor=EXECUTOR, in_states=LIVE)
    attempts = queue.running_slurm_attempts()
    ids = {w.external_id for w in live} | {a.slurm_job_id for a in attempts}
    if not ids:
        return tick
    all_runs = accounting.runs(ids)
    latest = accounting.current(all_runs)

    seen = {w.external_id: (latest[w.external_id].state, latest[w.external_id].reason)
            for w in live if w.external_id in latest}
    tick.workers_changed = queue.update_workers(EXECUTOR, seen)
    for w in live:
        run = latest.get(w.external_id)
        if run is not None and run.state == "FAILED" and w.folder:
            message = worker_error(Path(w.folder), w.external_id)
            if message:
                tick.worker_errors.append(f"worker {w.external_id}: {message}")
    tick.workers_alive = sum(1 for w in live if w.external_id not in latest or latest[w.external_id].active)

    for a in attempts:
        parsed = parse_worker_name(a.worker)
        restart = parsed[1] if parsed else 0
        runs = all_runs.get(a.slurm_job_id, [])
        if len(runs) <= restart:
            continue  # sacct does not know this start yet
        run = runs[restart]
        if run.active:
            continue
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


def wanted_workers(queue: Queue, target: int) -> int:
    """Workers worth having: no more than jobs pending or running."""
    return min(target, queue.unfinished())


def supervise(queue: Queue, *, workers: int, submit: Callable[[int], int], interval_s: float = 10.0,
              grace_s: float = 10.0, keep_alive: bool = True, on_tick: Callable[[Tick], None] | None = None,
              should_stop: Callable[[], bool] = lambda: False) -> Tick:
    """Reconcile every ``interval_s`` until no job is pending or running and no worker is
    alive; with ``keep_alive``, submit workers (``submit(n) -> n submitted``) while
    runnable jobs outnumber live workers. Returns the last pass."""
    while True:
        tick = reconcile(queue, grace_s=grace_s)
        unreachable = [e for e in tick.worker_errors if DatabaseUnreachableFromNode.__name__ in e]
        if unreachable:  # more workers would fail the same way
            raise DatabaseUnreachableFromNode(unreachable[0].split(f"{DatabaseUnreachableFromNode.__name__}: ", 1)[-1])
        missing = wanted_workers(queue, workers) - tick.workers_alive
        if keep_alive and missing > 0 and queue.pending() > 0:
            tick.submitted = submit(missing)
            tick.workers_alive += tick.submitted
        if on_tick is not None:
            on_tick(tick)
        if queue.unfinished() == 0 and tick.workers_alive == 0:
            return tick
        if should_stop():
            return tick
        time.sleep(interval_s)

