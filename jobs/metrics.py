"""The metrics API: log per-step figures and final summaries, batched and fenced.

A worker logs through a :class:`MetricsWriter` bound to its lease. Points are
buffered and written in one transaction per batch; each batch first checks that the
lease is still held (fencing), so a worker that lost its job (frozen past its lease,
cancelled) cannot write into a run another worker now owns. A (job, name, step) that
is already stored (a resumed attempt re-logging a step) is kept, never duplicated.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from sqlalchemy.engine import Engine

from db.session import scope
from jobs import queries
from jobs.errors import LeaseLost
from jobs.records import Lease


class MetricsWriter:
    def __init__(self, engine: Engine, lease: Lease, *, flush_every: int = 2000, flush_interval_s: float = 5.0) -> None:
        self.engine = engine
        self.lease = lease
        self.flush_every = flush_every
        self.flush_interval_s = flush_interval_s
        self._buffer: list[tuple[int, int, str, int, float, float]] = []
        self._last_flush = time.monotonic()
        self.written = 0

    def log(self, step: int, values: Mapping[str, float], *, wall_time: float | None = None) -> None:
        """Buffer ``values`` (name -> number) for ``step``; non-finite values are stored as
        given (NaN/inf are findings), non-numbers are rejected."""
        t = time.time() if wall_time is None else wall_time
        job, attempt = self.lease.job_id, self.lease.attempt
        for name, value in values.items():
            self._buffer.append((job, attempt, name, int(step), float(value), t))
        if len(self._buffer) >= self.flush_every or time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def log_many(self, points: list[tuple[str, int, float, float]]) -> None:
        """Bulk form: (name, step, value, wall_time) tuples."""
        job, attempt = self.lease.job_id, self.lease.attempt
        self._buffer.extend((job, attempt, n, int(s), float(v), float(t)) for n, s, v, t in points)
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        rows, self._buffer = self._buffer, []
        with scope(self.engine) as conn:
            if not queries.holds_lease(conn, job_id=self.lease.job_id, owner=self.lease.owner, attempt=self.lease.attempt):
                raise LeaseLost(f"job {self.lease.job_id}: lease lost, {len(rows)} metric points refused")
            queries.insert_metrics(conn, rows)
        self.written += len(rows)
        self._last_flush = time.monotonic()

    def summary(self, values: Mapping[str, float]) -> None:
        """Store final figures (replacing any from an earlier attempt)."""
        clean = {k: float(v) for k, v in values.items() if v is not None and not isinstance(v, str)}
        with scope(self.engine) as conn:
            if not queries.holds_lease(conn, job_id=self.lease.job_id, owner=self.lease.owner, attempt=self.lease.attempt):
                raise LeaseLost(f"job {self.lease.job_id}: lease lost, summary refused")
            queries.upsert_summaries(conn, job_id=self.lease.job_id, attempt=self.lease.attempt, values=clean)

