"""The queue's contract, run on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest
from sqlalchemy import func, select

from db.models import events, jobs
from db.session import scope
from jobs import states
from jobs.errors import LeaseLost
from jobs.metrics import MetricsWriter
from jobs.queue import Queue, WorkerInfo
from tests.support.grids import make_jobs

pytestmark = pytest.mark.contract

W1 = WorkerInfo(name="w1", host="h", pid=1)
W2 = WorkerInfo(name="w2", host="h", pid=2)


def test_enqueue_is_idempotent_and_logs_creation(queue):
    first = queue.enqueue("g", make_jobs(5))
    again = queue.enqueue("g", make_jobs(7))
    assert (first.new, first.existing) == (5, 0)
    assert (again.new, again.existing) == (2, 5)
    assert queue.counts("g")[states.PENDING] == 7
    assert [e.to_state for e in queue.events(1)] == [states.PENDING]
    assert queue.existing_hashes("g") == {j.spec_hash for j in make_jobs(7)}


def test_concurrent_enqueues_of_one_grid_add_each_job_once_with_one_creation_event(engine, queue):
    # Overlapping job lists, enqueued at once: the grid's row lock makes them take turns,
    # so every job is added by exactly one of them and logged exactly once.
    lists = [make_jobs(200 + 50 * k) for k in range(4)]
    barrier = threading.Barrier(len(lists))

    def enqueue(new_jobs):
        barrier.wait()
        return queue.enqueue("g", new_jobs)

    with concurrent.futures.ThreadPoolExecutor(len(lists)) as pool:
        results = list(pool.map(enqueue, lists))
    assert sum(r.new for r in results) == 350
    assert [r.total for r in results] == [len(jobs) for jobs in lists]
    assert queue.existing_hashes("g") == {j.spec_hash for j in lists[-1]}
    with scope(engine, write=False) as conn:
        created = dict(conn.execute(
            select(events.c.job_id, func.count()).where(events.c.reason == "enqueued").group_by(events.c.job_id)
        ).all())
        n_jobs = conn.execute(select(func.count()).select_from(jobs)).scalar_one()
    assert n_jobs == 350 and len(created) == 350 and set(created.values()) == {1}


def test_claim_takes_highest_priority_then_oldest_and_records_attempt(queue):
    queue.enqueue("low", make_jobs(2, priority=0))
    queue.enqueue("high", make_jobs(1, priority=5, tag="h"))
    first = queue.claim(W1)
    assert first.job.priority == 5 and first.lease.attempt == 1
    second = queue.claim(W1)
    assert second.job.id == 1
    (attempt,) = queue.attempts(first.job.id)
    assert (attempt.number, attempt.worker, attempt.outcome) == (1, "w1", None)
    assert [e.to_state for e in queue.events(first.job.id)] == [states.PENDING, states.RUNNING]


def test_claim_on_empty_queue_returns_none(queue):
    assert queue.claim(W1) is None


def test_complete_ends_attempt_and_drops_lease(queue):
    queue.enqueue("g", make_jobs(1))
    c = queue.claim(W1)
    queue.heartbeat(c.lease)
    queue.complete(c.lease)
    assert queue.counts()[states.SUCCEEDED] == 1
    (attempt,) = queue.attempts(c.job.id)
    assert attempt.outcome == "succeeded" and attempt.ended_at is not None
    with pytest.raises(LeaseLost):
        queue.heartbeat(c.lease)
    with pytest.raises(LeaseLost):
        queue.complete(c.lease)  # a second completion is refused


def test_failure_retries_after_backoff_then_fails_for_good(queue):
    queue.enqueue("g", make_jobs(1, max_attempts=2, backoff_s=0.6))
    c1 = queue.claim(W1)
    assert queue.fail(c1.lease, "boom") == states.PENDING
    assert queue.claim(W1) is None, "backoff must keep the job from being claimed at once"
    time.sleep(0.8)
    c2 = queue.claim(W2)
    assert c2 is not None and c2.lease.attempt == 2
    assert queue.fail(c2.lease, "boom again") == states.FAILED
    assert queue.counts()[states.FAILED] == 1
    outcomes = [a.outcome for a in queue.attempts(c1.job.id)]
    assert outcomes == ["error", "error"]


def test_diverged_is_not_retried(queue):
    queue.enqueue("g", make_jobs(1, max_attempts=5))
    c = queue.claim(W1)
    queue.diverged(c.lease, "loss diverged at step 7")
    assert queue.counts()[states.DIVERGED] == 1
    assert queue.claim(W1) is None


def test_release_hands_job_back_without_using_an_attempt(queue):
    queue.enqueue("g", make_jobs(1, max_attempts=1))
    c = queue.claim(W1)
    queue.release(c.lease, reason="preempted", outcome="preempted", checkpoint_path="/ckpt/5")
    again = queue.claim(W2)
    assert again is not None and again.job.checkpoint_path == "/ckpt/5"
    assert again.lease.attempt == 2 and again.job.max_attempts == 2


def test_stale_lease_is_reclaimed_and_old_owner_is_fenced(engine):
    queue = Queue(engine, lease_s=0.3)
    queue.enqueue("g", make_jobs(1))
    c = queue.claim(W1)
    writer = MetricsWriter(engine, c.lease)
    writer.log(1, {"loss": 1.0})
    writer.flush()
    time.sleep(0.5)
    assert queue.reclaim_stale() == [c.job.id]
    assert queue.reclaim_stale() == []
    c2 = queue.claim(W2)
    assert c2.job.id == c.job.id and c2.lease.attempt == 2
    # The first worker wakes up: every write it tries is refused.
    with pytest.raises(LeaseLost):
        queue.heartbeat(c.lease)
    writer.log(2, {"loss": 0.5})
    with pytest.raises(LeaseLost):
        writer.flush()
    with pytest.raises(LeaseLost):
        queue.complete(c.lease)
    queue.complete(c2.lease)
    outcomes = [a.outcome for a in queue.attempts(c.job.id)]
    assert outcomes == ["lease_expired", "succeeded"]


def test_heartbeat_keeps_a_lease_alive(engine):
    queue = Queue(engine, lease_s=0.4)
    queue.enqueue("g", make_jobs(1))
    c = queue.claim(W1)
    for _ in range(4):
        time.sleep(0.2)
        queue.heartbeat(c.lease)
    assert queue.reclaim_stale() == []


def test_cancel_pending_and_running_jobs(queue):
    queue.enqueue("g", make_jobs(3))
    running = queue.claim(W1)
    done = queue.cancel(grid="g")
    assert sorted(done) == [1, 2, 3]
    assert queue.counts()[states.CANCELLED] == 3
    with pytest.raises(LeaseLost):
        queue.heartbeat(running.lease)
    assert queue.cancel(grid="g") == []


def test_retry_and_cancel_by_factor_filter(queue):
    queue.enqueue("g", make_jobs(4))
    assert queue.cancel(grid="g", where={"i": ["1", "2"]}) == [2, 3]
    assert queue.retry(grid="g", where={"i": ["2"]}) == [3]
    assert queue.counts()[states.PENDING] == 3


def test_retry_grants_more_attempts(queue):
    queue.enqueue("g", make_jobs(1, max_attempts=1))
    c = queue.claim(W1)
    assert queue.fail(c.lease, "boom") == states.FAILED
    assert queue.retry(ids=[c.job.id], extra_attempts=2) == [c.job.id]
    c2 = queue.claim(W1)
    assert c2.lease.attempt == 2
    assert queue.fail(c2.lease, "boom") == states.PENDING  # attempt 2 of 3


def test_metrics_are_stored_once_per_job_name_step(engine, queue):
    from jobs import queries
    from db.session import scope

    queue.enqueue("g", make_jobs(1))
    c = queue.claim(W1)
    w = MetricsWriter(engine, c.lease, flush_every=3)
    for step in range(10):
        w.log(step, {"loss": float(step), "acc": 0.5})
    w.flush()
    queue.release(c.lease, reason="preempted")
    c2 = queue.claim(W2)
    w2 = MetricsWriter(engine, c2.lease)
    for step in range(5, 12):  # the resumed attempt re-logs steps 5..9
        w2.log(step, {"loss": float(step) + 100})
    w2.flush()
    w2.summary({"val_loss": 1.5})
    w2.summary({"val_loss": 1.25})
    with scope(engine, write=False) as conn:
        rows = queries.job_metrics(conn, c.job.id, "loss")
        summaries = queries.job_summaries(conn, c.job.id)
    assert [r.step for r in rows] == list(range(12))
    assert rows[7].value == 7.0 and rows[7].attempt == 1, "the first write of a step is kept"
    assert rows[11].attempt == 2
    assert summaries == {"val_loss": 1.25}


def test_every_transition_writes_an_event(queue):
    queue.enqueue("g", make_jobs(1, max_attempts=3, backoff_s=0))
    c = queue.claim(W1)
    queue.fail(c.lease, "x")
    c = queue.claim(W1)
    queue.complete(c.lease)
    trail = [(e.from_state, e.to_state) for e in queue.events(c.job.id)]
    assert trail == [
        (None, "pending"), ("pending", "running"), ("running", "pending"),
        ("pending", "running"), ("running", "succeeded"),
    ]


def test_dependent_job_waits_for_its_upstream_jobs(queue):
    from dataclasses import replace

    arms = make_jobs(2)
    judge = replace(make_jobs(1, kind="judge")[0], depends_on=(arms[0].spec_hash, arms[1].spec_hash))
    queue.enqueue("g", [*arms, judge])
    a = queue.claim(W1)
    b = queue.claim(W1)
    assert queue.claim(W2) is None, "the judge must wait for both arms"
    queue.complete(a.lease)
    assert queue.claim(W2) is None
    queue.complete(b.lease)
    j = queue.claim(W2)
    assert j is not None and j.job.spec["kind"] == "judge"


def test_dependents_of_a_failed_job_are_cancelled(queue):
    from dataclasses import replace

    arm = make_jobs(1, max_attempts=1)[0]
    judge = replace(make_jobs(1, kind="judge")[0], depends_on=(arm.spec_hash,))
    queue.enqueue("g", [arm, judge])
    a = queue.claim(W1)
    assert queue.fail(a.lease, "boom") == states.FAILED
    assert queue.counts()[states.CANCELLED] == 1
    assert "will not succeed" in queue.events(2)[-1].reason


def test_invalid_input_fails_at_once_without_retry(queue, tmp_path):
    from jobs.worker import Worker
    from tests.support import runners

    queue.enqueue("g", make_jobs(1, max_attempts=5))
    Worker(queue, runners.invalid_input, runs_dir=tmp_path, heartbeat_s=5).run()
    assert queue.counts()[states.FAILED] == 1
    (attempt,) = queue.attempts(1)
    assert attempt.outcome == states.OUTCOME_INVALID and "corrupted" in attempt.error


def test_nan_and_inf_metrics_are_stored(engine, queue):
    import math

    from db.session import scope
    from jobs import queries

    queue.enqueue("g", make_jobs(1))
    c = queue.claim(W1)
    w = MetricsWriter(engine, c.lease)
    w.log(1, {"loss": float("nan")})
    w.log(2, {"loss": float("inf")})
    w.flush()
    w.summary({"val_loss": float("nan")})
    with scope(engine, write=False) as conn:
        values = [r.value for r in queries.job_metrics(conn, c.job.id, "loss")]
        summary = queries.job_summaries(conn, c.job.id)
    assert values[0] is None and values[1] == math.inf
    assert summary == {"val_loss": None}


def test_running_jobs_report_the_newest_step_and_loss_of_their_curve(queue):
    queue.enqueue("g", make_jobs(3, steps=40))
    a, b = queue.claim(W1), queue.claim(W2)
    writer = MetricsWriter(queue.engine, a.lease)
    for step in range(1, 13):
        writer.log(step, {"loss": 10.0 - step, "lr": 0.1})
    writer.log(12, {"val_loss": 99.0})  # other curves do not count
    writer.flush()
    queue.heartbeat(a.lease)
    running = {j.id: j for j in queue.running()}
    assert set(running) == {a.job.id, b.job.id}  # the third job is pending, not running
    ja, jb = running[a.job.id], running[b.job.id]
    assert (ja.step, ja.total_steps, ja.value, ja.attempt, ja.grid) == (12, 40, -2.0, 1, "g")
    assert ja.worker == a.lease.owner and 0 <= ja.heartbeat_age_s < 60
    assert (jb.step, jb.value) == (None, None)  # nothing logged yet: "starting"
    queue.complete(a.lease)
    assert [j.id for j in queue.running("g")] == [b.job.id]


def test_an_expired_slurm_attempt_can_be_given_its_cause_once(queue):
    from jobs.queue import Queue

    queue.enqueue("g", make_jobs(1))
    slurm_worker = WorkerInfo(name="node1:99", host="node1", pid=99, slurm_job_id="42_0", slurm_array_index=0,
                              node="node1")
    Queue(queue.engine, lease_s=0.01).claim(slurm_worker)
    time.sleep(0.05)
    assert queue.reclaim_stale() == [1]
    (expired,) = queue.expired_slurm_attempts()
    assert (expired.job_id, expired.number, expired.slurm_job_id) == (1, 1, "42_0")
    assert queue.refine_expired_outcome(1, 1, states.OUTCOME_NODE_FAIL, "Slurm job 42_0 ended NODE_FAIL on node1")
    (attempt,) = queue.attempts(1)
    assert attempt.outcome == states.OUTCOME_NODE_FAIL and attempt.error.endswith("ended NODE_FAIL on node1")
    assert not queue.refine_expired_outcome(1, 1, states.OUTCOME_OOM, "again")  # only a lease_expired one
    assert queue.expired_slurm_attempts() == []
    assert queue.counts()[states.PENDING] == 1  # the job's state is the reaper's
