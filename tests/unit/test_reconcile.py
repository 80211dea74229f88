"""``supervise.reconcile`` and ``slurm.accounting`` against a fake Slurm at the subprocess
boundary (tests/support/fake_slurm.py): gridlab runs the real ``sacct`` command line, and
the test says what Slurm answers. No cluster, no waiting: the grace period is judged by an
injected ``now``. The contract these share with the real cluster is in
tests/slurm/test_accounting_contract.py."""

from __future__ import annotations

import socket
import time

import pytest

from db import engine as db_engine
from db import schema
from jobs import retry, states
from jobs.queue import Queue, WorkerInfo
from slurm import accounting, supervise
from slurm.worker import worker_name
from tests.support import clock
from tests.support.grids import make_jobs

pytestmark = pytest.mark.unit

T0 = 1_800_000_000.0  # when the fake's runs end; reconcile's clock is told the time after it


@pytest.fixture
def queue(tmp_path):
    eng = db_engine.create(f"sqlite:///{tmp_path / 'gridlab.db'}")
    schema.upgrade(eng)
    yield Queue(eng, lease_s=30.0)
    eng.dispose()


def worker(job_id: str, restart: int = 0, node: str = "fake1") -> WorkerInfo:
    index = int(job_id.split("_")[1]) if "_" in job_id else None
    return WorkerInfo(name=worker_name(job_id, restart, node, 4242), host=socket.gethostname(), pid=4242,
                      slurm_job_id=job_id, slurm_array_index=index, node=node, devices=0)


def running(queue: Queue, fake, *, n: int = 1, array: bool = False) -> list[str]:
    """``n`` jobs, each claimed by a Slurm worker the fake runs (one array of ``n`` tasks,
    or ``n`` plain jobs), recorded as launch does; returns the workers' Slurm ids."""
    queue.enqueue("g", make_jobs(n, max_attempts=3, batch=len(queue.jobs())))
    if array:
        base = fake.submit(array=n)
        ids = [f"{base}_{i}" for i in range(n)]
    else:
        ids = [fake.submit() for _ in range(n)]
    queue.record_workers("slurm", [(i, int(i.split("_")[1]) if "_" in i else None) for i in ids], folder=None)
    for jid in ids:
        fake.start(jid, at=T0 - 60)
        assert queue.claim(worker(jid)) is not None
    return ids


def reconcile(queue: Queue, *, after_s: float = 60.0, grace_s: float = 10.0) -> supervise.Tick:
    return supervise.reconcile(queue, grace_s=grace_s, now=lambda: T0 + after_s)


def test_a_worker_goes_pending_running_completed(queue, fake_slurm):
    queue.enqueue("g", make_jobs(1))
    jid = fake_slurm.submit()
    queue.record_workers("slurm", [(jid, None)], folder=None)
    tick = reconcile(queue)
    assert tick.workers_alive == 1 and queue.workers()[0].state == "PENDING"
    fake_slurm.start(jid, at=T0 - 60)
    claimed = queue.claim(worker(jid))
    tick = reconcile(queue)
    assert tick.workers_alive == 1 and tick.workers_changed == 1 and tick.attempts_ended == []
    assert queue.workers()[0].state == "RUNNING"
    queue.complete(claimed.lease)
    fake_slurm.end(jid, "COMPLETED", at=T0)
    tick = reconcile(queue)
    assert tick.workers_alive == 0 and tick.attempts_ended == [] and queue.workers()[0].state == "COMPLETED"
    assert [a.outcome for a in queue.attempts(1)] == [states.OUTCOME_SUCCEEDED]


@pytest.mark.parametrize("slurm_state, outcome", [
    ("FAILED", states.OUTCOME_ERROR),  # SIGKILL, a crash: the worker could not hand back
    ("TIMEOUT", states.OUTCOME_TIMEOUT),
    ("PREEMPTED", states.OUTCOME_PREEMPTED),
    ("OUT_OF_MEMORY", states.OUTCOME_OOM),
    ("NODE_FAIL", states.OUTCOME_NODE_FAIL),
    ("BOOT_FAIL", states.OUTCOME_NODE_FAIL),
    ("DEADLINE", states.OUTCOME_TIMEOUT),
    ("CANCELLED by 0", states.OUTCOME_CANCELLED),
    ("COMPLETED", states.OUTCOME_ERROR),  # the worker exited but never ended its attempt
])
def test_an_attempt_whose_run_ended_is_ended_with_slurms_class(queue, fake_slurm, slurm_state, outcome):
    (jid,) = running(queue, fake_slurm)
    fake_slurm.end(jid, slurm_state, at=T0)
    tick = reconcile(queue)
    assert tick.attempts_ended == [(1, 1, outcome)] and tick.workers_alive == 0
    (attempt,) = queue.attempts(1)
    word = slurm_state.split()[0]
    assert attempt.outcome == outcome
    assert attempt.error == f"Slurm job {jid} ended {word} on fake1 while running this attempt"
    # back in the queue, from its checkpoint, unless the retry policy never retries the class
    # (jobs/retry.py: a cancel the worker did not get to hand back ends the job)
    never = retry.POLICY[outcome] == retry.NEVER
    assert queue.jobs()[0].state == (states.FAILED if never else states.PENDING)
    assert queue.workers()[0].state == word
    assert reconcile(queue).attempts_ended == []  # once


def test_a_run_is_judged_only_after_the_grace_period(queue, fake_slurm):
    (jid,) = running(queue, fake_slurm)
    fake_slurm.end(jid, "FAILED", at=T0)
    assert reconcile(queue, after_s=9.0, grace_s=10.0).attempts_ended == []  # may still be handing back
    assert queue.jobs()[0].state == states.RUNNING
    assert reconcile(queue, after_s=11.0, grace_s=10.0).attempts_ended == [(1, 1, states.OUTCOME_ERROR)]


def test_a_job_sacct_does_not_know_is_left_alone_and_counted_alive(queue, fake_slurm):
    queue.enqueue("g", make_jobs(1))
    queue.record_workers("slurm", [("4711", None)], folder=None)  # slurmdbd has not recorded it yet
    assert queue.claim(worker("4711")) is not None
    tick = reconcile(queue)
    assert tick.attempts_ended == [] and tick.workers_alive == 1
    assert queue.jobs()[0].state == states.RUNNING and queue.workers()[0].state == "SUBMITTED"
    assert accounting.runs(["4711"]) == {}


def test_array_tasks_are_judged_each_on_its_own(queue, fake_slurm):
    ids = running(queue, fake_slurm, n=2, array=True)
    base = ids[0].split("_")[0]
    fake_slurm.end(ids[0], "OUT_OF_MEMORY", at=T0)
    tick = reconcile(queue)
    assert tick.attempts_ended == [(1, 1, states.OUTCOME_OOM)] and tick.workers_alive == 1
    assert {w.external_id: w.state for w in queue.workers()} == {f"{base}_0": "OUT_OF_MEMORY", f"{base}_1": "RUNNING"}
    assert queue.jobs()[1].state == states.RUNNING


def test_array_tasks_not_started_yet_come_folded_and_are_pending(queue, fake_slurm):
    base = fake_slurm.submit(array=4)
    fake_slurm.start(f"{base}_0", at=T0)
    assert any(line.startswith(f"{base}_[1-3]|PENDING|None assigned|Unknown|Unknown")
               for line in _sacct_lines(base))
    queue.record_workers("slurm", [(f"{base}_{i}", i) for i in range(4)], folder=None)
    tick = reconcile(queue)
    assert tick.workers_alive == 4
    assert [w.state for w in sorted(queue.workers(), key=lambda w: w.array_index)] == ["RUNNING"] + ["PENDING"] * 3


def test_a_requeued_job_is_judged_by_the_start_that_ran_the_attempt(queue, fake_slurm):
    """A requeued job starts again under the same id: sacct -D gives one row per start, and
    the worker's name says which start ran the attempt."""
    (jid,) = running(queue, fake_slurm)
    fake_slurm.requeue(jid, at=T0)  # the first start is taken back; its worker died without handing back
    fake_slurm.start(jid, at=T0 + 1)
    tick = reconcile(queue)
    assert tick.attempts_ended == [(1, 1, states.OUTCOME_PREEMPTED)] and tick.workers_alive == 1
    second = queue.claim(worker(jid, restart=1))
    assert second is not None and second.lease.attempt == 2
    assert reconcile(queue).attempts_ended == []  # the second start runs on
    fake_slurm.end(jid, "NODE_FAIL", at=T0 + 2)
    assert reconcile(queue).attempts_ended == [(1, 2, states.OUTCOME_NODE_FAIL)]


def test_one_sacct_call_per_pass_whatever_the_number_of_jobs(queue, fake_slurm):
    ids = running(queue, fake_slurm, n=3) + running(queue, fake_slurm, n=3, array=True)
    before = len(fake_slurm.calls)
    reconcile(queue)
    calls = fake_slurm.calls[before:]
    assert [c[0] for c in calls] == ["sacct"]
    asked = calls[0][calls[0].index("-j") + 1].split(",")
    assert sorted(asked) == sorted({i.split("_")[0] for i in ids})  # array tasks asked for by their base
    assert "-D" in calls[0] and "-X" in calls[0]


def test_an_attempt_the_reaper_ended_first_gets_slurms_cause_once(queue, fake_slurm):
    (jid,) = running(queue, fake_slurm)
    clock.advance(queue.engine, 31.0)  # the worker died: its lease ran out, no supervisor running
    assert queue.reclaim_stale() == [1]
    fake_slurm.end(jid, "OUT_OF_MEMORY", at=T0)
    tick = reconcile(queue)
    assert tick.attempts_refined == [(1, 1, states.OUTCOME_OOM)] and tick.attempts_ended == []
    (attempt,) = queue.attempts(1)
    assert attempt.outcome == states.OUTCOME_OOM and f"Slurm job {jid} ended OUT_OF_MEMORY" in attempt.error
    assert queue.jobs()[0].state == states.PENDING  # the retry policy already acted
    assert reconcile(queue).attempts_refined == []


def test_malformed_sacct_lines_are_skipped(queue, fake_slurm):
    (jid,) = running(queue, fake_slurm)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(T0))
    fake_slurm.sacct_prints("sacct: warning: something odd\n\n|||\nnot|enough|fields\n"
                            f"{jid}|FAILED|fake1|{stamp}|{stamp}|None\n"
                            "9_[x-y]|PENDING|None assigned|Unknown|Unknown|None\n")
    tick = reconcile(queue)
    assert tick.attempts_ended == [(1, 1, states.OUTCOME_ERROR)]


def test_a_state_gridlab_does_not_know_ends_the_attempt_as_an_error(queue, fake_slurm):
    (jid,) = running(queue, fake_slurm)
    fake_slurm.end(jid, "SPECIAL_EXIT", at=T0)
    assert reconcile(queue).attempts_ended == [(1, 1, states.OUTCOME_ERROR)]


def test_sacct_failing_is_slurm_unavailable_and_changes_nothing(queue, fake_slurm):
    (jid,) = running(queue, fake_slurm)
    fake_slurm.sacct_prints("", exit=1, stderr="sacct: error: Problem talking to the database: Connection refused\n")
    with pytest.raises(accounting.SlurmUnavailable, match="Connection refused"):
        reconcile(queue)
    assert queue.jobs()[0].state == states.RUNNING and queue.workers()[0].state == "SUBMITTED"


def _sacct_lines(base: str) -> list[str]:
    import subprocess

    out = subprocess.run(["sacct", "-D", "-X", "-n", "-P", "--format=JobID,State,NodeList,Start,End,Reason", "-j", base],
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()
