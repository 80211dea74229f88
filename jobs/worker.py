"""A pull worker: claim a job, run it under a heartbeat, record how it ended, repeat.

The same worker runs locally (``gridlab work``) and inside Slurm jobs (``slurm/``).
It knows nothing about what a job does: it calls a *runner*, a function
``runner(ctx: JobContext)`` named by an import path such as
``harness.experiments:run``.
"""

from __future__ import annotations

import importlib
import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from db.errors import DatabaseUnavailable, GridlabError
from jobs import states
from jobs.context import JobContext
from jobs.errors import Diverged, Interrupted, LeaseLost
from jobs.metrics import MetricsWriter, retry_through_outage
from jobs.queue import Queue, WorkerInfo
from jobs.records import Claimed

log = logging.getLogger("gridlab.worker")

Runner = Callable[[JobContext], None]
MAX_ERROR_CHARS = 4000


def resolve_runner(path: str) -> Runner:
    """'package.module:function' -> the function."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name or "run")


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
    ) -> None:
        self.queue = queue
        self.runner = runner
        self.info = info or WorkerInfo.here()
        self.runs_dir = Path(runs_dir)
        self.heartbeat_s = heartbeat_s
        self.poll_s = poll_s
        self.exit_when_empty = exit_when_empty
        self.reclaim_every_s = reclaim_every_s
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
                    if self.exit_when_empty and self.queue.unfinished() == 0:
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
        return self.stats

    def _reclaim(self) -> None:
        ids = self.queue.reclaim_stale(actor=f"reaper:{self.info.name}")
        if ids:
            log.warning("reclaimed %d job(s) with expired leases: %s", len(ids), ids[:10])

    def _run_one(self, claimed: Claimed) -> None:
        job, lease = claimed.job, claimed.lease
        log.info("job %d attempt %d claimed by %s", job.id, lease.attempt, lease.owner)
        run_dir = self.runs_dir / f"job-{job.id}"
        run_dir.mkdir(parents=True, exist_ok=True)
        lost = threading.Event()
        writer = MetricsWriter(self.queue.engine, lease)
        ctx = JobContext(self.queue, job, lease, run_dir, metrics=writer, stop=self._stop, lost=lost)
        ctx.stop_reason, ctx.stop_outcome = self._stop_reason
        self._current = ctx
        beat = _Heartbeat(self.queue, lease, self.heartbeat_s, lost)
        beat.start()
        try:
            self._execute(ctx, writer)
        finally:
            beat.stop()
            self._current = None

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
        except GridlabError as exc:
            if isinstance(exc, DatabaseUnavailable):  # an outage, not the job's fault
                self._failed(lease, exc)
                return
            # The job's own input is wrong (e.g. a corrupted data file): say so, no retry.
            self._record(lambda: self.queue.fail(lease, str(exc), outcome=states.OUTCOME_INVALID))
            log.warning("job %d failed on invalid input: %s", lease.job_id, exc)
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
        error = _format_error(exc)
        new_state = self._record(lambda: self.queue.fail(lease, error))
        log.warning("job %d attempt %d failed (%s): %s", lease.job_id, lease.attempt, new_state, _one_line(exc))
        self.stats.failed += 1

    def _record(self, write: Callable[[], object]) -> object:
        """Record an outcome; retry through a database outage, give up if the lease is gone."""
        try:
            return retry_through_outage(write, what="recording an outcome")
        except LeaseLost as exc:
            self.stats.lost += 1
            log.warning("%s", exc)
            return None


def writer_safe_flush(writer: MetricsWriter) -> None:
    try:
        writer.flush(wait=True)
    except LeaseLost:
        pass


class _Heartbeat(threading.Thread):
    """Extends the lease every ``interval`` seconds until stopped or the lease is lost."""

    def __init__(self, queue: Queue, lease, interval: float, lost: threading.Event) -> None:
        super().__init__(name=f"heartbeat-{lease.job_id}", daemon=True)
        self.queue, self.lease, self.interval, self.lost = queue, lease, interval, lost
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            try:
                self.queue.heartbeat(self.lease)
            except LeaseLost as exc:
                log.warning("%s", exc)
                self.lost.set()
                return
            except DatabaseUnavailable as exc:
                log.warning("heartbeat for job %d failed: %s", self.lease.job_id, exc)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=self.interval + 5)


def _format_error(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    return text if len(text) <= MAX_ERROR_CHARS else "...\n" + text[-MAX_ERROR_CHARS:]


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
