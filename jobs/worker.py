"""A pull worker: claim a job, run it under a heartbeat, record how it ended, repeat.

The same worker runs locally (``gridlab work``) and inside Slurm jobs (``slurm/``).
It knows nothing about what a job does: it calls a *runner*, a function
``runner(ctx: JobContext)`` named by an import path such as
``harness.experiments:run``.
"""

from __future__ import annotations

import gc
import importlib
import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from db.errors import DatabaseUnavailable
from jobs import checkpoints, operator, reports, retry, runs, states
from jobs.context import JobContext
from jobs.errors import Diverged, Interrupted, LeaseLost
from jobs.metrics import MetricsWriter, retry_through_outage
from jobs.queue import Queue, WorkerInfo
from jobs.records import Claimed

log = logging.getLogger(__name__)

Runner = Callable[[JobContext], None]


def resolve_runner(path: str) -> Runner:
    """'package.module:function' -> the function."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name or "run")


@dataclass(frozen=True)
class WorkerOptions:
    """What a worker process is started with, locally (:mod:`jobs.pool`) or as a Slurm job
    (:mod:`slurm.worker`, where it is pickled into the launch folder): the one list of them."""

    url: str
    runner: str = "harness.experiments:run"
    runs_dir: str = "runs"
    heartbeat_s: float = 10.0
    lease_grace: float = 3.0  # a lease lasts this many heartbeat intervals
    poll_s: float = 0.5
    threads_per_worker: int | None = None
    log_level: int = logging.WARNING
    max_jobs: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: claim only jobs of this resource class (jobs.resources); None: any job
    resource_class: str | None = None
    #: cells the device is shared between (a cell of jobs.pool.DeviceShare: its K); its
    #: attempts are charged a K-th of their device-seconds
    cells_sharing: int = 1
    #: an owner-only file with the secrets the URL and ``env`` were written without (the
    #: database password, token-like values), read at start (slurm.secrets); None: none
    secrets_file: str | None = None

    @property
    def lease_s(self) -> float:
        return self.heartbeat_s * self.lease_grace

    def worker(self, queue: Queue, info: WorkerInfo) -> "Worker":
        """The worker a worker process runs with these options (each attempt's output captured)."""
        return Worker(queue, resolve_runner(self.runner), info=info, runs_dir=Path(self.runs_dir),
                      heartbeat_s=self.heartbeat_s, poll_s=self.poll_s, capture_output=True)


@dataclass
class WorkerStats:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    released: int = 0
    lost: int = 0


class Worker:
    def __init__(
        self,
        queue: Queue,
        runner: Runner,
        *,
        info: WorkerInfo | None = None,
        runs_dir: str | Path = "runs",
        heartbeat_s: float = 10.0,
        poll_s: float = 0.5,
        exit_when_empty: bool = True,
        reclaim_every_s: float = 10.0,
        capture_output: bool = False,
    ) -> None:
        self.queue = queue
        self.runner = runner
        self.info = info or WorkerInfo.here()
        self.runs_dir = Path(runs_dir)
        self.heartbeat_s = heartbeat_s
        self.poll_s = poll_s
        self.exit_when_empty = exit_when_empty
        self.reclaim_every_s = reclaim_every_s
        #: Send each attempt's stdout and stderr to its own output.log (worker processes do;
        #: a job run in the foreground, or in a test's process, copies only its logging there).
        self.capture_output = capture_output
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._stop_reason = ("worker stopping", states.OUTCOME_STOPPED)
        self._current: JobContext | None = None

    # --- control --------------------------------------------------------------------

    def request_stop(self, reason: str = "worker stopping", outcome: str = states.OUTCOME_STOPPED) -> None:
        """Ask the running experiment to checkpoint and hand its job back; claim no more."""
        self._stop_reason = (reason, outcome)
        if self._current is not None:
            self._current.stop_reason, self._current.stop_outcome = reason, outcome
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(signum, _frame):
            self.request_stop(f"signal {signal.Signals(signum).name}", states.OUTCOME_STOPPED)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # --- the loop ---------------------------------------------------------------------

    def run(self, max_jobs: int | None = None, *, outage_patience_s: float = 600.0) -> WorkerStats:
        """Claim and run jobs until the queue is empty (or ``max_jobs``, or a stop).
        Rides out a database outage of up to ``outage_patience_s``, with backoff."""
        last_reclaim = 0.0
        outage_since: float | None = None
        delay = 0.25
        while not self._stop.is_set():
            if max_jobs is not None and self.stats.claimed >= max_jobs:
                break
            try:
                now = time.monotonic()
                if now - last_reclaim >= self.reclaim_every_s:
                    self._reclaim()
                    last_reclaim = now
                claimed = self.queue.claim(self.info)
                if claimed is None:
                    self._reclaim()
                    last_reclaim = time.monotonic()
                    if self.exit_when_empty and reports.unfinished(self.queue.engine,
                                                                  resource_class=self.info.resource_class) == 0:
                        break
            except DatabaseUnavailable as exc:
                outage_since = outage_since or time.monotonic()
                if time.monotonic() - outage_since > outage_patience_s:
                    raise
                log.warning("database unavailable (%s); retrying in %.1fs", exc.what, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            outage_since, delay = None, 0.25
            if claimed is None:
                self._stop.wait(self.poll_s)
                continue
            self.stats.claimed += 1
            self._run_one(claimed)
            freeze_long_lived()
        return self.stats

    def run_job(self, job_id: int) -> Claimed | None:
        """Claim job ``job_id`` (it must be runnable) and run it here, in the foreground, with
        the same lease, heartbeat, fencing and metrics as any attempt (``gridlab run JOB``).
        Returns the claim, or None if the job was not runnable."""
        claimed = self.queue.claim(self.info, job_id=job_id)
        if claimed is not None:
            self.stats.claimed += 1
            self._run_one(claimed)
        return claimed

    def _reclaim(self) -> None:
        ids = operator.reclaim_stale(self.queue.engine, actor=f"reaper:{self.info.name}")
        if ids:
            log.warning("reclaimed %d job(s) with expired leases: %s", len(ids), ids[:10])

    def _run_one(self, claimed: Claimed) -> None:
        job, lease = claimed.job, claimed.lease
        log.info("job %d attempt %d claimed by %s", job.id, lease.attempt, lease.owner)
        lost = threading.Event()
        self._outcome_began: float | None = None
        beat = _Heartbeat(self.queue, lease, self.heartbeat_s, lost)
        beat.start()
        try:
            try:
                identity = checkpoints.Identity(database_id=self.queue.database_id(), job_id=job.id,
                                                spec_hash=job.spec_hash)
                run_dir = runs.run_dir(self.runs_dir, database_id=identity.database_id,
                                       grid=self.queue.grid_name(job.grid_id), job_id=job.id, spec_hash=job.spec_hash)
                marker = runs.Marker(runs.attempt_dir(run_dir, lease.attempt) / runs.MARKER,
                                     attempt=lease.attempt, owner=lease.owner)
                marker.note("start")
                beat.marker = marker
                resume = self._resume_point(job, lease, identity, run_dir)
                output = runs.attempt_dir(run_dir, lease.attempt) / runs.OUTPUT
            except LeaseLost as exc:
                self.stats.lost += 1
                log.warning("job %d: %s; stopped without writing", lease.job_id, exc)
                return
            except Exception as exc:  # the run folder cannot be made (a full disk...): the attempt failed
                self._failed(lease, exc)
                return
            writer = MetricsWriter(self.queue.engine, lease, lost=lost, on_write=marker.note)
            ctx = JobContext(self.queue, job, lease, run_dir, metrics=writer, stop=self._stop, lost=lost,
                             identity=identity, marker=marker, resume=resume)
            ctx.stop_reason, ctx.stop_outcome = self._stop_reason
            self._current = ctx
            lost_before = self.stats.lost
            with runs.captured_output(output, redirect=self.capture_output):
                try:
                    log.info("job %d attempt %d (%s) on %s: %s", job.id, lease.attempt, lease.owner, self.info.host,
                             f"resuming from step {resume[1]} ({resume[0]})" if resume else "starting fresh")
                    self._execute(ctx, writer)
                finally:
                    # Stopped while the attempt's output is still open: a heartbeat that logs (a
                    # lost lease) as the log file closes would reopen it, and leak it.
                    beat.stop()
            # "end" only when the outcome was recorded under the lease; a lost lease wrote nothing.
            if self.stats.lost == lost_before:
                marker.note("end", t=self._outcome_began)
            else:
                marker.note("lost")
        finally:
            beat.stop()
            self._current = None

    def _resume_point(self, job, lease, identity: checkpoints.Identity, run_dir: Path) -> tuple[Path, int] | None:
        """The checkpoint this attempt continues from: the one the database recorded, if it is
        complete and this run's; else the newest older sealed one of the run; else none (a fresh
        start). The claim already cut the curve to the recorded step; a fallback cuts further."""
        if not job.checkpoint_path or job.checkpoint_step is None:
            return None
        recorded = Path(job.checkpoint_path)
        problem = checkpoints.verify(recorded, identity, step=job.checkpoint_step)
        if problem is None:
            return recorded, job.checkpoint_step
        found = checkpoints.fallback(run_dir, identity, below_step=job.checkpoint_step, skip=recorded)
        reason = f"checkpoint {recorded} not used: {problem}"
        log.warning("job %d: %s; %s", job.id, reason,
                    f"resuming from {found[0]} (step {found[1]})" if found else "starting fresh")
        self.queue.rewind(lease, to=(str(found[0]), found[1]) if found else None, reason=reason)
        return found

    def _execute(self, ctx: JobContext, writer: MetricsWriter) -> None:
        lease = ctx.lease
        try:
            try:
                self.runner(ctx)
                writer.flush(wait=True)
            except (Diverged, Interrupted, LeaseLost):
                raise
            except Exception:
                try:
                    writer.flush()
                except Exception:  # the failure is what matters; metrics are best effort here
                    log.exception("could not flush metrics of failed job %d", lease.job_id)
                raise
        except LeaseLost as exc:
            self.stats.lost += 1
            log.warning("job %d: %s; stopped without writing", lease.job_id, exc)
            return
        except Diverged as exc:
            writer_safe_flush(writer)
            self._record(lambda: self.queue.diverged(lease, str(exc)))
            self.stats.failed += 1
            return
        except Interrupted as exc:
            writer_safe_flush(writer)
            self._record(lambda: self.queue.release(lease, reason=exc.reason, outcome=exc.outcome))
            self.stats.released += 1
            return
        except Exception as exc:
            self._failed(lease, exc)
            return
        self._record(lambda: self.queue.complete(lease))
        self.stats.succeeded += 1
        log.info("job %d succeeded", lease.job_id)

    def _failed(self, lease, exc: BaseException) -> None:
        """Record the failure with its class (jobs.retry.classify): the policy table decides
        whether and when the job runs again. The project's own one-line errors are stored as
        their line; anything else with its traceback."""
        failure = retry.classify(exc)
        error = str(exc) if failure.outcome == states.OUTCOME_INVALID else _format_error(exc)
        new_state = self._record(lambda: self.queue.fail(lease, error, outcome=failure.outcome,
                                                         error_type=failure.error_type))
        log.warning("job %d attempt %d failed (%s, %s): %s", lease.job_id, lease.attempt, failure.outcome,
                    new_state, _one_line(exc))
        log.info("job %d attempt %d: the failure in full:\n%s", lease.job_id, lease.attempt, _format_error(exc))
        self.stats.failed += 1

    def _record(self, write: Callable[[], object]) -> object:
        """Record an outcome; retry through a database outage, give up if the lease is gone."""
        self._outcome_began = time.time()  # the "end" marker's time (runs.Marker)
        try:
            return retry_through_outage(write, what="recording an outcome")
        except LeaseLost as exc:
            self.stats.lost += 1
            log.warning("%s", exc)
            return None


_frozen = False


def freeze_long_lived() -> None:
    """Move what is alive now out of the cyclic garbage collector's sight, once per process.

    Called after a worker's first job, when what survives it is mostly the libraries that job
    imported (torch, transformers, peft, lm-eval: some 600,000 objects). transformers' Trainer runs
    a full collection at every ``train()``, and each one walked all of them: 0.45 s a job here,
    longer than a tiny cell's training. Garbage is collected first; objects made later are
    collected as before. The cost of the trade is bounded: a frozen object that later dies in a
    reference cycle is never freed, and those are at most what was alive at the freeze."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True


def writer_safe_flush(writer: MetricsWriter) -> None:
    try:
        writer.flush(wait=True)
    except LeaseLost:
        pass


class _Heartbeat(threading.Thread):
    """Extends the lease every ``interval`` seconds until stopped or the lease is lost.

    Any error of a heartbeat (the server down, SQLite's write lock held by another process,
    a full disk) is logged and retried, sooner than the interval, while the lease may still be
    ours. A heartbeat refused (cancelled, reclaimed, expired by the database's clock), or none
    getting through for a whole lease by this process's clock, sets ``lost``: the job then
    writes nothing more and stops. The thread never dies of an exception."""

    def __init__(self, queue: Queue, lease, interval: float, lost: threading.Event) -> None:
        super().__init__(name=f"heartbeat-{lease.job_id}", daemon=True)
        self.queue, self.lease, self.interval, self.lost = queue, lease, interval, lost
        self.marker: runs.Marker | None = None
        self.failures = 0
        self._done = threading.Event()

    def run(self) -> None:
        last_ok = time.monotonic()  # the claim just extended the lease
        wait = self.interval
        while not self._done.wait(wait):
            started, began = time.monotonic(), time.time()
            try:
                self.queue.heartbeat(self.lease)
            except LeaseLost as exc:
                log.warning("%s", exc)
                self.lost.set()
                return
            except Exception as exc:  # noqa: BLE001 - every error is retried within the lease
                self.failures += 1
                left = self.queue.lease_s - (time.monotonic() - last_ok)
                if left <= 0:
                    log.warning("job %d: no heartbeat got through for a whole lease (%.1fs; last error: %s); "
                                "the lease is taken as lost and the job stops writing",
                                self.lease.job_id, self.queue.lease_s, exc)
                    self.lost.set()
                    return
                log.warning("heartbeat for job %d failed (%s); retrying, %.1fs of lease left",
                            self.lease.job_id, exc, left)
                wait = max(min(self.interval, left / 4), 0.01)
                continue
            last_ok, wait = started, self.interval
            if self.marker is not None:
                self.marker.note("beat", t=began)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=self.interval + 5)


def _format_error(exc: BaseException) -> str:
    """The whole traceback, chained causes included (stored on the attempt in full)."""
    return "".join(traceback.format_exception(exc))


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
