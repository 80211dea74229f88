"""Fault injection on local workers: SIGKILL, SIGSTOP past the lease, dropped connections.

Each scenario runs on SQLite and PostgreSQL and ends with tests/faults/invariants.py.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time

import pytest
from sqlalchemy import select

from db.models import metrics
from db.session import scope
from jobs import checkpoints, pool, runs, states
from jobs.worker import WorkerOptions
from tests.faults import invariants
from tests.support import results
from tests.support.grids import make_jobs

pytestmark = pytest.mark.contract


def _options(db_url, tmp_path, **kw) -> WorkerOptions:
    base = dict(url=db_url, runner="tests.support.runners:resumable", runs_dir=str(tmp_path / "runs"),
                heartbeat_s=0.5, lease_grace=3.0, poll_s=0.05, log_level=logging.ERROR, threads_per_worker=1)
    return WorkerOptions(**{**base, **kw})


def test_a_quarter_of_16_workers_sigkilled_and_replaced_loses_nothing(engine, queue, db_url, tmp_path, capsys,
                                                                    rng_seed):
    n_jobs, n_workers, steps = 1000, 16, 4
    queue.enqueue("faults", make_jobs(n_jobs, max_attempts=5, steps=steps, delay=0.005))
    options = _options(db_url, tmp_path)
    procs = pool.start(options, n_workers)
    rng = random.Random(rng_seed)  # which worker dies, and when
    kills = 0
    deadline = time.monotonic() + 300
    _wait_for(lambda: queue.counts()[states.SUCCEEDED] >= 50, "work to be under way", timeout=120)
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.1, 0.5))
        if kills >= n_workers // 4 or queue.counts()[states.PENDING] < 50:
            continue
        # A random worker caught holding a job: it dies mid-run.
        holders = {int(j.lease_owner.rsplit(":", 1)[1]) for j in queue.jobs(in_states=[states.RUNNING])}
        victims = [p for p in procs if p.is_alive() and p.pid in holders]
        if victims:
            victim = rng.choice(victims)
            os.kill(victim.pid, signal.SIGKILL)
            victim.join()
            kills += 1
            procs.extend(pool.start(options, 1))  # replaced
    for p in procs:
        p.join(timeout=60)
    assert kills == n_workers // 4, f"GRIDLAB_TEST_SEED={rng_seed}"
    figures = invariants.check(engine)
    assert figures["reclaimed"] >= 1, "killed workers held jobs: their leases must have been reclaimed"
    invariants.check_resumable_curves(engine, steps)
    # Every attempt that got as far as its run folder left a marker; a worker killed between its
    # claim's commit and that (a few ms) leaves an attempt without one.
    marked = invariants.check_markers(tmp_path / "runs")["attempts"]
    assert figures["attempts"] - kills <= marked <= figures["attempts"]
    with capsys.disabled():
        print(f"\n[reliability] sigkill: backend={engine.dialect.name} jobs={figures['jobs']} kills={kills} "
              f"reclaimed={figures['reclaimed']} attempts={figures['attempts']} lost={figures['lost']} "
              f"double_run={figures['double_run']}")


def test_a_zombie_woken_while_its_successor_runs_writes_nothing(engine, queue, db_url, tmp_path):
    """Worker 1 is frozen (SIGSTOP) past its lease; worker 2 takes the job, resumes from worker
    1's last checkpoint and runs past it; then worker 1 is woken (SIGCONT) while worker 2 is
    still running. Worker 1 must write nothing more: no metric, no checkpoint, no prune. The
    job's checkpoints are worker 2's, its curve is worker 1's up to the checkpoint worker 2
    resumed from and worker 2's after it, and the markers show no overlap."""
    steps = 80
    queue.enqueue("frozen", make_jobs(1, steps=steps, delay=0.05))
    options = _options(db_url, tmp_path, heartbeat_s=0.3)
    runs_dir = tmp_path / "runs"
    (first,) = pool.start(options, 1)
    _wait_for(lambda: (queue.job(1).checkpoint_step or 0) >= 6, "the first worker to record a checkpoint")
    os.kill(first.pid, signal.SIGSTOP)
    frozen_at = time.time()
    run = results.run_dir(queue, runs_dir, 1)
    first_checkpoints = {p.name for _, a, p in checkpoints.sealed(run) if a == 1}
    try:
        (second,) = pool.start(options, 1)  # reclaims the job once the lease (0.9 s) expires
        _wait_for(lambda: len(queue.attempts(1)) == 2, "the second worker to claim the job", timeout=60)
        resumed_from = queue.attempts(1)[1].resumed_from_step
        assert resumed_from is not None and resumed_from >= 6
        _wait_for(lambda: _newest_step(engine, attempt=2) >= resumed_from + 6, "the second worker to run on")
        assert queue.job(1).state == states.RUNNING, "the second worker must still be running when the first wakes"
    finally:
        os.kill(first.pid, signal.SIGCONT)
    first.join(timeout=60)
    second.join(timeout=120)
    assert first.exitcode == 0 and second.exitcode == 0
    figures = invariants.check(engine)
    assert figures["reclaimed"] == 1
    assert [a.outcome for a in queue.attempts(1)] == [states.OUTCOME_LEASE_EXPIRED, states.OUTCOME_SUCCEEDED]
    invariants.check_resumable_curves(engine, steps)
    invariants.check_markers(runs_dir)
    with scope(engine, write=False) as conn:
        points = conn.execute(select(metrics.c.attempt, metrics.c.step, metrics.c.wall_time)).all()
    assert sorted(s for _, s, _ in points) == list(range(1, steps + 1))
    assert {a for a, s, _ in points if s <= resumed_from} == {1}
    assert {a for a, s, _ in points if s > resumed_from} == {2}
    assert max(t for a, _, t in points if a == 1) < frozen_at, "the first worker logged after it was frozen"
    # Its marker: nothing confirmed after the freeze.
    (lines,) = [ls for r, ls in runs.read_markers(runs_dir).items() if r == run]
    late = [line for line in lines if line["attempt"] == 1 and line["t"] > frozen_at and line["event"] in invariants.ACTIVITY]
    assert late == [], f"the first worker's writes were confirmed after it was frozen: {late}"
    # Checkpoints: worker 2's only (worker 1's were pruned by worker 2, its successor), and the
    # first worker neither recorded nor pruned any after it woke.
    left = [(a, p.name) for _, a, p in checkpoints.sealed(run)]
    assert left and {a for a, _ in left} == {2}, left
    assert queue.job(1).checkpoint_path.endswith("-a2")
    assert not ({p.name for _, a, p in checkpoints.sealed(run) if a == 1} - first_checkpoints)


def _newest_step(engine, *, attempt: int) -> int:
    from sqlalchemy import func

    with scope(engine, write=False) as conn:
        return conn.execute(select(func.coalesce(func.max(metrics.c.step), 0))
                            .where(metrics.c.attempt == attempt)).scalar_one()


def _metric_count(engine) -> int:
    from sqlalchemy import func

    with scope(engine, write=False) as conn:
        return conn.execute(select(func.count()).select_from(metrics)).scalar_one()


def _wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
