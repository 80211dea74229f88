"""PostgreSQL restarted in the middle of a run: workers reconnect with backoff,
buffered metrics are written once, no job is lost.

This restarts the real server on 127.0.0.1:5432 (pg_ctlcluster), so it needs to run
as a user allowed to do that; elsewhere it skips with the reason (under CI it fails).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time

import pytest

from jobs import pool, states
from jobs.worker import WorkerOptions
from tests.conftest import IN_CI
from tests.faults import invariants
from tests.support.grids import make_jobs

pytestmark = [pytest.mark.contract, pytest.mark.postgres]


def _cluster() -> list[str] | None:
    if not shutil.which("pg_ctlcluster") or not os.path.isdir("/etc/postgresql") or os.geteuid() != 0:
        return None
    version = sorted(os.listdir("/etc/postgresql"))[0]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


def test_workers_ride_out_a_postgresql_restart(pg_url, tmp_path, capsys):
    from db import engine as db_engine
    from db import schema
    from jobs.queue import Queue

    cluster = _cluster()
    if cluster is None:
        reason = "cannot restart PostgreSQL here (needs root and pg_ctlcluster)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    engine = db_engine.create(pg_url)
    schema.upgrade(engine)
    queue = Queue(engine)
    queue.enqueue("restart", make_jobs(60, steps=20, delay=0.05, max_attempts=5))
    options = WorkerOptions(url=pg_url, runner="tests.support.runners:resumable", runs_dir=str(tmp_path / "runs"),
                               heartbeat_s=1.0, lease_grace=5.0, poll_s=0.1, log_level=logging.ERROR,
                               threads_per_worker=1)
    procs = pool.start(options, 4)
    try:
        deadline = time.monotonic() + 120
        while queue.counts()[states.SUCCEEDED] < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        t0 = time.monotonic()
        subprocess.run([*cluster, "restart", "--", "-m", "fast"], check=True, capture_output=True, timeout=120)
        down_s = time.monotonic() - t0
        for p in procs:
            p.join(timeout=300)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    finally:
        for p in procs:  # never leave workers behind for the next test
            if p.is_alive():
                p.kill()
                p.join()
    engine.dispose()  # its pooled connections died with the server
    try:
        figures = invariants.check(engine)
        invariants.check_resumable_curves(engine, 20)
    finally:
        engine.dispose()
    with capsys.disabled():
        print(f"\n[reliability] postgres restart: jobs={figures['jobs']} restarts=1 (took {down_s:.1f}s) "
              f"attempts={figures['attempts']} reclaimed={figures['reclaimed']} lost={figures['lost']} "
              f"double_run={figures['double_run']}")
