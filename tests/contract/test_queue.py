"""The queue's contract, run on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time

import pytest
from sqlalchemy import func, select

from db.models import events, jobs
from db.session import scope
from jobs import operator, reports, states
from jobs import workers as worker_jobs
from jobs.errors import LeaseLost
from jobs.metrics import MetricsWriter
from jobs.queue import Queue, WorkerInfo
from tests.support import clock, results
from tests.support.grids import make_jobs

pytestmark = pytest.mark.contract

W1 = WorkerInfo(name="w1", host="h", pid=1)
W2 = WorkerInfo(name="w2", host="h", pid=2)


def test_enqueue_is_idempotent_and_logs_creation(queue):
    first = operator.enqueue(queue.engine, "g", make_jobs(5))
    again = operator.enqueue(queue.engine, "g", make_jobs(7))
    assert (first.new, first.existing) == (5, 0)
    assert (again.new, again.existing) == (2, 5)
    assert reports.counts(queue.engine, "g")[states.PENDING] == 7
    assert [e.to_state for e in reports.events(queue.engine, 1)] == [states.PENDING]
    assert operator.existing_hashes(queue.engine, "g") == {j.spec_hash for j in make_jobs(7)}


def test_concurrent_enqueues_of_one_grid_add_each_job_once_with_one_creation_event(engine, queue):
    # Overlapping job lists, enqueued at once: the grid's row lock makes them take turns,
    # so every job is added by exactly one of them and logged exactly once.
    lists = [make_jobs(200 + 50 * k) for k in range(4)]
    barrier = threading.Barrier(len(lists))

    def enqueue(new_jobs):
        barrier.wait()
        return operator.enqueue(queue.engine, "g", new_jobs)

    with concurrent.futures.ThreadPoolExecutor(len(lists)) as pool:
        results = list(pool.map(enqueue, lists))
    assert sum(r.new for r in results) == 350
    assert [r.total for r in results] == [len(jobs) for jobs in lists]
    assert operator.existing_hashes(queue.engine, "g") == {j.spec_hash for j in lists[-1]}
    with scope(engine, write=False) as conn:
        created = dict(conn.execute(
            select(events.c.job_id, func.count()).where(events.c.reason == "enqueued").group_by(events.c.job_id)
        ).all())
        n_jobs = conn.execute(select(func.count()).select_from(jobs)).scalar_one()
    assert n_jobs == 350 and len(created) == 350 and set(created.values()) == {1}


def test_claim_takes_highest_priority_then_oldest_and_records_attempt(queue):
    operator.enqueue(queue.engine, "low", make_jobs(2, priority=0))
    operator.enqueue(queue.engine, "high", make_jobs(1, priority=5, tag="h"))
    first = queue.claim(W1)
    assert first.job.priority == 5 and first.lease.attempt == 1
    second = queue.claim(W1)
    assert second.job.id == 1
    (attempt,) = reports.attempts(queue.engine, first.job.id)
    assert (attempt.number, attempt.worker, attempt.outcome) == (1, "w1", None)
    assert [e.to_state for e in reports.events(queue.engine, first.job.id)] == [states.PENDING, states.RUNNING]


def test_claim_on_empty_queue_returns_none(queue):
    assert queue.claim(W1) is None


def test_complete_ends_attempt_and_drops_lease(queue):
    operator.enqueue(queue.engine, "g", make_jobs(1))
    c = queue.claim(W1)
    queue.heartbeat(c.lease)
    queue.complete(c.lease)
    assert reports.counts(queue.engine)[states.SUCCEEDED] == 1
    (attempt,) = reports.attempts(queue.engine, c.job.id)
    assert attempt.outcome == "succeeded" and attempt.ended_at is not None
    with pytest.raises(LeaseLost):
        queue.heartbeat(c.lease)
    with pytest.raises(LeaseLost):
        queue.complete(c.lease)  # a second completion is refused


def test_failure_retries_after_backoff_then_fails_for_good(queue):
    # The backoff is judged by the database's clock: moved forward (tests/support/clock.py), not waited for.
    operator.enqueue(queue.engine, "g", make_jobs(1, max_attempts=2, backoff_s=60))
    c1 = queue.claim(W1)
    assert queue.fail(c1.lease, "boom") == states.PENDING
    assert queue.claim(W1) is None, "backoff must keep the job from being claimed at once"
    clock.advance(queue.engine, 55)
    assert queue.claim(W1) is None, "nor before its 60 s are up"
    clock.advance(queue.engine, 10)
    c2 = queue.claim(W2)
    assert c2 is not None and c2.lease.attempt == 2
    assert queue.fail(c2.lease, "boom again") == states.FAILED
    assert reports.counts(queue.engine)[states.FAILED] == 1
    outcomes = [a.outcome for a in reports.attempts(queue.engine, c1.job.id)]
    assert outcomes == ["error", "error"]


def test_diverged_is_not_retried(queue):
    operator.enqueue(queue.engine, "g", make_jobs(1, max_attempts=5))
    c = queue.claim(W1)
    queue.diverged(c.lease, "loss diverged at step 7")
    assert reports.counts(queue.engine)[states.DIVERGED] == 1
    assert queue.claim(W1) is None


def test_release_hands_job_back_without_using_an_attempt(queue):
    operator.enqueue(queue.engine, "g", make_jobs(1, max_attempts=1))
    c = queue.claim(W1)
    queue.release(c.lease, reason="preempted", outcome="preempted", checkpoint_path="/ckpt/5")
    again = queue.claim(W2)
    assert again is not None and again.job.checkpoint_path == "/ckpt/5"
    assert again.lease.attempt == 2 and again.job.max_attempts == 2


def test_stale_lease_is_reclaimed_and_old_owner_is_fenced(engine):
    queue = Queue(engine, lease_s=30)
    operator.enqueue(queue.engine, "g", make_jobs(1))
    c = queue.claim(W1)
    writer = MetricsWriter(engine, c.lease)
    writer.log(1, {"loss": 1.0})
    writer.flush()
    clock.advance(engine, 29)
    assert operator.reclaim_stale(queue.engine) == []
    clock.advance(engine, 2)
    assert operator.reclaim_stale(queue.engine) == [c.job.id]
    assert operator.reclaim_stale(queue.engine) == []
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
    outcomes = [a.outcome for a in reports.attempts(queue.engine, c.job.id)]
    assert outcomes == ["lease_expired", "succeeded"]


def test_the_marker_stamps_a_confirmed_write_with_when_it_began_not_when_it_was_noted(engine, queue, tmp_path):
    """A worker stopped between a write's commit and its marker note (SIGSTOP, a swapped-out
    node) must not stamp that write, made under the lease, with the time it woke: the fault
    suite would see a double run that did not happen. Each note's time is at most its write's
    commit, however late the note comes."""
    from sqlalchemy import event

    from jobs import runs

    commits: list[float] = []

    def committed(conn):
        commits.append(time.time())

    operator.enqueue(queue.engine, "g", make_jobs(1))
    c = queue.claim(W1)
    marker = runs.Marker(tmp_path / runs.MARKER, attempt=c.lease.attempt, owner=c.lease.owner)
    woke: list[float] = []

    def paused_then_noted(what, **kw):
        time.sleep(0.2)
        woke.append(time.time())
        marker.note(what, **kw)

    writer = MetricsWriter(engine, c.lease, on_write=paused_then_noted)
    event.listen(engine, "commit", committed)
    try:
        for what, write in (("metrics", lambda: (writer.log(1, {"loss": 1.0}), writer.flush())),
                            ("summary", lambda: writer.summary({"val_loss": 1.0}))):
            commits.clear()
            write()
            last = json.loads(marker.path.read_text().splitlines()[-1])
            assert last["event"] == what
            assert commits and last["t"] <= commits[-1] < woke[-1], (what, last["t"], commits, woke)
    finally:
        event.remove(engine, "commit", committed)


def test_heartbeat_keeps_a_lease_alive(engine):
    queue = Queue(engine, lease_s=30)
    operator.enqueue(queue.engine, "g", make_jobs(1))
    c = queue.claim(W1)
    for _ in range(4):  # 80 s in all: twice the lease, but never 30 s without a heartbeat
        clock.advance(engine, 20)
        queue.heartbeat(c.lease)
    assert operator.reclaim_stale(queue.engine) == []
    clock.advance(engine, 31)
    assert operator.reclaim_stale(queue.engine) == [c.job.id]


def test_cancel_pending_and_running_jobs(queue):
    operator.enqueue(queue.engine, "g", make_jobs(3))
    running = queue.claim(W1)
    done = operator.cancel(queue.engine, grid="g")
    assert sorted(done) == [1, 2, 3]
    assert reports.counts(queue.engine)[states.CANCELLED] == 3
    with pytest.raises(LeaseLost):
        queue.heartbeat(running.lease)
    assert operator.cancel(queue.engine, grid="g") == []


def test_retry_and_cancel_by_factor_filter(queue):
    operator.enqueue(queue.engine, "g", make_jobs(4))
    assert operator.cancel(queue.engine, grid="g", where={"i": ["1", "2"]}) == [2, 3]
    assert operator.retry(queue.engine, grid="g", where={"i": ["2"]}) == [3]
    assert reports.counts(queue.engine)[states.PENDING] == 3


def test_retry_grants_more_attempts(queue):
    operator.enqueue(queue.engine, "g", make_jobs(1, max_attempts=1))
    c = queue.claim(W1)
    assert queue.fail(c.lease, "boom") == states.FAILED
    assert operator.retry(queue.engine, ids=[c.job.id], extra_attempts=2) == [c.job.id]
    c2 = queue.claim(W1)
    assert c2.lease.attempt == 2
    assert queue.fail(c2.lease, "boom") == states.PENDING  # attempt 2 of 3


def _curve(engine, job_id, name="loss"):
    from db.session import scope
    from jobs import queries

    with scope(engine, write=False) as conn:
        return [(r.step, r.value, r.attempt) for r in queries.job_metrics(conn, job_id, name)]


def test_a_resumed_attempt_continues_the_curve_from_its_checkpoint_step(engine, queue):
    """Attempt 1 logs steps 0..9 with its checkpoint recorded at step 4, then is preempted;
    attempt 2 resumes from step 4 and re-logs 5..11: the curve is attempt 1's up to 4 and
    attempt 2's after it, each step once, and the summaries are attempt 2's."""
    operator.enqueue(queue.engine, "g", make_jobs(1))
    c = queue.claim(W1)
    w = MetricsWriter(engine, c.lease, flush_every=3)
    for step in range(10):
        w.log(step, {"loss": float(step), "acc": 0.5})
        if step == 4:
            w.flush()
            queue.set_checkpoint(c.lease, "/ckpt/step-4", 4)
    w.flush()
    w.summary({"val_loss": 9.0, "only_in_attempt_1": 1.0})
    queue.release(c.lease, reason="preempted")
    c2 = queue.claim(W2)
    assert (c2.job.checkpoint_path, c2.job.checkpoint_step) == ("/ckpt/step-4", 4)
    w2 = MetricsWriter(engine, c2.lease)
    for step in range(5, 12):
        w2.log(step, {"loss": float(step) + 100})
    w2.flush()
    w2.summary({"val_loss": 1.5})
    w2.summary({"val_loss": 1.25})
    curve = _curve(engine, c.job.id)
    assert [s for s, _, _ in curve] == list(range(12))
    assert curve[:5] == [(s, float(s), 1) for s in range(5)]
    assert curve[5:] == [(s, float(s) + 100, 2) for s in range(5, 12)], "no point of attempt 1 past its checkpoint"
    assert [s for s, _, _ in _curve(engine, c.job.id, "acc")] == list(range(5))
    assert results.summaries_of(queue, c.job.id) == {"val_loss": 1.25}
    assert [a.resumed_from_step for a in reports.attempts(queue.engine, c.job.id)] == [None, 4]


def test_a_retry_without_a_checkpoint_replaces_the_old_curve(engine, queue):
    """A failed attempt with no checkpoint, retried: the new attempt starts fresh and its points
    replace the old ones (no curve holds points of two runs); ``retry(fresh=True)`` forgets a
    checkpoint and does the same."""
    operator.enqueue(queue.engine, "g", make_jobs(1, max_attempts=1, backoff_s=0))
    c = queue.claim(W1)
    w = MetricsWriter(engine, c.lease)
    for step in range(10):
        w.log(step, {"loss": 1.0})
    w.flush()
    w.summary({"val_loss": 1.0})
    assert queue.fail(c.lease, "a bug") == states.FAILED
    assert operator.retry(queue.engine, ids=[c.job.id]) == [c.job.id]
    c2 = queue.claim(W2)
    assert _curve(engine, c.job.id) == [] and results.summaries_of(queue, c.job.id) == {}
    w2 = MetricsWriter(engine, c2.lease)
    for step in range(3):
        w2.log(step, {"loss": 2.0})
    queue.set_checkpoint(c2.lease, "/ckpt/step-2", 2)
    w2.flush()
    queue.fail(c2.lease, "another bug")
    assert operator.retry(queue.engine, ids=[c.job.id], fresh=True) == [c.job.id]
    c3 = queue.claim(W1)
    assert c3.job.checkpoint_path is None and _curve(engine, c.job.id) == []
    MetricsWriter(engine, c3.lease).log_many([("loss", 0, 3.0, 1.0)])
    w3 = MetricsWriter(engine, c3.lease)
    w3.log(0, {"loss": 3.0})
    w3.flush()
    assert _curve(engine, c.job.id) == [(0, 3.0, 3)]


def test_a_batch_retried_after_a_lost_commit_answer_is_stored_once(engine, queue):
    """The commit went through but its answer was lost: the writer sends the same batch (same
    number) again, and the database recognises it."""
    from db.session import scope
    from jobs import queries

    operator.enqueue(queue.engine, "g", make_jobs(1))
    c = queue.claim(W1)
    rows = [(c.job.id, 1, "loss", s, float(s), 0.0) for s in range(5)]
    for expected in (queries.STORED, queries.ALREADY_STORED):
        with scope(engine) as conn:
            assert queries.store_metrics(conn, job_id=c.job.id, owner=c.lease.owner, attempt=1, batch=1,
                                         rows=rows) == expected
    assert len(_curve(engine, c.job.id)) == 5
    operator.cancel(queue.engine, ids=[c.job.id])
    with scope(engine) as conn:
        assert queries.store_metrics(conn, job_id=c.job.id, owner=c.lease.owner, attempt=1, batch=2,
                                     rows=[(c.job.id, 1, "loss", 9, 9.0, 0.0)]) == queries.LEASE_GONE
    assert len(_curve(engine, c.job.id)) == 5


def test_a_step_logged_twice_by_one_attempt_keeps_its_first_value(engine, queue):
    operator.enqueue(queue.engine, "g", make_jobs(1))
    c = queue.claim(W1)
    w = MetricsWriter(engine, c.lease, flush_every=2)
    w.log(3, {"loss": 1.0})
    w.log(4, {"loss": 1.0})  # flushed: batch 1
    w.log(3, {"loss": 5.0})  # the same (job, name, step) in the next batch
    w.flush()
    assert _curve(engine, c.job.id) == [(3, 1.0, 1), (4, 1.0, 1)]


def test_every_transition_writes_an_event(queue):
    operator.enqueue(queue.engine, "g", make_jobs(1, max_attempts=3, backoff_s=0))
    c = queue.claim(W1)
    queue.fail(c.lease, "x")
    c = queue.claim(W1)
    queue.complete(c.lease)
    trail = [(e.from_state, e.to_state) for e in reports.events(queue.engine, c.job.id)]
    assert trail == [
        (None, "pending"), ("pending", "running"), ("running", "pending"),
        ("pending", "running"), ("running", "succeeded"),
    ]


def test_dependent_job_waits_for_its_upstream_jobs(queue):
    from dataclasses import replace

    arms = make_jobs(2)
    judge = replace(make_jobs(1, kind="judge")[0], depends_on=(arms[0].spec_hash, arms[1].spec_hash))
    operator.enqueue(queue.engine, "g", [*arms, judge])
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
    operator.enqueue(queue.engine, "g", [arm, judge])
    a = queue.claim(W1)
    assert queue.fail(a.lease, "boom") == states.FAILED
    assert reports.counts(queue.engine)[states.CANCELLED] == 1
    assert "will not succeed" in reports.events(queue.engine, 2)[-1].reason


def test_a_judge_enqueued_or_retried_after_its_arm_failed_is_cancelled_and_workers_exit(queue, tmp_path):
    """The arm failed before the judge existed: enqueueing the judge cancels it at once (with the
    reason), and so does retrying it while the arm is still failed; a worker then finds nothing
    left to do and exits instead of waiting for a job that can never run."""
    from dataclasses import replace

    from jobs.worker import Worker
    from tests.support import runners

    arm = make_jobs(1, max_attempts=1)[0]
    operator.enqueue(queue.engine, "g", [arm])
    a = queue.claim(W1)
    assert queue.fail(a.lease, "boom") == states.FAILED
    judge = replace(make_jobs(1, kind="judge")[0], depends_on=(arm.spec_hash,))
    operator.enqueue(queue.engine, "g", [arm, judge])
    judge_id = 2
    assert reports.job(queue.engine, judge_id).state == states.CANCELLED
    assert reports.events(queue.engine, judge_id)[-1].reason == "dependency job 1 will not succeed"
    assert operator.retry(queue.engine, ids=[judge_id]) == []
    assert reports.job(queue.engine, judge_id).state == states.CANCELLED
    assert [e.to_state for e in reports.events(queue.engine, judge_id)][-2:] == [states.PENDING, states.CANCELLED]
    assert reports.unfinished(queue.engine) == 0
    stats = Worker(queue, runners.noop, runs_dir=tmp_path, heartbeat_s=5, poll_s=0.01).run()
    assert stats.claimed == 0
    # Retrying the arm and then the judge lets both run.
    assert operator.retry(queue.engine, ids=[1]) == [1]
    assert operator.retry(queue.engine, ids=[judge_id]) == [judge_id]
    Worker(queue, runners.noop, runs_dir=tmp_path, heartbeat_s=5, poll_s=0.01).run()
    assert reports.counts(queue.engine)[states.SUCCEEDED] == 2


def test_cancelling_a_running_job_closes_its_attempt(queue):
    operator.enqueue(queue.engine, "g", make_jobs(1))
    c = queue.claim(W1)
    assert operator.cancel(queue.engine, ids=[c.job.id]) == [c.job.id]
    (attempt,) = reports.attempts(queue.engine, c.job.id)
    assert attempt.ended_at is not None and attempt.outcome == states.OUTCOME_CANCELLED
    with pytest.raises(LeaseLost):
        queue.heartbeat(c.lease)


def test_invalid_input_fails_at_once_without_retry(queue, tmp_path):
    from jobs.worker import Worker
    from tests.support import runners

    operator.enqueue(queue.engine, "g", make_jobs(1, max_attempts=5))
    Worker(queue, runners.invalid_input, runs_dir=tmp_path, heartbeat_s=5).run()
    assert reports.counts(queue.engine)[states.FAILED] == 1
    (attempt,) = reports.attempts(queue.engine, 1)
    assert attempt.outcome == states.OUTCOME_INVALID and "corrupted" in attempt.error
    assert attempt.error_type == "harness.data.errors.DataError"


def test_a_hub_download_that_failed_is_retried_and_classed_as_network(queue, tmp_path):
    """A GridlabError is not 'invalid' by its base class: ModelUnavailable from a failed
    download is a passing network trouble, stored as such, and the retry succeeds."""
    from jobs.worker import Worker
    from tests.support import runners

    operator.enqueue(queue.engine, "g", make_jobs(1, max_attempts=3, backoff_s=0))
    Worker(queue, runners.hub_down_once, runs_dir=tmp_path, heartbeat_s=5).run()
    assert reports.counts(queue.engine)[states.SUCCEEDED] == 1
    first, second = reports.attempts(queue.engine, 1)
    assert (first.outcome, first.error_type) == (states.OUTCOME_NETWORK, "harness.models.registry.ModelUnavailable")
    assert second.outcome == states.OUTCOME_SUCCEEDED


def test_nan_and_inf_metrics_are_stored(engine, queue):
    import math

    from db.session import scope
    from jobs import queries

    operator.enqueue(queue.engine, "g", make_jobs(1))
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
    operator.enqueue(queue.engine, "g", make_jobs(3, steps=40))
    a, b = queue.claim(W1), queue.claim(W2)
    writer = MetricsWriter(queue.engine, a.lease)
    for step in range(1, 13):
        writer.log(step, {"loss": 10.0 - step, "lr": 0.1})
    writer.log(12, {"val_loss": 99.0})  # other curves do not count
    writer.flush()
    queue.heartbeat(a.lease)
    running = {j.id: j for j in reports.running(queue.engine)}
    assert set(running) == {a.job.id, b.job.id}  # the third job is pending, not running
    ja, jb = running[a.job.id], running[b.job.id]
    assert (ja.step, ja.total_steps, ja.value, ja.attempt, ja.grid) == (12, 40, -2.0, 1, "g")
    assert ja.worker == a.lease.owner and 0 <= ja.heartbeat_age_s < 60
    assert (jb.step, jb.value) == (None, None)  # nothing logged yet: "starting"
    queue.complete(a.lease)
    assert [j.id for j in reports.running(queue.engine, "g")] == [b.job.id]


def test_an_expired_slurm_attempt_can_be_given_its_cause_once(queue):
    operator.enqueue(queue.engine, "g", make_jobs(1))
    slurm_worker = WorkerInfo(name="node1:99", host="node1", pid=99, slurm_job_id="42_0", slurm_array_index=0,
                              node="node1")
    queue.claim(slurm_worker)
    clock.advance(queue.engine, 31)  # the queue fixture's lease is 30 s
    assert operator.reclaim_stale(queue.engine) == [1]
    (expired,) = worker_jobs.expired_slurm_attempts(queue.engine)
    assert (expired.job_id, expired.number, expired.slurm_job_id) == (1, 1, "42_0")
    assert worker_jobs.refine_expired_outcome(queue.engine, 1, 1, states.OUTCOME_NODE_FAIL, "Slurm job 42_0 ended NODE_FAIL on node1")
    (attempt,) = reports.attempts(queue.engine, 1)
    assert attempt.outcome == states.OUTCOME_NODE_FAIL and attempt.error.endswith("ended NODE_FAIL on node1")
    assert not worker_jobs.refine_expired_outcome(queue.engine, 1, 1, states.OUTCOME_OOM, "again")  # only a lease_expired one
    assert worker_jobs.expired_slurm_attempts(queue.engine) == []
    assert reports.counts(queue.engine)[states.PENDING] == 1  # the job's state is the reaper's


def test_device_seconds_per_attempt_and_the_estimate_for_pending_cells(queue):
    """An attempt of a cell that asked for 2 GPUs is charged its wall time x 2 (by the
    database's clock); a pending cell of the same shape is estimated at what finished ones cost."""
    from dataclasses import replace

    from db import costs

    two, none = make_jobs(3, steps=10), make_jobs(1, steps=99)
    operator.enqueue(queue.engine, "g", [replace(j, resource_class="gpus=2") for j in two] + [replace(none[0], resource_class="cpus=1")])
    c = queue.claim(W1)
    time.sleep(0.3)
    queue.complete(c.lease)
    (attempt,) = reports.attempts(queue.engine, c.job.id)
    assert attempt.devices == 2 and 0.55 <= attempt.device_seconds <= 0.6 + 2 * 5.0
    hours = costs.gpu_hours(reports.device_seconds(queue.engine, "g"))
    assert hours["spent"]["g"] == pytest.approx(attempt.device_seconds / 3600)
    # two more cells of that shape (steps=10; i differs, but i is not part of the shape) and one never seen
    assert hours["pending"]["g"] == 3 and hours["unestimated"]["g"] == 1
    assert hours["estimate"]["g"] == pytest.approx(2 * attempt.device_seconds / 3600)


def test_a_cell_sharing_its_device_with_others_is_charged_its_share(queue):
    """Each of K cells a worker runs at once on one GPU (cells_per_gpu, --cells-per-device) is
    charged wall time x devices / K: K cells sharing a GPU for an hour spend one GPU-hour."""
    from dataclasses import replace

    (job,) = make_jobs(1, steps=10)
    operator.enqueue(queue.engine, "g", [replace(job, resource_class="gpus=1")])
    c = queue.claim(replace(W1, cells_sharing=4))
    time.sleep(0.4)
    queue.complete(c.lease)
    (attempt,) = reports.attempts(queue.engine, c.job.id)
    assert (attempt.devices, attempt.cells_sharing) == (1, 4)
    assert 0.09 <= attempt.device_seconds <= (0.4 + 2 * 5.0) / 4


def test_a_worker_freezes_what_its_first_job_left_alive_once(queue, tmp_path, monkeypatch):
    """After its first job a worker freezes the surviving heap (the libraries that job
    imported), once per process, so later jobs' full collections skip it."""
    import gc

    from jobs import worker as worker_module
    from jobs.worker import Worker
    from tests.support import runners

    frozen_after: list[int] = []
    worker = Worker(queue, runners.noop, runs_dir=tmp_path, heartbeat_s=5, poll_s=0.01)
    monkeypatch.setattr(worker_module, "_frozen", False)
    monkeypatch.setattr(gc, "freeze", lambda: frozen_after.append(worker.stats.claimed))
    operator.enqueue(queue.engine, "g", make_jobs(3))
    assert worker.run().claimed == 3
    assert frozen_after == [1]
