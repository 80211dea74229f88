"""The one way gridlab opens a transaction.

``scope(engine)`` yields a connection inside a transaction, commits on success,
rolls back on any error, and turns a lost or unreachable server into
:class:`db.errors.DatabaseUnavailable` (after MLflow's ``store/db/utils.py`` and
Optuna's ``_create_scoped_session``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DatabaseError, DBAPIError, OperationalError

from db.engine import redact
from db.errors import DatabaseUnavailable, NotGridlabDatabase


_CONNECTION_MARKERS = (
    "connection refused",
    "could not connect",
    "connection failed",
    "server closed the connection",
    "terminating connection",
    "could not translate host name",
    "timeout expired",
    "password authentication failed",
    "unable to open database file",
    "no route to host",
    "consuming input failed",
    "the connection is closed",
    "the database system is",  # ... shutting down / starting up / in recovery mode
    "connection reset",
    "broken pipe",
    "ssl connection has been closed",
    "connection already closed",
)


@contextmanager
def scope(engine: Engine, *, write: bool = True, busy_s: float | None = None) -> Iterator[Connection]:
    """A transaction. ``write=False`` lets SQLite readers skip the write lock; ``busy_s``
    caps how long SQLite waits for another writer's lock in this transaction (default
    :data:`db.engine.SQLITE_BUSY_TIMEOUT_S`), so a heartbeat gives up within its lease."""
    driver_error = engine.dialect.loaded_dbapi.Error
    try:
        with engine.connect() as conn:
            conn.info["gridlab_write"] = write  # read by SQLite's BEGIN hook (db.engine)
            conn.info["gridlab_busy_s"] = busy_s
            try:
                with conn.begin():
                    yield conn
            except driver_error as exc:
                # Raised by statements run on the driver's cursor (the queue's hot path,
                # jobs.queries): wrap it as SQLAlchemy would, and drop a dead connection
                # from the pool so the next transaction reconnects.
                dead = _is_disconnect(engine, conn, exc)
                if dead:
                    conn.invalidate()
                raise DBAPIError.instance(None, None, exc, driver_error, connection_invalidated=dead) from exc
    except OperationalError as exc:
        if engine.dialect.name == "sqlite" and _is_sqlite_open_problem(exc):
            raise DatabaseUnavailable(
                f"cannot open SQLite database {engine.url.database}: {_first_line(exc.orig)}",
                "check that its folder exists and is writable (a read-only file system cannot hold it)",
            ) from exc
        if _is_connection_problem(exc):
            raise DatabaseUnavailable(
                f"cannot reach database {redact(engine.url)}: {_first_line(exc.orig)}",
                "check that the server is running and the URL (--db or GRIDLAB_DB) is right",
            ) from exc
        if engine.dialect.name == "sqlite" and (busy := _sqlite_busy_or_full(exc)):
            raise DatabaseUnavailable(f"SQLite database {engine.url.database}: {busy}",
                                      "wait, or free disk space; writes are retried") from exc
        raise
    except DBAPIError as exc:
        # e.g. InterfaceError "the connection is closed" after a server restart
        if _is_connection_problem(exc):
            raise DatabaseUnavailable(
                f"cannot reach database {redact(engine.url)}: {_first_line(exc.orig)}",
                "check that the server is running and the URL (--db or GRIDLAB_DB) is right",
            ) from exc
        if isinstance(exc, DatabaseError) and engine.dialect.name == "sqlite" and "not a database" in str(exc.orig):
            raise NotGridlabDatabase(
                f"{engine.url.database} is not a SQLite database (file is not a database)",
                "point --db at a gridlab database, or at a new file name to create one",
            ) from exc
        raise


def _is_disconnect(engine: Engine, conn: Connection, exc: Exception) -> bool:
    try:
        raw = conn.connection.dbapi_connection
    except Exception:  # the connection is already gone
        return True
    if engine.dialect.is_disconnect(exc, raw, None):
        return True
    return engine.dialect.name == "postgresql" and any(m in str(exc).lower() for m in _CONNECTION_MARKERS)


def _is_sqlite_open_problem(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(m in text for m in ("unable to open database file", "read-only file system", "disk i/o error"))


def _sqlite_busy_or_full(exc: DBAPIError) -> str | None:
    """SQLite's passing troubles (another writer held the lock past the busy timeout, the
    disk is full): the database is there but unavailable for now, so writers retry."""
    text = str(exc.orig).lower()
    if "database is locked" in text or "database table is locked" in text:
        return "locked by another writer past the busy timeout"
    if "database or disk is full" in text:
        return "the disk is full"
    return None


def _is_connection_problem(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    text = str(exc.orig).lower()
    return any(marker in text for marker in _CONNECTION_MARKERS)


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
