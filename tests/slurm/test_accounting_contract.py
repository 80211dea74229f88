"""One contract, two Slurms: the fake at the subprocess boundary (tests/support/fake_slurm.py,
which the fast reconcile tests in tests/unit/test_reconcile.py use) and the real one-node
cluster. Each test submits through ``sbatch`` and reads through ``slurm.accounting`` (one
``sacct`` command line) or the worker's ``scontrol`` questions on both, so what the fake prints
cannot drift from what Slurm prints without a test failing here. Only what is cheap on the cluster is here (a second or two a
job): states that need a time limit, the OOM killer or a node going down are the fake's
(tests/unit/test_reconcile.py) and the live tests' (tests/slurm/test_dispatch.py)."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from db import engine as db_engine
from db import schema
from jobs import states
from jobs.queue import Queue, WorkerInfo
from slurm import accounting, supervise
from slurm.worker import worker_name
from tests.support.grids import make_jobs


class _Cluster:
    node: str

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, command: str = "true", *, array: int | None = None, hold: bool = False) -> str:
        args = ["sbatch", "--parsable", "-o", "/dev/null", "--time", "1", "--wrap", command]
        if array:
            args.insert(1, f"--array=0-{array - 1}")
        if hold:
            args.insert(1, "--hold")
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        job = out.strip().split(";")[0]
        self.submitted.append(job)
        return job

    def cancel(self, job: str) -> None:
        subprocess.run(["scancel", job], check=True)

    def ids(self, job: str, array: int | None) -> list[str]:
        return [f"{job}_{i}" for i in range(array)] if array else [job]


class FakeCluster(_Cluster):
    def __init__(self, fake) -> None:
        super().__init__()
        self.fake, self.node = fake, fake.node

    def settle(self, ids: list[str]) -> dict[str, list[accounting.Run]]:
        """Let Slurm run what it would (the fake: every pending job now) and return sacct's view."""
        self.fake.run_all()
        return accounting.runs(ids)

    def run_then_requeue(self, job: str) -> None:
        self.fake.start(job)
        self.fake.requeue(job)

    def wait_running(self, job: str) -> None:
        self.fake.start(job)


class RealCluster(_Cluster):
    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def settle(self, ids: list[str], timeout_s: float = 60) -> dict[str, list[accounting.Run]]:
        """sacct's view once it knows every job and each has ended (slurmdbd records a job a
        moment after it is submitted, and its end a moment after squeue forgets it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            seen = accounting.runs(ids)
            if all(i in seen and not seen[i][-1].active for i in ids):
                return seen
            assert time.monotonic() < deadline, f"sacct did not settle in {timeout_s:.0f} s: {seen}"
            time.sleep(0.2)

    def wait_running(self, job: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while (run := accounting.current(accounting.runs([job])).get(job)) is None or run.state != "RUNNING":
            assert time.monotonic() < deadline, f"job {job} did not start in {timeout_s:.0f} s"
            time.sleep(0.2)

    def run_then_requeue(self, job: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        self.wait_running(job, timeout_s)
        subprocess.run(["scontrol", "requeue", job], check=True)
        while len(accounting.runs([job]).get(job, [])) < 2:
            assert time.monotonic() < deadline, f"sacct did not show job {job}'s second start"
            time.sleep(0.2)

    def close(self) -> None:
        if self.submitted:
            subprocess.run(["scancel", *self.submitted], capture_output=True)


@pytest.fixture(params=[pytest.param("fake", marks=pytest.mark.unit), pytest.param("real", marks=pytest.mark.slurm)])
def cluster(request):
    if request.param == "fake":
        yield FakeCluster(request.getfixturevalue("fake_slurm"))
        return
    real = RealCluster(request.getfixturevalue("slurm_cluster"))
    yield real
    real.close()


def test_a_job_that_exits_zero_completes_and_one_that_exits_three_failed(cluster):
    ok, bad = cluster.submit("true"), cluster.submit("exit 3")
    seen = cluster.settle([ok, bad])
    (good,), (failed,) = seen[ok], seen[bad]
    assert (good.state, failed.state) == ("COMPLETED", "FAILED")
    assert good.node == failed.node == cluster.node and good.end and failed.end
    assert not good.active and not failed.active
    assert accounting.outcome_of(failed.state) == states.OUTCOME_ERROR


def test_array_tasks_are_rows_of_their_own(cluster):
    base = cluster.submit("true", array=2)
    seen = cluster.settle(cluster.ids(base, 2))
    assert sorted(seen) == [f"{base}_0", f"{base}_1"]
    assert {runs[-1].state for runs in seen.values()} == {"COMPLETED"}


def test_a_job_cancelled_before_it_ran(cluster):
    job = cluster.submit("true", hold=True)
    cluster.cancel(job)
    (run,) = cluster.settle([job])[job]
    assert run.state == "CANCELLED" and run.node is None and not run.active
    assert accounting.outcome_of(run.state) == states.OUTCOME_CANCELLED


def test_a_job_sacct_does_not_know_is_left_out(cluster):
    job = cluster.submit("true")
    seen = cluster.settle([job])
    assert set(accounting.runs([job, "99999999"])) == {job} == set(seen)


def test_a_requeued_job_shows_each_start_and_only_the_last_runs(cluster):
    job = cluster.submit("sleep 30")
    cluster.run_then_requeue(job)
    first, second = accounting.runs([job])[job]
    assert first.state == "REQUEUED" and first.end and first.node == cluster.node and not first.active
    assert second.state == "PENDING" and second.active and second.node is None
    assert accounting.outcome_of(first.state) == states.OUTCOME_PREEMPTED
    cluster.cancel(job)


def test_reconcile_ends_the_attempt_of_a_worker_that_died(cluster, tmp_path):
    """A worker's Slurm job ended without the worker ending its attempt: one reconcile pass
    ends the attempt with Slurm's class, and the job goes back to the queue."""
    eng = db_engine.create(f"sqlite:///{tmp_path / 'gridlab.db'}")
    schema.upgrade(eng)
    queue = Queue(eng, lease_s=60.0)
    queue.enqueue("g", make_jobs(1, max_attempts=3))
    job = cluster.submit("exit 1")
    queue.record_workers("slurm", [(job, None)], folder=None)
    info = WorkerInfo(name=worker_name(job, 0, cluster.node, 4242), host=socket.gethostname(), pid=4242,
                      slurm_job_id=job, node=cluster.node, devices=0)
    assert queue.claim(info) is not None
    cluster.settle([job])
    tick = supervise.reconcile(queue, grace_s=0)
    assert tick.attempts_ended == [(1, 1, states.OUTCOME_ERROR)] and tick.workers_alive == 0
    (attempt,) = queue.attempts(1)
    assert attempt.error == f"Slurm job {job} ended FAILED on {cluster.node} while running this attempt"
    assert queue.jobs()[0].state == states.PENDING and queue.workers()[0].state == "FAILED"
    eng.dispose()


def test_scontrol_tells_a_worker_its_restarts_time_left_and_node_state(cluster):
    """What the worker asks scontrol when a signal comes (slurm.worker.why_terminated)."""
    from slurm.worker import _scontrol_show, _time_left_s

    job = cluster.submit("sleep 30")  # --time 1
    cluster.wait_running(job)
    fields = _scontrol_show("job", job)
    assert fields["Restarts"] == "0"
    assert 0 < _time_left_s(fields) <= 60
    assert _scontrol_show("node", cluster.node)["State"]
    cluster.cancel(job)
