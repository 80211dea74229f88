"""What an experiment sees while it runs: its job, its lease, and the metrics API."""

from __future__ import annotations

import threading
from collections.abc import Mapping
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
    - ``ctx.checkpoint_saved(path)``: record a finished checkpoint on the job;
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

    def checkpoint_saved(self, path: str | Path) -> None:
        """Record a finished checkpoint. The metrics up to it are stored first, so a
        resumed run never has a gap between its checkpoint and its curves."""
        self.metrics.flush(wait=True)
        retry_through_outage(lambda: self.queue.set_checkpoint(self.lease, str(path)),
                             what=f"job {self.lease.job_id} checkpoint record")

    def should_stop(self) -> bool:
        return self._stop.is_set() or self._lost.is_set()

    @property
    def lease_lost(self) -> bool:
        return self._lost.is_set()
