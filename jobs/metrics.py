"""The metrics API: log per-step figures and final summaries, batched and fenced.

A worker logs through a :class:`MetricsWriter` bound to its lease. Points are
buffered and written in one transaction per batch; each batch first checks that the
lease is still held (fencing, :func:`jobs.queries.store_metrics`; summaries and
:meth:`MetricsWriter.fence` go through :func:`jobs.queries.fence`), so a worker that lost
its job (frozen past its lease, cancelled) cannot write into a run another worker now
owns, and once the worker knows its lease is gone (``lost``) it writes nothing at all.

Every batch carries a number: a batch retried after a lost commit acknowledgement is
recognised by it and stored once. A retried job never mixes two runs in one curve: when
an attempt starts, the queue cuts the job's curve back to the checkpoint it resumes from
(or clears it, for a fresh start; :meth:`jobs.queue.Queue.claim`).

Attention probes (one row per layer and step, the head values as lists: ``log_attention``)
are buffered beside the points and go in the same numbered, fenced batches, so every flush
that stores the points (before a checkpoint is sealed, before a summary, before the job's end)
stores them too, and a claim's rewind cuts them with the curve.

If the database is briefly unreachable (a restart, a network blip), points stay in
the buffer and go with a later flush: training does not stop for an outage shorter
than the buffer can hold. ``flush(wait=True)`` (used before a job is marked finished)
keeps retrying, with backoff, until the points are stored.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from db.errors import DatabaseUnavailable
from db.models import ATTENTION_PHASES
from db.session import scope
from jobs import queries
from jobs.errors import LeaseLost
from jobs.records import Lease

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Points kept in memory while the database is unreachable, before logging fails.
MAX_BUFFER = 2_000_000
#: How long flush(wait=True) and summary() keep retrying through an outage.
OUTAGE_PATIENCE_S = 600.0


def retry_through_outage(write: Callable[[], T], *, patience_s: float = OUTAGE_PATIENCE_S, what: str = "write") -> T:
    """Run ``write``; while the database is unreachable, retry with exponential backoff
    (0.25 s doubling to 10 s) for up to ``patience_s``. LeaseLost is never retried."""
    deadline = time.monotonic() + patience_s
    delay = 0.25
    while True:
        try:
            return write()
        except DatabaseUnavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s: database unavailable (%s); retrying in %.1fs", what, exc.what, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


class MetricsWriter:
    def __init__(self, engine: Engine, lease: Lease, *, flush_every: int = 2000, flush_interval_s: float = 5.0,
                 lost: threading.Event | None = None, on_write: Callable[..., None] | None = None) -> None:
        self.engine = engine
        self.lease = lease
        self.flush_every = flush_every
        self.flush_interval_s = flush_interval_s
        self.lost = lost if lost is not None else threading.Event()
        # Told of every confirmed fenced write, with the wall clock when it began (runs.Marker.note).
        self.on_write = on_write
        self._buffer: list[tuple[int, int, str, int, float | None, float]] = []
        self._attention: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self._batch = 0
        self._inflight: tuple[int, list, list] | None = None
        self.written = 0

    def check_lease(self) -> None:
        """Raise LeaseLost if the worker already knows the lease is gone (no database trip)."""
        if self.lost.is_set():
            self._buffer, self._attention = [], []
            raise LeaseLost(f"job {self.lease.job_id} attempt {self.lease.attempt}: lease lost; nothing more is written")

    def fence(self) -> None:
        """Check, in the database, that the lease is still held (raises LeaseLost)."""
        self.check_lease()

        def check() -> None:
            try:
                with scope(self.engine, write=False) as conn:
                    queries.fence(conn, self.lease, "further writes")
            except LeaseLost:
                self.lost.set()
                raise

        retry_through_outage(check, what=f"job {self.lease.job_id} lease check")

    def log(self, step: int, values: Mapping[str, float], *, wall_time: float | None = None) -> None:
        """Buffer ``values`` (name -> number) for ``step``. NaN and inf are findings and
        are stored: inf as it is, NaN as NULL (SQLite has no NaN; NULL reads back as NaN
        in pandas). Non-numbers are rejected."""
        self.check_lease()
        t = time.time() if wall_time is None else wall_time
        job, attempt = self.lease.job_id, self.lease.attempt
        for name, value in values.items():
            self._buffer.append((job, attempt, name, int(step), _storable(value), t))
        if len(self._buffer) >= self.flush_every or time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def log_attention(self, step: int, phase: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Buffer one probe's attention rows for ``step``: one mapping per layer with ``stack``,
        ``layer``, ``entropy``, ``entropy_norm`` and ``nan`` (per head) and ``max_entropy``
        (:class:`harness.training.diagnostics.LayerRow`'s fields). ``phase`` is one of
        ``train``, ``eval``, ``diverged``. A value that is not finite is stored as null."""
        self.check_lease()
        if phase not in ATTENTION_PHASES:
            raise ValueError(f"attention phase must be one of {', '.join(ATTENTION_PHASES)}, got {phase!r}")
        job, attempt = self.lease.job_id, self.lease.attempt
        for row in rows:
            self._attention.append({
                "job_id": job, "attempt": attempt, "step": int(step), "phase": phase, "stack": str(row["stack"]),
                "layer": int(row["layer"]), "entropy": [_finite(v) for v in row["entropy"]],
                "entropy_norm": [_finite(v) for v in row["entropy_norm"]], "nan": [int(n) for n in row["nan"]],
                "max_entropy": _finite(row["max_entropy"]),
            })
        if self.buffered >= self.flush_every or time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def log_many(self, points: list[tuple[str, int, float, float]]) -> None:
        """Bulk form: (name, step, value, wall_time) tuples."""
        job, attempt = self.lease.job_id, self.lease.attempt
        self._buffer.extend((job, attempt, n, int(s), _storable(v), float(t)) for n, s, v, t in points)
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def flush(self, *, wait: bool = False) -> None:
        """Write the buffered points. On an outage: keep them for later (or, with
        ``wait``, retry until stored). Raises LeaseLost if the lease is gone."""
        self.check_lease()
        if not self._buffer and not self._attention and self._inflight is None:
            return
        try:
            if wait:
                retry_through_outage(self._write_buffer, what=f"job {self.lease.job_id} metrics")
            else:
                self._write_buffer()
        except DatabaseUnavailable:
            if wait or self.buffered > MAX_BUFFER:
                raise
            log.warning("job %d: database unavailable, %d metric points kept for the next flush",
                        self.lease.job_id, self.buffered)
            self._last_flush = time.monotonic()

    def _write_buffer(self) -> None:
        while self._inflight is not None or self._buffer or self._attention:
            self.check_lease()
            if self._inflight is None:
                # A batch's number and rows are fixed once tried: if its commit's answer is
                # lost, the retry sends exactly the same batch, which store_metrics recognises.
                self._inflight = (self._batch + 1, self._buffer, self._attention)
                self._buffer, self._attention = [], []
            batch, rows, attention = self._inflight
            began = time.time()
            outcome = self._store(batch, rows, attention)
            self._inflight = None
            if outcome == queries.LEASE_GONE:
                self._buffer, self._attention = [], []
                self.lost.set()
                raise LeaseLost(f"job {self.lease.job_id}: lease lost, {len(rows)} metric points "
                                f"and {len(attention)} attention rows refused")
            self._batch = batch
            self.written += len(rows)
            self._last_flush = time.monotonic()
            if self.on_write is not None:
                self.on_write("metrics", t=began)

    def _store(self, batch: int, rows: list, attention: list) -> str:
        def store(keep_first: bool) -> str:
            with scope(self.engine) as conn:
                return queries.store_metrics(conn, job_id=self.lease.job_id, owner=self.lease.owner,
                                             attempt=self.lease.attempt, batch=batch, rows=rows, keep_first=keep_first,
                                             attention=attention)

        try:
            return store(keep_first=False)
        except IntegrityError:  # a step logged twice: the whole batch was rolled back, number included
            return store(keep_first=True)

    @property
    def buffered(self) -> int:
        inflight = len(self._inflight[1]) + len(self._inflight[2]) if self._inflight is not None else 0
        return len(self._buffer) + len(self._attention) + inflight

    def summary(self, values: Mapping[str, float]) -> None:
        """Store final figures (replacing any from an earlier attempt)."""
        self.check_lease()
        clean = {k: _storable(v) for k, v in values.items() if v is not None and not isinstance(v, str)}

        def write() -> None:
            try:
                with scope(self.engine) as conn:
                    queries.fence(conn, self.lease, "summary")
                    queries.upsert_summaries(conn, job_id=self.lease.job_id, attempt=self.lease.attempt, values=clean)
            except LeaseLost:
                self.lost.set()
                raise

        began = time.time()
        retry_through_outage(write, what=f"job {self.lease.job_id} summary")
        if self.on_write is not None:
            self.on_write("summary", t=began)



def _storable(value: float) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


def _finite(value: float | None) -> float | None:
    """A number for a JSON column (which holds neither NaN nor inf): None if not finite."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
