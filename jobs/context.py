"""What an experiment sees while it runs: its job, its lease, and the metrics API."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jobs.metrics import MetricsWriter, retry_through_outage
from jobs.queue import Queue
from jobs.records import JobRecord, Lease


class JobContext:
    """Handed to the experiment function: ``run(ctx)``.

    - ``ctx.spec``: the resolved spec (every setting of this grid cell);
    - ``ctx.log(step, {"loss": ...})`` / ``ctx.summary({...})``: figures to the database;
    - ``ctx.run_dir``: this job's folder (checkpoints live under it, shared by attempts);
    - ``ctx.resume_from``: the last checkpoint recorded for the job, or None;
    - ``ctx.checkpoint(save)``: store the metrics logged so far, then run ``save()``
      (which writes a checkpoint atomically and returns its path), then record it on the
      job. In that order, any checkpoint on disk has all its metrics in the database, so
      a resumed run's curves have no gap;
    - ``ctx.should_stop()``: True when the worker must stop (signal, preemption, time
      limit, or the lease was lost): save a checkpoint and raise ``jobs.errors.Interrupted``.
    """

    def __init__(self, queue: Queue, job: JobRecord, lease: Lease, run_dir: Path, *,
                 metrics: MetricsWriter, stop: threading.Event, lost: threading.Event) -> None:
        self.queue = queue
        self.job = job
        self.lease = lease
        self.run_dir = run_dir
        self.metrics = metrics
        self._stop = stop
        self._lost = lost
        self.stop_reason: str = "worker stopping"
        self.stop_outcome: str = "stopped"

    @property
    def spec(self) -> dict[str, Any]:
        return self.job.spec

    @property
    def attempt(self) -> int:
        return self.lease.attempt

    @property
    def resume_from(self) -> str | None:
        return self.job.checkpoint_path

    def log(self, step: int, values: Mapping[str, float]) -> None:
        self.metrics.log(step, values)

    def summary(self, values: Mapping[str, float]) -> None:
        self.metrics.flush(wait=True)
        self.metrics.summary(values)

    def checkpoint(self, save: Callable[[], str | Path]) -> Path:
        """Flush metrics, write a checkpoint with ``save()``, record its path on the job."""
        self.metrics.flush(wait=True)
        path = Path(save())
        retry_through_outage(lambda: self.queue.set_checkpoint(self.lease, str(path)),
                             what=f"job {self.lease.job_id} checkpoint record")
        return path

    def should_stop(self) -> bool:
        return self._stop.is_set() or self._lost.is_set()

    @property
    def lease_lost(self) -> bool:
        return self._lost.is_set()
