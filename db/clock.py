"""The database's clock, as a SQL expression.

Leases and backoff are judged by the database's time, never the worker's, so a
worker whose clock drifts cannot steal or keep a lease it should not (Optuna does
the same in ``storages/_heartbeat.py``). ``now()`` compiles to seconds since the
epoch, as a float, on every backend.
"""

from __future__ import annotations

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.types import Double


class now(FunctionElement):  # noqa: N801 - reads as SQL: clock.now()
    """Seconds since the Unix epoch by the database server's clock."""

    type = Double()
    inherit_cache = True


@compiles(now, "postgresql")
def _now_postgresql(element, compiler, **kw) -> str:
    # clock_timestamp(), not now(): now() is frozen at the start of the transaction.
    return "extract(epoch from clock_timestamp())::double precision"


@compiles(now, "sqlite")
def _now_sqlite(element, compiler, **kw) -> str:
    # julianday has millisecond resolution; unixepoch('subsec') needs SQLite 3.42.
    return "((julianday('now') - 2440587.5) * 86400.0)"
