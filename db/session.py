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


@contextmanager
def scope(engine: Engine, *, write: bool = True) -> Iterator[Connection]:
    """A transaction. ``write=False`` lets SQLite readers skip the write lock."""
    try:
        with engine.connect() as conn:
            conn.info["gridlab_write"] = write  # read by SQLite's BEGIN hook (db.engine)
            with conn.begin():
                yield conn
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
        raise
    except DatabaseError as exc:
        if engine.dialect.name == "sqlite" and "not a database" in str(exc.orig):
            raise NotGridlabDatabase(
                f"{engine.url.database} is not a SQLite database (file is not a database)",
                "point --db at a gridlab database, or at a new file name to create one",
            ) from exc
        raise


def _is_sqlite_open_problem(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(m in text for m in ("unable to open database file", "read-only file system", "disk i/o error"))


def _is_connection_problem(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    text = str(exc.orig).lower()
    return any(
        marker in text
        for marker in (
            "connection refused",
            "could not connect",
            "connection failed",
            "server closed the connection",
            "terminating connection",
            "could not translate host name",
            "timeout expired",
            "password authentication failed",
            "does not exist",
            "unable to open database file",
            "no route to host",
            "consuming input failed",
            "the connection is closed",
        )
    )


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
