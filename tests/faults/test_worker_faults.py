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
from jobs import pool, states
from tests.faults import invariants
from tests.support.grids import make_jobs

pytestmark = pytest.mark.contract


def _options(db_url, tmp_path, **kw) -> pool.PoolOptions:
    base = dict(url=db_url, runner="tests.support.runners:resumable", runs_dir=str(tmp_path / "runs"),
                heartbeat_s=0.5, lease_grace=3.0, poll_s=0.05, log_level=logging.ERROR, threads_per_worker=1)
    return pool.PoolOptions(**{**base, **kw})


def test_a_quarter_of_16_workers_sigkilled_and_replaced_loses_nothing(engine, queue, db_url, tmp_path, capsys):
    n_jobs, n_workers, steps = 1000, 16, 4
    queue.enqueue("faults", make_jobs(n_jobs, max_attempts=5, steps=steps, delay=0.005))
    options = _options(db_url, tmp_path)
    procs = pool.start(options, n_workers)
    rng = random.Random(7)
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
    assert kills == n_workers // 4
    figures = invariants.check(engine)
    assert figures["reclaimed"] >= 1, "killed workers held jobs: their leases must have been reclaimed"
    invariants.check_resumable_curves(engine, steps)
    with capsys.disabled():
        print(f"\n[reliability] sigkill: backend={engine.dialect.name} jobs={figures['jobs']} kills={kills} "
              f"reclaimed={figures['reclaimed']} attempts={figures['attempts']} lost={figures['lost']} "
              f"double_run={figures['double_run']}")


def test_worker_frozen_past_its_lease_is_fenced_when_it_wakes(engine, queue, db_url, tmp_path):
    steps = 30
    queue.enqueue("frozen", make_jobs(1, steps=steps, delay=0.1))
    options = _options(db_url, tmp_path, heartbeat_s=0.3)
    (first,) = pool.start(options, 1)
    _wait_for(lambda: _metric_count(engine) >= 5, "the first worker to log some steps")
    os.kill(first.pid, signal.SIGSTOP)
    frozen_at = _metric_count(engine)
    try:
        (second,) = pool.start(options, 1)  # reclaims the job once the lease (0.9 s) expires
        second.join(timeout=120)
        assert second.exitcode == 0
    finally:
        os.kill(first.pid, signal.SIGCONT)
    first.join(timeout=60)
    assert first.exitcode == 0
    figures = invariants.check(engine)
    assert figures["reclaimed"] == 1
    outcomes = [a.outcome for a in queue.attempts(1)]
    assert outcomes == [states.OUTCOME_LEASE_EXPIRED, states.OUTCOME_SUCCEEDED]
    with scope(engine, write=False) as conn:
        by_attempt = conn.execute(select(metrics.c.attempt, metrics.c.step)).all()
    late = [step for attempt, step in by_attempt if attempt == 1 and step > frozen_at + 1]
    assert late == [], f"the frozen worker wrote steps {late} after losing its lease"
    assert sorted(step for _, step in by_attempt) == list(range(1, steps + 1))


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
