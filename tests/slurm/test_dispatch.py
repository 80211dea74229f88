"""gridlab's Slurm path on the real one-node cluster: launch, requeue, time limit,
scancel, node failure, refused submission. Every test checks the database: attempts,
their failure classes, and that each per-step metric is stored exactly once.

Every test runs on SQLite; the ones marked ``@on_both_backends`` (the array draining
the queue, requeue, SIGKILL reconciled from sacct) run on PostgreSQL too, the backend
gridlab recommends for clusters, in a throwaway database per test (``pg_url``)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db import engine as db_engine
from db import schema
from db.models import events, metrics
from db.session import scope
from jobs import operator, reports, states, workers as worker_jobs
from jobs.queue import Queue
from slurm import supervise
from tests.slurm.conftest import REPO, wait_gone
from tests.support import cli
from tests.support.grids import make_jobs

pytestmark = pytest.mark.slurm

RUNNER = "tests.support.runners:counting"


#: Runs a test once per backend; tests without it run on SQLite only (the ``backend``
#: fixture), to keep the tier's time down.
on_both_backends = pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def queue(backend, request, tmp_path, slurm_cluster):
    # PostgreSQL: pg_url makes a fresh database and drops it after this fixture's
    # teardown (it skips with the reason where PostgreSQL is down, fails under CI=true).
    url = f"sqlite:///{tmp_path / 'gridlab.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    eng = db_engine.create(url)
    schema.upgrade(eng)
    yield Queue(eng, lease_s=15.0)
    for w in worker_jobs.dispatched(eng, executor="slurm"):  # never leave a test's workers behind
        subprocess.run(["scancel", w.external_id], capture_output=True)
    eng.dispose()


def gridlab(tmp_path: Path, queue: Queue, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``gridlab ARGS`` as a process (tests.support.cli.run) on ``queue``'s database."""
    return cli.run(args, cwd=tmp_path, db=queue.engine.url.render_as_string(hide_password=False),
                   env={"PYTHONPATH": str(REPO)}, timeout=timeout)


def launch(tmp_path, queue, *args: str) -> list[str]:
    r = gridlab(tmp_path, queue, "launch", "--runner", RUNNER, "--runs-dir", str(tmp_path / "runs"),
                "--heartbeat", "3", "--time", "5", *args)
    assert r.returncode == 0, r.stderr
    return [w.external_id for w in worker_jobs.dispatched(queue.engine, executor="slurm")]


def enqueue(queue: Queue, n: int, *, steps: int, delay: float, every: int = 5, max_attempts: int = 3) -> None:
    operator.enqueue(queue.engine, "g", make_jobs(n, experiment="count", steps=steps, delay=delay, every=every, max_attempts=max_attempts))


def steps_logged(queue: Queue, job_id: int) -> list[int]:
    with scope(queue.engine, write=False) as conn:
        return [s for (s,) in conn.execute(select(metrics.c.step).where(metrics.c.job_id == job_id).order_by(metrics.c.step))]


def wait_for_step(queue: Queue, job_id: int, step: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(steps_logged(queue, job_id)) >= step:
            return
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not reach step {step} in {timeout_s:.0f} s")


def outcomes(queue: Queue, job_id: int) -> list[str | None]:
    return [a.outcome for a in reports.attempts(queue.engine, job_id)]


def starts(tmp_path: Path, job_id: int, queue: Queue) -> list[int]:
    """The step each start of the job's experiment began from (its starts.log)."""
    from tests.support.results import run_dir

    lines = (run_dir(queue, tmp_path / "runs", job_id) / "starts.log").read_text().split("\n")
    return [int(line.split()[1]) for line in lines if line.strip()]


def assert_metrics_once(queue: Queue, job_id: int, steps: int) -> None:
    assert steps_logged(queue, job_id) == list(range(1, steps + 1))


@on_both_backends
def test_launched_array_drains_the_queue(queue, tmp_path, slurm_cluster):
    enqueue(queue, 6, steps=4, delay=0.05)
    ids = launch(tmp_path, queue, "--workers", "3", "--array-parallelism", "2")
    assert len(ids) == 3 and all("_" in i for i in ids)
    wait_gone(ids, timeout_s=90)
    assert reports.counts(queue.engine)[states.SUCCEEDED] == 6
    for job in reports.jobs(queue.engine):
        (attempt,) = reports.attempts(queue.engine, job.id)
        assert attempt.outcome == states.OUTCOME_SUCCEEDED
        assert attempt.slurm_job_id in ids
        assert attempt.slurm_array_index == int(attempt.slurm_job_id.split("_")[1])
        assert attempt.node == slurm_cluster and attempt.host
        assert_metrics_once(queue, job.id, 4)
    # slurmdbd records a task's end a moment after squeue forgets it: poll, as supervise does.
    deadline = time.monotonic() + 30
    while True:
        supervise.reconcile(queue)
        if {w.state for w in worker_jobs.dispatched(queue.engine)} == {"COMPLETED"} or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {w.state for w in worker_jobs.dispatched(queue.engine)} == {"COMPLETED"}
    r = gridlab(tmp_path, queue, "status")
    assert r.returncode == 0 and "Workers" in r.stdout and "completed" in r.stdout


@on_both_backends
def test_scontrol_requeue_resumes_from_checkpoint(queue, tmp_path):
    enqueue(queue, 1, steps=40, delay=0.25)
    (jid,) = launch(tmp_path, queue)
    wait_for_step(queue, 1, 12)
    subprocess.run(["scontrol", "requeue", jid], check=True)
    wait_gone([jid], timeout_s=90)
    assert outcomes(queue, 1) == [states.OUTCOME_PREEMPTED, states.OUTCOME_SUCCEEDED]
    first, second = reports.attempts(queue.engine, 1)
    assert first.slurm_job_id == second.slurm_job_id == jid
    assert first.worker.startswith(f"slurm:{jid}.0@") and second.worker.startswith(f"slurm:{jid}.1@")
    resumed_from = starts(tmp_path, 1, queue)
    assert resumed_from[0] == 0 and resumed_from[1] >= 12  # the checkpoint taken on SIGTERM, not scratch
    assert reports.jobs(queue.engine)[0].state == states.SUCCEEDED
    assert_metrics_once(queue, 1, 40)


def test_time_limit_signal_checkpoints_and_resumes(queue, tmp_path):
    # --time 2 with a 50 s signal delay: USR2 is due 70 s into a start, and Slurm may send it
    # up to 60 s early (sbatch(1), --signal), so it comes 10-70 s in, after the worker is up
    # (with --time 1 it once came in the first second, before anything could catch it, and
    # killed the job), and 75 s of work meets at least one.
    enqueue(queue, 1, steps=150, delay=0.5)
    (jid,) = launch(tmp_path, queue, "--time", "2", "--signal-delay", "50")
    wait_gone([jid], timeout_s=300)
    seen = outcomes(queue, 1)
    assert seen[-1] == states.OUTCOME_SUCCEEDED and states.OUTCOME_TIMEOUT in seen, seen
    assert set(seen[:-1]) == {states.OUTCOME_TIMEOUT}
    begun = starts(tmp_path, 1, queue)
    assert begun[0] == 0 and all(later > 0 for later in begun[1:]) and begun == sorted(begun)
    assert_metrics_once(queue, 1, 150)


def test_scancel_is_recorded_cancelled_and_the_job_reclaimed(queue, tmp_path):
    enqueue(queue, 1, steps=30, delay=0.2)
    (jid,) = launch(tmp_path, queue)
    wait_for_step(queue, 1, 8)
    subprocess.run(["scancel", jid], check=True)
    wait_gone([jid], timeout_s=30)
    assert outcomes(queue, 1) == [states.OUTCOME_CANCELLED]
    job = reports.jobs(queue.engine)[0]
    assert job.state == states.PENDING  # handed back with its checkpoint: any worker may take it
    tick = supervise.reconcile(queue)
    assert tick.workers_alive == 0 and worker_jobs.dispatched(queue.engine)[0].state == "CANCELLED"
    ids = launch(tmp_path, queue)  # a new worker reclaims it
    wait_gone(ids, timeout_s=60)
    assert outcomes(queue, 1) == [states.OUTCOME_CANCELLED, states.OUTCOME_SUCCEEDED]
    assert starts(tmp_path, 1, queue)[1] >= 8
    assert_metrics_once(queue, 1, 30)


def test_node_down_then_resumed_completes_with_progress_kept(queue, tmp_path, whole_node):
    enqueue(queue, 1, steps=40, delay=0.25)
    (jid,) = launch(tmp_path, queue)
    wait_for_step(queue, 1, 12)
    node = whole_node
    subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=gridlab-test"], check=True)
    try:
        deadline = time.monotonic() + 30
        while outcomes(queue, 1) == [None] and time.monotonic() < deadline:
            supervise.reconcile(queue, grace_s=0)  # in case the worker could not hand the job back itself
            time.sleep(0.5)
        assert outcomes(queue, 1) == [states.OUTCOME_NODE_FAIL]
    finally:
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], check=True)
    wait_gone([jid], timeout_s=90)  # Slurm requeued the worker itself; it reclaims the job
    assert outcomes(queue, 1) == [states.OUTCOME_NODE_FAIL, states.OUTCOME_SUCCEEDED]
    assert starts(tmp_path, 1, queue)[-1] >= 12  # from its checkpoint, not scratch
    assert_metrics_once(queue, 1, 40)


def kill_worker_mid_job(queue: Queue, tmp_path) -> str:
    """One job run by one launched worker, SIGKILLed at step 12 (no chance to hand the job
    back); returns the Slurm job id once Slurm has let go of it."""
    enqueue(queue, 1, steps=30, delay=0.2, every=5)
    (jid,) = launch(tmp_path, queue)
    wait_for_step(queue, 1, 12)
    (attempt,) = reports.attempts(queue.engine, 1)
    os.kill(attempt.pid, 9)
    wait_gone([jid], timeout_s=30)
    return jid


def test_attempt_the_reaper_ended_first_gets_slurms_cause_afterwards(queue, tmp_path):
    """No supervisor ran while a worker died hard: the reaper ends the attempt as
    lease_expired and the job goes on. A later sacct pass records Slurm's cause for it
    (the job's state is left alone: the retry policy already acted)."""
    jid = kill_worker_mid_job(queue, tmp_path)
    deadline = time.monotonic() + 60  # the lease is 3 heartbeats of 3 s
    while not operator.reclaim_stale(queue.engine) and time.monotonic() < deadline:
        time.sleep(1)
    assert outcomes(queue, 1) == [states.OUTCOME_LEASE_EXPIRED]
    assert reports.jobs(queue.engine)[0].state == states.PENDING
    deadline = time.monotonic() + 30
    while not (tick := supervise.reconcile(queue, grace_s=0)).attempts_refined and time.monotonic() < deadline:
        time.sleep(1)
    assert tick.attempts_refined == [(1, 1, states.OUTCOME_ERROR)] and tick.attempts_ended == []
    (refined,) = reports.attempts(queue.engine, 1)
    assert refined.outcome == states.OUTCOME_ERROR and f"Slurm job {jid} ended FAILED" in refined.error
    assert reports.jobs(queue.engine)[0].state == states.PENDING  # unchanged
    assert supervise.reconcile(queue, grace_s=0).attempts_refined == []  # once


@on_both_backends
def test_killed_worker_is_reconciled_from_sacct_and_resumes(queue, tmp_path):
    """A hard death (SIGKILL: no chance to hand back): one sacct pass ends the attempt
    with Slurm's class, counted against the job's attempts; a new worker resumes it."""
    jid = kill_worker_mid_job(queue, tmp_path)
    deadline = time.monotonic() + 30
    while not (tick := supervise.reconcile(queue, grace_s=0)).attempts_ended and time.monotonic() < deadline:
        time.sleep(1)
    assert tick.attempts_ended == [(1, 1, states.OUTCOME_ERROR)]
    assert reports.attempts(queue.engine, 1)[0].error.startswith(f"Slurm job {jid} ended FAILED")
    job = reports.jobs(queue.engine)[0]
    assert job.state == states.PENDING and job.attempts == 1  # counted: max_attempts is unchanged
    ids = launch(tmp_path, queue)
    wait_gone(ids, timeout_s=60)
    assert outcomes(queue, 1) == [states.OUTCOME_ERROR, states.OUTCOME_SUCCEEDED]
    resumed = starts(tmp_path, 1, queue)[-1]
    assert resumed >= 10 and resumed % 5 == 0  # the last periodic checkpoint (every 5 steps)
    assert_metrics_once(queue, 1, 30)


def test_refused_submission_is_one_line_and_changes_nothing(queue, tmp_path):
    enqueue(queue, 2, steps=3, delay=0.0)
    with scope(queue.engine, write=False) as conn:
        events_before = conn.execute(select(func.count()).select_from(events)).scalar_one()
    before = [(j.id, j.state, j.attempts) for j in reports.jobs(queue.engine)]
    r = gridlab(tmp_path, queue, "launch", "--runner", RUNNER, "--partition", "nosuch", "--workers", "2")
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.startswith("gridlab:")]
    assert lines == ["gridlab: error: sbatch refused the workers: Invalid partition name specified; "
                     "fix the Slurm settings (grid file slurm: block or flags) and launch again"]
    assert "Traceback" not in r.stderr
    assert [(j.id, j.state, j.attempts) for j in reports.jobs(queue.engine)] == before
    assert worker_jobs.dispatched(queue.engine) == []
    with scope(queue.engine, write=False) as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == events_before


@on_both_backends
def test_one_array_per_resource_class_each_claiming_its_own_jobs(queue, tmp_path, slurm_cluster):
    """Jobs of two resource classes: `gridlab launch` submits one array per class, with the
    class's CPUs and memory, and each class's workers run only that class's jobs."""
    from dataclasses import replace

    small, large = "cpus=1,mem=200M", "cpus=2,mem=300M"
    jobs = make_jobs(4, experiment="count", steps=3, delay=0.05, every=5)
    operator.enqueue(queue.engine, "g", [replace(j, resource_class=small if j.spec["i"] % 2 else large) for j in jobs])
    ids = launch(tmp_path, queue, "--workers", "2")
    workers = {w.external_id: w.resource_class for w in worker_jobs.dispatched(queue.engine, executor="slurm")}
    assert sorted(workers.values()) == sorted([large, large, small, small])
    arrays = {ext.split("_")[0]: cls for ext, cls in workers.items()}
    assert len(arrays) == 2, "one array per class"
    wait_gone(ids, timeout_s=120)
    assert reports.counts(queue.engine)[states.SUCCEEDED] == 4
    for job in reports.jobs(queue.engine):
        (attempt,) = reports.attempts(queue.engine, job.id)
        cls = small if job.spec_hash in {j.spec_hash for j in jobs if j.spec["i"] % 2} else large
        assert workers[attempt.slurm_job_id] == cls, f"job {job.id} ({cls}) ran on a worker for another class"
    for array, cls in arrays.items():
        # Just after the jobs are gone slurmdbd may still hold the array as one record (ReqCPUS 0,
        # ReqMem "16?"): poll until the tasks that ran are recorded with their request; a task
        # that never started (the class's other worker drained its jobs) is left out.
        deadline = time.monotonic() + 30
        while True:
            rows = [line.split("|") for line in subprocess.run(
                ["sacct", "-j", array, "-X", "-n", "-P", "-o", "ReqCPUS,ReqMem,Start"], capture_output=True,
                text=True).stdout.split()]
            ran = [r for r in rows if len(r) == 3 and r[2] not in ("Unknown", "None", "")]
            # ... and a started task's record may lack its request for a moment (ReqCPUS 0, ReqMem "16?")
            if (ran and all(r[0] != "0" for r in ran)) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert ran and all(r[0] == cls.split(",")[0].split("=")[1] for r in ran), (cls, rows)
