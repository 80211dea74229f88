"""16 worker processes drain 1,000 jobs: every job is claimed exactly once."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select

from db.models import attempts, code_versions, environments, events, jobs, machines, metrics, provenances
from db.session import scope
from jobs import operator, pool, reports, states
from jobs.worker import WorkerOptions
from tests.support.grids import make_jobs

pytestmark = pytest.mark.contract

N_JOBS = 1000
N_WORKERS = 16


def test_sixteen_workers_claim_each_of_1000_jobs_exactly_once(engine, queue, db_url, tmp_path):
    operator.enqueue(queue.engine, "load", make_jobs(N_JOBS))
    options = WorkerOptions(url=db_url, runner="tests.support.runners:noop", runs_dir=str(tmp_path / "runs"),
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


def test_workers_of_each_resource_class_race_and_claim_only_their_own(engine, queue, db_url, tmp_path):
    """Jobs of two resource classes and unclassed ones; workers launched for each class race
    with workers launched for none: every job is claimed once, and a class's workers run only
    its jobs (an unclassed worker may run any)."""
    from dataclasses import replace

    big, small = "gpus=2,mem=64G", "gpus=1,mem=8G"
    new = [replace(j, resource_class=big if j.spec["i"] % 3 == 0 else small if j.spec["i"] % 3 == 1 else "default")
           for j in make_jobs(300)]
    operator.enqueue(queue.engine, "classes", new)
    base = dict(url=db_url, runner="tests.support.runners:noop", runs_dir=str(tmp_path / "runs"), heartbeat_s=5.0,
                poll_s=0.05, log_level=logging.WARNING, threads_per_worker=1)
    procs = (pool.start(WorkerOptions(**base, resource_class=big), 3)
             + pool.start(WorkerOptions(**base, resource_class=small), 3))
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0] * 6
    counts = reports.counts(queue.engine)
    assert counts[states.SUCCEEDED] == 200 and counts[states.PENDING] == 100, "class workers left the others' jobs"
    procs = pool.start(WorkerOptions(**base), 2)  # unclassed: they take what is left
    for p in procs:
        p.join(timeout=240)
    with scope(engine, write=False) as conn:
        rows = conn.execute(select(jobs.c.id, jobs.c.resource_class, attempts.c.worker)
                            .join(attempts, attempts.c.job_id == jobs.c.id)).all()
        twice = conn.execute(select(events.c.job_id).where(events.c.to_state == states.RUNNING)
                             .group_by(events.c.job_id).having(func.count() > 1)).all()
    assert len(rows) == 300 and twice == []
    workers_of = {}
    for _, cls, worker in rows:
        workers_of.setdefault(worker, set()).add(cls)
    mixed = [w for w, classes in workers_of.items() if len(classes) > 1 and "default" not in classes]
    assert mixed == [], f"a class worker ran another class's jobs: {mixed}"
    assert {c for classes in workers_of.values() for c in classes} == {big, small, "default"}
    assert reports.counts(queue.engine)[states.SUCCEEDED] == 300


def test_cells_sharing_one_device_run_together_until_memory_runs_short(engine, queue, db_url, tmp_path):
    """``share_device`` runs up to k cells at once, each in its own worker process with its own
    lease; it holds a cell back while the device's free memory would not fit it. The device's
    free memory is a fake at the boundary (the GPU run measures the real thing)."""
    from jobs.queue import Queue

    def run(k: int, cell_mib: float, free: float):
        eng_queue = Queue(queue.engine, lease_s=15.0)
        grid = f"share-{k}-{cell_mib:g}"
        operator.enqueue(eng_queue.engine, grid, make_jobs(4, steps=10, delay=0.1, tag=grid))
        options = WorkerOptions(url=db_url, runner="tests.support.runners:slow", runs_dir=str(tmp_path / "runs"),
                                   heartbeat_s=5.0, poll_s=0.05, log_level=logging.WARNING, threads_per_worker=1)
        report = pool.share_device(eng_queue, options, k, cell_mib=cell_mib, free_mib=lambda: free, ramp_s=5.0,
                                   poll_s=0.05)
        with scope(engine, write=False) as conn:
            rows = conn.execute(select(attempts.c.started_at, attempts.c.ended_at, attempts.c.worker,
                                       attempts.c.cells_sharing)
                                .join(jobs, jobs.c.id == attempts.c.job_id)
                                .where(jobs.c.spec["tag"].as_string() == grid)).all()
        assert {r.cells_sharing for r in rows} == {k}, "each cell's attempt says how many shared its device"
        spans = [(r.started_at, r.ended_at, r.worker) for r in rows]
        overlap = max(sum(1 for s2, e2, _ in spans if s2 <= s < e2) for s, _, _ in spans)
        return report, spans, overlap

    report, spans, overlap = run(3, cell_mib=300, free=1000)  # three fit
    assert len(spans) == 4 and len({w for _, _, w in spans}) == 4, "each cell in its own process and lease"
    # (a process started while others were still starting may find no job left, and exits)
    assert report.started >= 4 and overlap >= 2 and report.most_at_once <= 3
    report, spans, overlap = run(3, cell_mib=600, free=1000)  # one fits at a time
    assert len(spans) == 4 and overlap == 1 and report.held_for_memory > 0
    assert reports.counts(queue.engine)[states.SUCCEEDED] == 8
