"""A job's attention rows in the database, on SQLite and on the real PostgreSQL: written in the
metrics batches (fenced, stored once), cut back with the curve when a later attempt claims the
job, dropped on a fresh start, and read back by the shared views."""

from __future__ import annotations

import math

import pytest

from db import views
from db.session import scope
from jobs import operator
from jobs.errors import LeaseLost
from jobs.metrics import MetricsWriter
from jobs.queue import Queue, WorkerInfo
from tests.support import clock
from tests.support.grids import make_jobs

pytestmark = pytest.mark.contract

W1 = WorkerInfo(name="w1", host="h", pid=1)
W2 = WorkerInfo(name="w2", host="h", pid=2)
HEADS = 3


def _rows(step: int, layers: int = 2, *, stack: str = "") -> list[dict]:
    """One probe: layer i's head h has normalised entropy step/100 + i/10 + h/100."""
    return [{"stack": stack, "layer": i, "entropy": [2.0 * (i + 1)] * HEADS,
             "entropy_norm": [step / 100 + i / 10 + h / 100 for h in range(HEADS)], "nan": [0, i, 0],
             "max_entropy": 4.0} for i in range(layers)]


def _stored(engine, job_id: int, phase: str = "train") -> list[tuple[int, int, int]]:
    """(step, layer, attempt) of the job's rows in ``phase``, over every layer."""
    with scope(engine, write=False) as conn:
        return sorted((r.step, r.layer, r.attempt) for layer in (0, 1)
                      for r in views.attention_of_layer(conn, job_id, layer, phase=phase))


def test_rows_go_with_the_metrics_batch_and_read_back_per_step_and_per_layer(engine, queue):
    operator.enqueue(queue.engine, "g", make_jobs(1))
    c = queue.claim(W1)
    w = MetricsWriter(engine, c.lease, flush_every=10_000)
    for step in (1, 10, 20):
        w.log_attention(step, "train", _rows(step))
        w.log(step, {"loss": 1.0})
    w.log_attention(20, "eval", _rows(20, layers=1))
    w.log_attention(20, "train", [{**_rows(20)[0], "entropy_norm": [9.0] * HEADS}])  # twice: the first stays
    w.log_attention(21, "diverged", [{**_rows(21)[0], "entropy": [math.nan, math.inf, 1.0], "max_entropy": math.nan}])
    assert _stored(engine, c.job.id) == [], "buffered until the flush"
    w.flush()
    with scope(engine, write=False) as conn:
        assert views.attention_phases(conn, c.job.id) == {"train": 20, "eval": 20, "diverged": 21}
        last = views.attention_at_last_step(conn, c.job.id)
        over = views.attention_of_layer(conn, c.job.id, 1)
        (boom,) = views.attention_at_last_step(conn, c.job.id, phase="diverged")
        assert views.attention_at_last_step(conn, c.job.id, phase="eval")[0].entropy_norm == pytest.approx(
            (0.2, 0.21, 0.22))
        assert views.attention_at_last_step(conn, c.job.id + 1) == []
    assert [(r.step, r.label, r.attempt) for r in last] == [(20, "L0", 1), (20, "L1", 1)]
    assert last[1].entropy_norm == pytest.approx((0.3, 0.31, 0.32)) and last[1].nan == (0, 1, 0)
    assert last[0].entropy == (2.0,) * HEADS and last[0].max_entropy == 4.0
    assert [r.step for r in over] == [1, 10, 20] and over[0].entropy_norm == pytest.approx((0.11, 0.12, 0.13))
    assert boom.entropy == (None, None, 1.0) and boom.max_entropy is None, "not finite: stored as null"
    with pytest.raises(ValueError, match="train, eval, diverged"):
        w.log_attention(30, "warmup", _rows(30))


def test_a_reclaim_cuts_the_rows_back_to_the_checkpoint_and_the_stale_writer_is_refused(engine):
    """Attempt 1 probes steps 10, 20, 30 with its checkpoint at 20, then freezes past its lease;
    attempt 2's claim keeps the rows up to step 20 (attempt 1's) and drops step 30's; attempt
    1's next write is refused, and attempt 2's rows for 30 are its own."""
    queue = Queue(engine, lease_s=30)
    operator.enqueue(queue.engine, "g", make_jobs(1))
    c = queue.claim(W1)
    w = MetricsWriter(engine, c.lease, flush_every=10_000)
    for step in (10, 20):
        w.log_attention(step, "train", _rows(step))
    w.flush()
    queue.set_checkpoint(c.lease, "/ckpt/step-20", 20)
    w.log_attention(30, "train", _rows(30))
    w.flush()
    assert [s for s, _, _ in _stored(engine, c.job.id)] == [10, 10, 20, 20, 30, 30]
    clock.advance(engine, 31)
    assert operator.reclaim_stale(queue.engine) == [c.job.id]
    c2 = queue.claim(W2)
    assert c2.job.checkpoint_step == 20
    assert _stored(engine, c.job.id) == [(10, 0, 1), (10, 1, 1), (20, 0, 1), (20, 1, 1)]
    w.log_attention(40, "train", _rows(40))  # the first worker wakes up
    with pytest.raises(LeaseLost, match="attention rows refused"):
        w.flush()
    with pytest.raises(LeaseLost):
        w.log_attention(50, "train", _rows(50))
    w2 = MetricsWriter(engine, c2.lease)
    w2.log_attention(30, "train", _rows(30))
    w2.flush()
    assert _stored(engine, c.job.id)[4:] == [(30, 0, 2), (30, 1, 2)]
    with scope(engine, write=False) as conn:
        assert views.attention_phases(conn, c.job.id) == {"train": 30}


def test_a_fresh_start_drops_every_row(engine, queue):
    """No checkpoint: the next attempt's claim drops the rows; ``retry --fresh`` forgets the
    checkpoint, and the claim after it drops them too."""
    operator.enqueue(queue.engine, "g", make_jobs(1, max_attempts=1, backoff_s=0))
    c = queue.claim(W1)
    w = MetricsWriter(engine, c.lease)
    w.log_attention(10, "train", _rows(10))
    w.flush()
    queue.fail(c.lease, "a bug")
    operator.retry(queue.engine, ids=[c.job.id])
    c2 = queue.claim(W2)
    assert _stored(engine, c.job.id) == []
    w2 = MetricsWriter(engine, c2.lease)
    w2.log_attention(10, "train", _rows(10))
    w2.flush()
    queue.set_checkpoint(c2.lease, "/ckpt/step-10", 10)
    queue.fail(c2.lease, "another bug")
    operator.retry(queue.engine, ids=[c.job.id], fresh=True)
    queue.claim(W1)
    assert _stored(engine, c.job.id) == []


def test_a_batch_retried_after_a_lost_commit_answer_stores_its_rows_once(engine, queue):
    from jobs import queries

    operator.enqueue(queue.engine, "g", make_jobs(1))
    c = queue.claim(W1)
    rows = [{"job_id": c.job.id, "attempt": 1, "step": 5, "phase": "train", **r} for r in _rows(5)]
    for expected in (queries.STORED, queries.ALREADY_STORED):
        with scope(engine) as conn:
            assert queries.store_metrics(conn, job_id=c.job.id, owner=c.lease.owner, attempt=1, batch=1,
                                         rows=[], attention=rows) == expected
    assert len(_stored(engine, c.job.id)) == 2
    operator.cancel(queue.engine, ids=[c.job.id])
    with scope(engine) as conn:
        assert queries.store_metrics(conn, job_id=c.job.id, owner=c.lease.owner, attempt=1, batch=2, rows=[],
                                     attention=[{**rows[0], "step": 6}]) == queries.LEASE_GONE
    assert len(_stored(engine, c.job.id)) == 2


def test_rows_logged_before_a_checkpoint_are_stored_when_it_is_sealed(engine, tmp_path):
    """Through the job context: ``ctx.checkpoint`` stores the buffered rows before it seals and
    records the checkpoint, so the attempt that resumes from it finds exactly the rows up to
    its step."""
    import threading

    from jobs.context import JobContext

    queue = Queue(engine, lease_s=30)
    operator.enqueue(queue.engine, "g", make_jobs(1))
    c = queue.claim(W1)
    writer = MetricsWriter(engine, c.lease, flush_every=10_000, flush_interval_s=3600)
    ctx = JobContext(queue, c.job, c.lease, tmp_path / "run", metrics=writer, stop=threading.Event(),
                     lost=threading.Event())
    for step in (5, 10):
        ctx.log_attention(step, "train", _rows(step))
    assert _stored(engine, c.job.id) == []
    staging = ctx.attempt_dir / "ckpt-10"
    staging.mkdir(parents=True)
    (staging / "state.txt").write_text("step 10")
    ctx.checkpoint(staging, 10)
    assert [s for s, _, _ in _stored(engine, c.job.id)] == [5, 5, 10, 10]
    ctx.log_attention(15, "train", _rows(15))
    writer.flush()
    queue.release(c.lease, reason="preempted")
    c2 = queue.claim(W2)
    assert c2.job.checkpoint_step == 10
    assert [s for s, _, _ in _stored(engine, c.job.id)] == [5, 5, 10, 10]
