"""16 worker processes drain 1,000 jobs: every job is claimed exactly once."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select

from db.models import attempts, code_versions, environments, events, jobs, machines, metrics, provenances
from db.session import scope
from jobs import pool, states
from tests.support.grids import make_jobs

pytestmark = pytest.mark.contract

N_JOBS = 1000
N_WORKERS = 16


def test_sixteen_workers_claim_each_of_1000_jobs_exactly_once(engine, queue, db_url, tmp_path):
    queue.enqueue("load", make_jobs(N_JOBS))
    options = pool.PoolOptions(url=db_url, runner="tests.support.runners:noop", runs_dir=str(tmp_path / "runs"),
                               heartbeat_s=5.0, poll_s=0.05, log_level=logging.WARNING, threads_per_worker=1)
    procs = pool.start(options, N_WORKERS)
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0] * N_WORKERS

    with scope(engine, write=False) as conn:
        by_state = dict(conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state)).all())
        max_attempt = conn.execute(select(func.max(jobs.c.attempts))).scalar_one()
        n_attempts = conn.execute(select(func.count()).select_from(attempts)).scalar_one()
        claims_per_job = conn.execute(
            select(events.c.job_id, func.count()).where(events.c.to_state == states.RUNNING)
            .group_by(events.c.job_id).having(func.count() > 1)
        ).all()
        claimers = conn.execute(select(func.count(func.distinct(attempts.c.worker)))).scalar_one()
        n_metrics = conn.execute(select(func.count()).select_from(metrics)).scalar_one()
        unrecorded = conn.execute(select(func.count()).where(attempts.c.provenance_id.is_(None))).scalar_one()
        stored = [conn.execute(select(func.count()).select_from(t)).scalar_one()
                  for t in (provenances, code_versions, environments, machines)]
    assert by_state == {states.SUCCEEDED: N_JOBS}
    assert max_attempt == 1 and n_attempts == N_JOBS
    assert claims_per_job == [], "a job was claimed twice"
    assert n_metrics == N_JOBS
    assert claimers > 1, "the work should have been shared between processes"
    # 16 processes racing to store the same provenance: each attempt names it, stored once.
    assert unrecorded == 0
    assert stored == [1, 1, 1, 1], "provenance rows must be shared, not copied per worker"
