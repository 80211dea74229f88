"""Connections dropped by the server (as in a PostgreSQL restart): nothing is lost."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from db import engine as db_engine
from db import schema
from db.errors import DatabaseUnavailable
from db.models import metrics
from db.session import scope
from jobs import operator, reports
from jobs.metrics import MetricsWriter
from jobs.queue import Queue, WorkerInfo
from tests.conftest import _pg_admin
from tests.support.grids import make_jobs

pytestmark = [pytest.mark.contract, pytest.mark.postgres]


def _drop_connections(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    _pg_admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()")


def test_buffered_metrics_survive_dropped_connections_and_are_stored_once(pg_url):
    eng = db_engine.create(pg_url)
    schema.upgrade(eng)
    queue = Queue(eng)
    operator.enqueue(queue.engine, "g", make_jobs(1))
    claimed = queue.claim(WorkerInfo.here())
    writer = MetricsWriter(eng, claimed.lease, flush_every=10**9, flush_interval_s=10**9)
    for step in range(100):
        writer.log(step, {"loss": 1.0 / (step + 1)})
    writer.flush()
    for step in range(100, 200):
        writer.log(step, {"loss": 1.0 / (step + 1)})

    _drop_connections(pg_url)
    writer.flush()  # the pooled connection is dead: the points must stay buffered
    assert writer.written == 100, "the failed flush must keep its points"
    writer.flush(wait=True)
    queue.heartbeat(claimed.lease)  # the pool reconnected
    queue.complete(claimed.lease)
    with scope(eng, write=False) as conn:
        n = conn.execute(select(func.count()).select_from(metrics)).scalar_one()
    eng.dispose()
    assert n == 200


def test_an_unreachable_server_is_a_clear_error():
    eng = db_engine.create("postgresql://postgres@127.0.0.1:1/nothing")
    with pytest.raises(DatabaseUnavailable, match="cannot reach database"):
        reports.counts(eng)


@pytest.mark.postgres
@pytest.mark.parametrize("readonly", [False, True])
def test_postgresql_sessions_let_go_of_dead_clients(pg_url, readonly):
    """Every gridlab session on PostgreSQL has server-side keepalives and an idle-transaction
    timeout, so a node that dies mid-transaction cannot keep a job's row locked for the
    kernel's two hours; the read-only (dashboard) engine keeps them too, and stays read-only."""
    from sqlalchemy import text

    writer = db_engine.create(pg_url)
    schema.upgrade(writer)
    writer.dispose()
    eng = db_engine.create(pg_url, readonly=readonly)
    try:
        with eng.connect() as conn:
            shown = {name: conn.execute(text(f"SHOW {name}")).scalar()
                     for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count",
                                  "idle_in_transaction_session_timeout", "default_transaction_read_only")}
    finally:
        eng.dispose()
    assert shown["tcp_keepalives_idle"] == "30" and shown["tcp_keepalives_interval"] == "10"
    assert shown["tcp_keepalives_count"] == "3" and shown["idle_in_transaction_session_timeout"] == "5min"
    assert shown["default_transaction_read_only"] == ("on" if readonly else "off")
