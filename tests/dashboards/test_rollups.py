"""Curve roll-ups on both backends: the queue writes them when a job reaches a final
state and drops them when it goes back to the queue; the dashboard reads them for
finished jobs, and gets exactly the buckets its point-by-point query gets."""

from __future__ import annotations

import hashlib
import math
import time

import numpy as np
import pandas as pd
import pytest

from dashboards import database, queries
from db.session import scope

pytestmark = pytest.mark.contract

BUCKET_COUNTS = (1, 7, 25, 40, 100, 333, 400, 999, 1000, 5000)


def _curves() -> dict[str, list[tuple[int, float | None]]]:
    """Curves of every shape the page meets: dense from step 0 with NaNs (2,500 steps:
    grain 3), sparse validation points (grain 1), long with gaps (grain 13), one point."""
    rng = np.random.default_rng(7)
    loss = [(s, None if s % 397 == 5 else float(3 * math.exp(-s / 400) + rng.normal(0, 0.05))) for s in range(0, 2500)]
    long = [(s, float(rng.normal())) for s in range(1, 12346) if s % 7]
    return {"loss": loss, "val_loss": [(s, 1.0 + 1 / s) for s in range(100, 2501, 100)], "long": long,
            "one": [(42, 0.5)]}


def _queue(url: str, lease_s: float = 60.0):
    from db import engine as db_engine
    from db import schema
    from jobs.queue import Queue

    eng = db_engine.create(url)
    schema.upgrade(eng)
    return eng, Queue(eng, lease_s=lease_s)


def _jobs(n: int, *, max_attempts: int = 3):
    from jobs.operator import NewJob

    return [NewJob(spec_hash=hashlib.sha256(f"r{i}".encode()).hexdigest(), spec={"i": i}, factors={"i": i},
                   experiment="t", max_attempts=max_attempts, backoff_s=0.0) for i in range(n)]


def _log(eng, lease, curves: dict[str, list[tuple[int, float | None]]]) -> None:
    from jobs.metrics import MetricsWriter

    writer = MetricsWriter(eng, lease, flush_every=10_000_000)
    writer.log_many([(name, step, math.nan if v is None else v, 0.0) for name, points in curves.items()
                     for step, v in points])
    writer.flush()


def _read(url: str, fn):
    eng = database.open_readonly(url)
    try:
        with scope(eng, write=False) as conn:
            return fn(conn)
    finally:
        eng.dispose()


def _assert_same(rolled: pd.DataFrame, live: pd.DataFrame) -> None:
    assert list(rolled.columns) == list(live.columns) == queries.CURVE_COLUMNS
    for column in ("job_id", "step", "points", "stride"):
        assert rolled[column].astype(int).tolist() == live[column].astype(int).tolist(), column
    for column in ("value", "min", "max"):
        a, b = rolled[column].astype(float).to_numpy(), live[column].astype(float).to_numpy()
        assert (np.isnan(a) == np.isnan(b)).all(), column
        assert a[~np.isnan(a)] == pytest.approx(b[~np.isnan(b)], rel=1e-12, abs=1e-12), column


def test_a_finished_jobs_rollup_reads_exactly_the_live_querys_buckets(db_url):
    eng, queue = _queue(db_url)
    from jobs import operator
    from jobs.queue import WorkerInfo

    operator.enqueue(queue.engine, "g", _jobs(1))
    claimed = queue.claim(WorkerInfo(name="w", host="h", pid=1))
    _log(eng, claimed.lease, _curves())
    queue.complete(claimed.lease)
    eng.dispose()
    job_id = claimed.job.id

    def check(conn):
        for name in _curves():
            ranges = queries.rollup_ranges(conn, name, [job_id])
            assert ranges["job_id"].tolist() == [job_id], name  # read from the roll-up, not the points
            for buckets in BUCKET_COUNTS:
                rolled = queries.curves(conn, name, [job_id], buckets=buckets)
                live = queries.curves(conn, name, [job_id], buckets=buckets, rollups=False)
                assert len(live) <= buckets
                _assert_same(rolled, live)
        # 2,500 steps in grains of 3: 400 buckets would be 7 steps, so they are 9 (3 grains)
        loss = queries.curves(conn, "loss", [job_id], buckets=400)
        assert len(loss) == 278 and loss["step"].iloc[:3].tolist() == [8, 17, 26] and loss["step"].iloc[-1] == 2499
        assert loss["points"].sum() == 2500  # NaN points counted, as the live query counts them
        # 40 buckets (63 steps) hold 5 grains of the coarse level (12 steps): 72-step buckets from it
        coarse = queries.curves(conn, "loss", [job_id], buckets=40)
        assert len(coarse) == 35 and coarse["step"].iloc[0] == 71 and coarse["points"].sum() == 2500

    _read(db_url, check)


def test_rollups_follow_the_jobs_state(db_url):
    """Written on every way to a final state (succeeded, failed, diverged, cancelled,
    failed by the reaper); dropped by retry; running jobs are read point by point."""
    from jobs import operator
    from jobs.queue import WorkerInfo

    eng, queue = _queue(db_url, lease_s=0.3)
    operator.enqueue(queue.engine, "g", _jobs(6, max_attempts=1))
    w = WorkerInfo(name="w", host="h", pid=1)
    claims = [queue.claim(w) for _ in range(5)]
    curve = {"loss": [(s, float(s)) for s in range(1, 3001)]}
    for c in claims:
        _log(eng, c.lease, curve)
    done, failed, diverged, cancelled, reaped = (c.job.id for c in claims)
    queue.complete(claims[0].lease)
    queue.fail(claims[1].lease, "boom")
    queue.diverged(claims[2].lease, "loss=nan")
    operator.cancel(queue.engine, ids=[cancelled])
    running = queue.claim(WorkerInfo(name="w2", host="h", pid=2))
    _log(eng, running.lease, curve)
    time.sleep(0.5)
    assert set(operator.reclaim_stale(queue.engine)) == {reaped, running.job.id}  # both out of attempts: failed
    operator.retry(queue.engine, ids=[failed])
    still = queue.claim(WorkerInfo(name="w3", host="h", pid=3))  # the retried job runs again
    assert still.job.id == failed
    _log(eng, still.lease, {"loss": [(s, 0.0) for s in range(3001, 3101)]})
    eng.dispose()
    ids = [done, failed, diverged, cancelled, reaped, running.job.id]

    def check(conn):
        rolled = set(queries.rollup_ranges(conn, "loss", ids)["job_id"])
        assert rolled == {done, diverged, cancelled, reaped, running.job.id}
        both = queries.curves(conn, "loss", ids, buckets=50)
        live = queries.curves(conn, "loss", ids, buckets=50, rollups=False)
        _assert_same(both, live)
        # the running job's curve grew after its roll-up was dropped
        assert both[both["job_id"] == failed]["step"].max() == 3100

    _read(db_url, check)


def test_upgrade_rolls_up_jobs_finished_before_it(db_url):
    """A database at schema 0004 with a finished and a running job: after the upgrade the
    finished job's curves come from their roll-up, and read the same."""
    from alembic import command
    from sqlalchemy import text

    from db import engine as db_engine
    from db import schema

    eng = db_engine.create(db_url)
    cfg = schema.alembic_config(eng.url.render_as_string(hide_password=False))
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
    points = _curves()
    with eng.begin() as conn:
        conn.execute(text("INSERT INTO grids (id, name, created_at) VALUES (1, 'old', 1.0)"))
        for job_id, state in ((1, "succeeded"), (2, "running")):
            conn.execute(text(
                "INSERT INTO jobs (id, grid_id, spec_hash, spec, factors, experiment, state, priority, attempts, "
                "max_attempts, backoff_s, created_at, updated_at) VALUES "
                "(:id, 1, :h, '{}', '{}', 't', :state, 0, 1, 1, 0.0, 1.0, 1.0)"), {"id": job_id, "h": str(job_id), "state": state})
        conn.execute(text("INSERT INTO metrics (job_id, attempt, name, step, value, wall_time) "
                          "VALUES (:j, 1, :n, :s, :v, 0.0)"),
                     [{"j": j, "n": name, "s": s, "v": v} for j in (1, 2) for name, pts in points.items() for s, v in pts])
    schema.upgrade(eng)
    eng.dispose()

    def check(conn):
        for name in points:
            assert queries.rollup_ranges(conn, name, [1, 2])["job_id"].tolist() == [1]
            for buckets in (40, 400, 1000):
                _assert_same(queries.curves(conn, name, [1, 2], buckets=buckets),
                             queries.curves(conn, name, [1, 2], buckets=buckets, rollups=False))

    _read(db_url, check)


def test_bucket_widths_are_whole_grains_of_one_level():
    assert queries.curve_width(1, 1000, 10) == (100, 1)  # grains 1 and 4: 100 is 25 of level 1's
    assert queries.curve_width(1, 4500, 400) == (15, 0)  # 12 steps < 3 grains of 20: level 0's grains of 5
    assert queries.curve_width(1, 4500, 40) == (120, 1)  # 113 steps: 6 grains of 20
    assert queries.curve_width(1, 1_000_000, 400) == (3000, 0)  # 2,500 steps: 3 grains of 1,000
    assert queries.curve_width(1, 1_000_000, 1000) == (1000, 0)
    assert queries.curve_width(0, 99, 7) == (16, 1)  # 15 steps: 4 grains of 4
    assert queries.curve_width(0, 99, 50) == (2, 0)  # short curves, many buckets: exact
