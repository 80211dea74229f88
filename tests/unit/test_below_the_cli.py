"""What the commands call below the command line: opening the database (db.database), one
grid expansion for a dry run and a real one (harness.enqueue.Plan), the wait for local
workers (jobs.pool.wait_launched), a supervision pass in one line (slurm.supervise.Tick)
and Slurm array ids (slurm.launch.array_index)."""

from __future__ import annotations

import pytest

from db import database, schema
from db import engine as db_engine
from db.errors import NoDatabase, SchemaMismatch
from harness import enqueue, grid
from jobs import pool
from slurm import launch, supervise

pytestmark = pytest.mark.unit

GRID = "name: g\nexperiment: tiny_lm\nfixed: {steps: 2}\naxes: {seed: [0, 1, 2]}\n"


def test_opening_a_missing_sqlite_file_creates_nothing_unless_allowed(tmp_path):
    path = tmp_path / "g.db"
    with pytest.raises(NoDatabase, match=r"^no database at .*g\.db; point --db here$"):
        database.open_engine(f"sqlite:///{path}", missing_fix="point --db here")
    assert not path.exists()
    engine = database.open_engine(f"sqlite:///{path}", create=True)
    assert schema.current_revision(engine) == schema.HEAD
    engine.dispose()


def test_an_empty_database_is_refused_unless_creating(tmp_path, monkeypatch):
    import sqlite3

    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # an empty SQLite file
    disposed = []
    real_create = db_engine.create

    def create(*args, **kw):
        engine = real_create(*args, **kw)
        real_dispose = engine.dispose
        engine.dispose = lambda *a, **k: (disposed.append(engine), real_dispose(*a, **k))
        return engine

    monkeypatch.setattr(db_engine, "create", create)
    with pytest.raises(SchemaMismatch, match="is empty"):
        database.open_engine(f"sqlite:///{path}")
    assert len(disposed) == 1, "a refused database's engine is disposed"
    unchecked = database.open_engine(f"sqlite:///{path}", any_schema=True)  # db current / db upgrade
    assert schema.current_revision(unchecked) is None
    unchecked.dispose()


def test_a_dry_run_counts_the_cells_a_real_run_writes(sqlite_url):
    from jobs.queue import Queue

    plan = enqueue.plan(grid.parse(GRID, "g.yaml"))
    assert plan.count(None).new == 3  # no database yet: every cell is new
    engine = database.open_engine(sqlite_url, create=True)
    queue = Queue(engine)
    assert (plan.count(queue).new, plan.count(queue).existing) == (3, 0)
    written = plan.write(queue)
    assert (written.new, written.existing) == (3, 0)
    again = plan.count(queue)
    assert (again.total, again.new, again.existing) == (3, 0, 3)
    engine.dispose()


class _Job:
    def __init__(self, job_id, error=None):
        self.job_id, self._error = job_id, error

    def result(self):
        if self._error is not None:
            raise RuntimeError(self._error)


class _Queue:
    engine = "the queue's engine"


def test_waiting_for_local_workers_records_each_and_returns_the_failed(monkeypatch):
    updates = []

    def update(engine, executor, seen):
        updates.append((engine, executor, seen))
        return len(seen)

    monkeypatch.setattr(pool.worker_jobs, "update", update)
    failed = pool.wait_launched(_Queue(), [_Job(11), _Job(12, "Traceback ...\nValueError: bad cell"), _Job(13, "")])
    assert failed == {"12": "ValueError: bad cell", "13": None}
    assert updates == [(_Queue.engine, "local", {"11": ("COMPLETED", None), "12": ("FAILED", "ValueError: bad cell"),
                                                 "13": ("FAILED", None)})]


def test_a_pass_in_one_line_and_only_eventful_passes_are_printed():
    quiet = supervise.Tick(workers_alive=2)
    assert quiet.describe() == "workers alive 2" and not quiet.eventful
    busy = supervise.Tick(workers_alive=1, submitted=1, attempts_ended=[(3, 1, "oom")],
                          attempts_refined=[(4, 2, "node_fail")], worker_errors=["w: boom"])
    assert busy.eventful
    assert busy.describe() == ("workers alive 1; submitted 1; job 3 attempt 1 ended oom; "
                               "job 4 attempt 2: lease had expired, Slurm says node_fail; w: boom")


def test_array_index():
    assert [launch.array_index(j) for j in ("12_3", "12", "4711", "12_x")] == [3, None, None, None]
