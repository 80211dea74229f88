"""The heartbeat under trouble: SQLite's write lock held past the lease, and errors of any kind.

The heartbeat thread must neither die (a dead heartbeat lets the lease expire while the job
runs on, so it runs twice) nor keep a job writing after its lease is gone.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

import pytest

from jobs import operator, reports, states
from jobs.queue import Queue
from jobs.worker import Worker
from tests.faults import invariants
from tests.support import runners
from tests.support.grids import make_jobs

pytestmark = pytest.mark.contract


@pytest.fixture
def thread_errors(monkeypatch):
    """Exceptions that ended any thread during the test."""
    seen: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    return seen


def test_sqlite_write_lock_held_longer_than_the_lease(sqlite_url, tmp_path, thread_errors, caplog):
    from db import engine as db_engine
    from db import schema

    eng = db_engine.create(sqlite_url)
    schema.upgrade(eng)
    queue = Queue(eng, lease_s=1.0)
    operator.enqueue(queue.engine, "locked", make_jobs(1, steps=40, delay=0.05))
    worker = Worker(queue, runners.resumable, runs_dir=tmp_path / "runs", heartbeat_s=0.2, poll_s=0.05,
                    reclaim_every_s=0.2)
    done = threading.Thread(target=worker.run, daemon=True)
    caplog.set_level(logging.WARNING)
    done.start()
    deadline = time.monotonic() + 30
    while (reports.job(queue.engine, 1).checkpoint_step or 0) < 4:
        assert time.monotonic() < deadline, "the job never recorded a checkpoint"
        time.sleep(0.02)
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's writer, stuck for 2.5 leases
    time.sleep(2.5)
    holder.execute("COMMIT")
    holder.close()
    done.join(timeout=60)
    assert not done.is_alive()
    assert thread_errors == [], f"a thread died: {thread_errors}"
    assert any("heartbeat for job 1 failed" in r.message for r in caplog.records)
    assert any("no heartbeat got through for a whole lease" in r.message for r in caplog.records)
    assert reports.job(queue.engine, 1).state == states.SUCCEEDED
    outcomes = [a.outcome for a in reports.attempts(queue.engine, 1)]
    assert outcomes[-1] == states.OUTCOME_SUCCEEDED and set(outcomes[:-1]) <= {states.OUTCOME_LEASE_EXPIRED}
    invariants.check(eng)
    invariants.check_markers(tmp_path / "runs")
    invariants.check_resumable_curves(eng, 40)
    eng.dispose()


def test_heartbeat_errors_of_any_kind_are_retried_within_the_lease(engine, tmp_path, thread_errors, caplog,
                                                                   monkeypatch):
    queue = Queue(engine, lease_s=3.0)
    operator.enqueue(queue.engine, "flaky-beat", make_jobs(1, steps=30, delay=0.05))
    real = queue.heartbeat
    calls = {"n": 0}

    def heartbeat(lease):
        calls["n"] += 1
        if calls["n"] <= 3:  # neither LeaseLost nor DatabaseUnavailable: the old thread died of these
            raise OSError(28, "database or disk is full")
        return real(lease)

    monkeypatch.setattr(queue, "heartbeat", heartbeat)
    caplog.set_level(logging.WARNING)
    Worker(queue, runners.resumable, runs_dir=tmp_path / "runs", heartbeat_s=0.2, poll_s=0.05).run()
    assert thread_errors == []
    assert calls["n"] > 4, "the heartbeat went on after its errors"
    assert sum("heartbeat for job 1 failed" in r.message for r in caplog.records) == 3
    assert [a.outcome for a in reports.attempts(queue.engine, 1)] == [states.OUTCOME_SUCCEEDED]
    invariants.check(engine)


def test_a_heartbeat_logging_as_the_attempt_ends_leaves_no_log_file_open(engine, tmp_path, monkeypatch):
    """A heartbeat that logs (here: every beat fails, every 5 ms) as an attempt's log file closes
    must not reopen it (logging.FileHandler reopens a closed file on the next record): the
    heartbeat stops before the attempt's output closes."""
    import gc
    import warnings

    queue = Queue(engine, lease_s=60.0)
    operator.enqueue(queue.engine, "chatty-beat", make_jobs(40))

    def heartbeat(lease):
        raise OSError(28, "database or disk is full")

    monkeypatch.setattr(queue, "heartbeat", heartbeat)
    # Each heartbeat record is held 20 ms between the logger handing it to the attempt's file
    # handler and the handler taking its lock: the window in which the attempt ends and the
    # file closes under a heartbeat already logging (a loaded machine opens it by descheduling).
    real_filter = logging.FileHandler.filter

    def late(handler, record):
        if record.threadName.startswith("heartbeat-"):
            time.sleep(0.02)
        return real_filter(handler, record)

    monkeypatch.setattr(logging.FileHandler, "filter", late)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        Worker(queue, runners.noop, runs_dir=tmp_path / "runs", heartbeat_s=0.005, poll_s=0.01).run()
        gc.collect()
    assert reports.counts(queue.engine)[states.SUCCEEDED] == 40
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning) and "output.log" in str(w.message)]
    assert leaked == []
