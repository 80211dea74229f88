"""The dashboard's queries on both backends: downsampling in the database, the read
budget, loose index scans, and a connection that cannot write."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from dashboards import database, queries
from db.session import scope

pytestmark = pytest.mark.contract


def _with_points(url: str, curves: dict[int, dict[str, list[tuple[int, float]]]]) -> dict[int, int]:
    """A migrated database whose jobs (by index) logged the given (step, value) points.
    Returns index -> job id."""
    from db import engine as db_engine
    from db import schema
    from jobs.metrics import MetricsWriter
    from jobs import operator
    from jobs.operator import NewJob
    from jobs.queue import Queue, WorkerInfo

    eng = db_engine.create(url)
    schema.upgrade(eng)
    queue = Queue(eng)
    new = [NewJob(spec_hash=hashlib.sha256(str(i).encode()).hexdigest(), spec={"i": i}, factors={"i": i},
                  experiment="t") for i in curves]
    operator.enqueue(queue.engine, "g", new)
    ids = {}
    for i, named in curves.items():
        claimed = queue.claim(WorkerInfo(name="w", host="h", pid=1))
        ids[i] = claimed.job.id
        writer = MetricsWriter(eng, claimed.lease, flush_every=1_000_000)
        writer.log_many([(name, step, value, 0.0) for name, points in named.items() for step, value in points])
        writer.flush()
        queue.complete(claimed.lease)
    eng.dispose()
    return ids


def test_curves_are_bucket_means_computed_in_the_database(db_url):
    ids = _with_points(db_url, {0: {"loss": [(s, float(s)) for s in range(1, 1001)]},
                                1: {"loss": [(s, 2.0 * s) for s in range(1, 101)]}})
    eng = database.open_readonly(db_url)
    with scope(eng, write=False) as conn:
        out = queries.curves(conn, "loss", list(ids.values()), buckets=10)
    eng.dispose()
    long = out[out["job_id"] == ids[0]]
    assert len(long) == 10 and set(long["points"]) == {100} and set(long["stride"]) == {1}
    # bucket k holds steps 100k+1 .. 100k+100: mean 100k + 50.5, last step 100k + 100
    assert long["step"].tolist() == [100 * k + 100 for k in range(10)]
    assert long["value"].tolist() == pytest.approx([100 * k + 50.5 for k in range(10)])
    assert long["min"].tolist() == pytest.approx([100 * k + 1 for k in range(10)])
    short = out[out["job_id"] == ids[1]]  # its own 100 steps, in 10 buckets of 10
    assert len(short) == 10 and short["value"].iloc[0] == pytest.approx(2.0 * 5.5)


def test_curves_over_the_read_budget_average_every_kth_step_of_dense_runs_only(db_url):
    ids = _with_points(db_url, {0: {"loss": [(s, float(s % 2)) for s in range(1, 2001)],
                                    "val_loss": [(s, 1.0) for s in range(100, 2001, 100)]}})
    eng = database.open_readonly(db_url)
    with scope(eng, write=False) as conn:
        # The read budget bounds curves read point by point (running jobs): rollups=False.
        sampled = queries.curves(conn, "loss", [ids[0]], buckets=10, read_budget=500, rollups=False)
        exact = queries.curves(conn, "loss", [ids[0]], buckets=10, rollups=False)
        rolled = queries.curves(conn, "loss", [ids[0]], buckets=10, read_budget=500)
        sparse = queries.curves(conn, "val_loss", [ids[0]], buckets=10, read_budget=5, rollups=False)
        ranges = queries.step_ranges(conn, "val_loss", [ids[0]])
    eng.dispose()
    assert set(sampled["stride"]) == {4} and sampled["points"].sum() == 500
    assert exact["points"].sum() == 2000 and exact["value"].tolist() == pytest.approx([0.5] * 10)
    # a finished job's roll-up holds every point: no sampling, whatever the budget
    assert set(rolled["stride"]) == {1} and rolled["points"].sum() == 2000
    assert rolled["value"].tolist() == pytest.approx([0.5] * 10)
    # every 4th step from step 1 is odd: the sample's mean is 1, and says it is a sample
    assert sampled["value"].tolist() == pytest.approx([1.0] * 10)
    assert set(sparse["stride"]) == {1} and sparse["points"].sum() == 20  # sparse curves are read whole
    assert ranges.iloc[0][["lo", "hi", "tail"]].tolist() == [100, 2000, 1]


def test_curves_step_range_and_unknown_metric(db_url):
    ids = _with_points(db_url, {0: {"loss": [(s, float(s)) for s in range(0, 100)]}})
    eng = database.open_readonly(db_url)
    with scope(eng, write=False) as conn:
        window = queries.curves(conn, "loss", [ids[0]], buckets=5, lo=10, hi=19)
        missing = queries.curves(conn, "nope", [ids[0]])
        nobody = queries.curves(conn, "loss", [])
    eng.dispose()
    assert window["step"].tolist() == [11, 13, 15, 17, 19]
    assert window["value"].tolist() == pytest.approx([10.5, 12.5, 14.5, 16.5, 18.5])
    assert missing.empty and list(missing.columns) == queries.CURVE_COLUMNS and nobody.empty


def test_metric_names_last_values_and_sampled_means(db_url):
    ids = _with_points(db_url, {0: {"loss": [(s, 10.0 - s) for s in range(1, 10)], "tokens_per_s": [(s, 100.0) for s in range(1, 1001)]},
                                1: {"grad_norm": [(1, 1.0)], "a.b/c": [(3, 3.0)]}})
    eng = database.open_readonly(db_url)
    with scope(eng, write=False) as conn:
        assert queries.metric_names(conn, list(ids.values())) == ["a.b/c", "grad_norm", "loss", "tokens_per_s"]
        assert queries.metric_names(conn, [ids[1]]) == ["a.b/c", "grad_norm"]
        last = queries.last_values(conn, "loss", list(ids.values()))
        means = queries.sampled_means(conn, "tokens_per_s", list(ids.values()), samples=100)
    eng.dispose()
    assert last[["job_id", "step", "value"]].values.tolist() == [[ids[0], 9, 1.0]]
    assert means["mean"].tolist() == [100.0] and means["points"].tolist() == [100]


def test_the_dashboard_connection_cannot_write(db_url):
    from sqlalchemy import insert, update
    from sqlalchemy.exc import DBAPIError

    from db.models import grids, jobs

    _with_points(db_url, {0: {"loss": [(1, 1.0)]}})
    eng = database.open_readonly(db_url)
    with pytest.raises(DBAPIError, match="(?i)read-only|readonly"):
        with scope(eng, write=False) as conn:
            conn.execute(update(jobs).values(state="cancelled"))
    with pytest.raises(DBAPIError, match="(?i)read-only|readonly"):
        with scope(eng) as conn:  # even a transaction that asks to write
            conn.execute(insert(grids).values(name="x", created_at=0.0))
    with scope(eng, write=False) as conn:
        assert queries.job_table(conn)["state"].tolist() == ["succeeded"]
    eng.dispose()


def test_a_page_visit_leaves_the_sqlite_file_untouched(filled_sqlite, app):
    from pathlib import Path

    path = Path(filled_sqlite.url.removeprefix("sqlite:///"))
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    for page in ("overview.py", "curves.py", "results.py", "comparisons.py", "timing.py", "failures.py", "run_detail.py"):
        at = app(filled_sqlite.url, page)
        assert not at.exception, page
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_plan_buckets_groups_jobs_by_width_stride_and_first_step():
    ranges = pd.DataFrame({"job_id": [1, 2, 3], "lo": [1, 1, 0], "hi": [1000, 1000, 99], "tail": [64, 64, 2]})
    assert queries.plan_buckets(ranges, 10, None, None) == {(100, 1, 1): [1, 2], (10, 1, 0): [3]}
    # 2,100 points over a budget of 700: dense runs read at every 3rd step, whole strides per bucket
    assert queries.plan_buckets(ranges, 10, None, None, read_budget=700) == {(102, 3, 1): [1, 2], (10, 1, 0): [3]}
    assert queries.plan_buckets(ranges, 10, 500, 599) == {(10, 1, 500): [1, 2]}
