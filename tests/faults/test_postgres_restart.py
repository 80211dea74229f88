"""PostgreSQL restarted in the middle of a run: workers reconnect with backoff,
buffered metrics are written once, no job is lost.

The test restarts a real PostgreSQL server of its own: a private cluster made for it with
Debian's ``pg_createcluster`` on a free port, dropped afterwards. The shared server on
127.0.0.1:5432 keeps serving the tests that run beside this one (``make test`` runs the suite
in parallel). Making a cluster needs root and the postgresql-common tools; elsewhere the
test skips with the reason (under CI it fails).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import socket
import time
import uuid

import pytest

from jobs import operator, pool, reports, states
from jobs.worker import WorkerOptions
from tests.conftest import IN_CI
from tests.faults import invariants
from tests.support.grids import make_jobs

pytestmark = [pytest.mark.contract, pytest.mark.postgres]


def _tools_reason() -> str | None:
    if os.geteuid() != 0 or not os.path.isdir("/etc/postgresql"):
        return "cannot make a PostgreSQL cluster here (needs root and /etc/postgresql)"
    missing = [t for t in ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster") if not shutil.which(t)]
    return f"cannot make a PostgreSQL cluster here (missing {', '.join(missing)})" if missing else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def private_pg():
    """(url, ctl): a PostgreSQL server of this test's own (trust auth, 127.0.0.1, a free port)
    and the pg_ctlcluster command that controls it; dropped afterwards."""
    reason = _tools_reason()
    if reason:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    version = sorted(os.listdir("/etc/postgresql"))[0]
    name, port = f"gridlab-restart-{uuid.uuid4().hex[:8]}", _free_port()
    subprocess.run(["pg_createcluster", "--start", "-p", str(port), version, name, "--", "--auth=trust"],
                   check=True, capture_output=True, timeout=120)
    try:
        yield (f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
               ["pg_ctlcluster", "--skip-systemctl-redirect", version, name])
    finally:
        subprocess.run(["pg_dropcluster", "--stop", version, name], capture_output=True, timeout=120)


def test_workers_ride_out_a_postgresql_restart(private_pg, tmp_path, capsys):
    from db import engine as db_engine
    from db import schema
    from jobs.queue import Queue

    pg_url, cluster = private_pg
    engine = db_engine.create(pg_url)
    schema.upgrade(engine)
    queue = Queue(engine)
    operator.enqueue(queue.engine, "restart", make_jobs(60, steps=20, delay=0.05, max_attempts=5))
    options = WorkerOptions(url=pg_url, runner="tests.support.runners:resumable", runs_dir=str(tmp_path / "runs"),
                               heartbeat_s=1.0, lease_grace=5.0, poll_s=0.1, log_level=logging.ERROR,
                               threads_per_worker=1)
    procs = pool.start(options, 4)
    try:
        deadline = time.monotonic() + 120
        while reports.counts(queue.engine)[states.SUCCEEDED] < 5 and time.monotonic() < deadline:
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
