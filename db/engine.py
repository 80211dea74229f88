"""Database URLs and engines.

gridlab speaks to SQLite (the embedded default: a file in the working directory) and
to PostgreSQL (for clusters). A URL comes from ``--db``, else ``GRIDLAB_DB``, else
``sqlite:///gridlab.db``.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy import create_engine

from db.errors import DatabaseUnavailable

DEFAULT_URL = "sqlite:///gridlab.db"
ENV_VAR = "GRIDLAB_DB"
SQLITE_BUSY_TIMEOUT_S = 60.0
SQLITE_CACHE_KIB = 65536

_SUPPORTED = "sqlite:///PATH or postgresql://USER@HOST:PORT/DBNAME"


def resolve_url(url: str | None = None) -> URL:
    """The URL to use, normalised: PostgreSQL through psycopg 3, SQLite as a file path."""
    raw = url or os.environ.get(ENV_VAR) or DEFAULT_URL
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise DatabaseUnavailable(
            f"database URL {redact(raw)!r} is not a URL",
            f"give --db or {ENV_VAR} as {_SUPPORTED}",
        ) from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise DatabaseUnavailable(
                f"database URL {redact(raw)!r} names no file",
                "workers are separate processes and need a file: use sqlite:///gridlab.db",
            )
        _check_sqlite_path(raw, parsed)
        return parsed.set(drivername="sqlite")
    raise DatabaseUnavailable(
        f"database URL {redact(raw)!r} uses the unsupported scheme {parsed.drivername!r}",
        f"use {_SUPPORTED}",
    )


def _check_sqlite_path(raw: str, parsed: URL) -> None:
    """A SQLite URL is a file path and nothing else: a ``?`` would be read as options (and
    silently cut the path short), a ``#`` as a URI fragment where SQLite opens the file."""
    if "?" in raw or parsed.query:
        shown = re.sub(r"([?&][^=&]*(?:pass|secret|token|key)[^=&]*=)[^&]*", r"\1***", raw, flags=re.IGNORECASE)
        raise DatabaseUnavailable(
            f"SQLite URL {shown!r} holds '?': gridlab's SQLite URLs take no options, and a file name with '?' "
            "would be cut short there",
            "give the path alone (sqlite:///path/to/results.db), renaming the file if its name holds '?'",
        )
    if "#" in (parsed.database or ""):
        raise DatabaseUnavailable(
            f"SQLite path {parsed.database!r} holds '#', which SQLite would read as the start of a URI fragment",
            "rename the file or folder so its path has no '#'",
        )


#: URL query keys whose values are secrets (``?password=``, ``?sslpassword=``, tokens).
_SECRET_KEY = re.compile(r"pass(word|wd)?$|password|secret|token|api_?key|access_?key|credential", re.IGNORECASE)


def secret_query_keys(url: URL) -> list[str]:
    return [k for k in url.query if _SECRET_KEY.search(k)]


def has_secret(url: str | URL) -> bool:
    """True if the URL holds a password, in its userinfo or its query string."""
    parsed = url if isinstance(url, URL) else make_url(url)
    return parsed.password is not None or bool(secret_query_keys(parsed))


def split_secrets(url: str | URL) -> tuple[str, dict[str, object]]:
    """(the URL without its password and secret query values, those secrets), so that the
    URL can be written where others may read it and the secrets only where they cannot.
    :func:`join_secrets` puts them back."""
    parsed = url if isinstance(url, URL) else make_url(url)
    keys = secret_query_keys(parsed)
    secrets: dict[str, object] = {}
    if parsed.password is not None:
        secrets["password"] = str(parsed.password)
    if keys:
        secrets["query"] = {k: parsed.query[k] for k in keys}
    bare = parsed.difference_update_query(keys)._replace(password=None)
    return bare.render_as_string(hide_password=False), secrets


def join_secrets(url: str, secrets: dict[str, object]) -> str:
    parsed = make_url(url)
    if "password" in secrets:
        parsed = parsed._replace(password=secrets["password"])
    if secrets.get("query"):
        parsed = parsed.update_query_dict(dict(secrets["query"]))
    return parsed.render_as_string(hide_password=False)


def redact(url: str | URL) -> str:
    """The URL with its password hidden (userinfo and query string), for messages and logs."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        return "<unparseable URL>"
    text = parsed.difference_update_query(secret_query_keys(parsed)).render_as_string(hide_password=True)
    hidden = [f"{k}=***" for k in secret_query_keys(parsed)]
    if hidden:
        text += ("&" if "?" in text else "?") + "&".join(hidden)
    return text


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def create(url: str | URL | None = None, *, readonly: bool = False) -> Engine:
    """An engine for ``url``. ``readonly`` opens the database so that no write can pass."""
    resolved = url if isinstance(url, URL) else resolve_url(url)
    if resolved.get_backend_name() == "sqlite":
        return _sqlite_engine(resolved, readonly=readonly)
    return _postgresql_engine(resolved, readonly=readonly)


def _sqlite_engine(url: URL, *, readonly: bool) -> Engine:
    path = Path(url.database).expanduser()
    if readonly:
        if not path.exists():
            raise DatabaseUnavailable(
                f"SQLite database {str(path)!r} does not exist",
                "check --db, or run `gridlab enqueue` first to create it",
            )
        target = f"file:{quote(str(path.resolve()))}?mode=ro"
    else:
        if not path.parent.exists():
            raise DatabaseUnavailable(
                f"folder {str(path.parent)!r} of SQLite database {str(path)!r} does not exist",
                "create it or point --db elsewhere",
            )
        target = f"file:{quote(str(path.resolve()))}?mode=rwc"  # quoted: a '%' or space is the file's own

    def connect() -> sqlite3.Connection:
        # isolation_level=None hands transaction control to the 'begin' hook below,
        # which is how SQLAlchemy documents taking a write lock up front in SQLite.
        conn = sqlite3.connect(
            target,
            uri=True,
            timeout=SQLITE_BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,
        )
        return conn

    # The real URL (not "sqlite://") so SQLAlchemy pools it as a file, not in memory.
    engine = create_engine(url, creator=connect, pool_reset_on_return=None)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:
        # WAL mode is stored in the file: db.schema.upgrade sets it when it creates the
        # schema, so a database that is not gridlab's is never modified here.
        cur = dbapi_conn.cursor()
        if not readonly:
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        # A page cache of up to 64 MiB (the default is 2 MiB), taken only as pages are
        # read: a 100,000-job enqueue leaves ~50 MiB of table and index pages, and with
        # the default cache it spills them mid-transaction (benchmarks/enqueue_grid.py:
        # its insert took 1.3 s instead of 1.0 s).
        cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:
        # A writer takes the write lock at BEGIN: two claimers can never both read
        # the same pending row, and no lock upgrade can deadlock mid-transaction.
        write = conn.info.get("gridlab_write", True) and not readonly
        driver = conn.connection.driver_connection
        busy_ms = int(1000 * (conn.info.get("gridlab_busy_s") or SQLITE_BUSY_TIMEOUT_S))
        if conn.connection.info.get("busy_ms", int(1000 * SQLITE_BUSY_TIMEOUT_S)) != busy_ms:
            driver.execute(f"PRAGMA busy_timeout = {busy_ms}")
            conn.connection.info["busy_ms"] = busy_ms
        # Straight to the driver: whatever runs after BEGIN IMMEDIATE holds the lock.
        driver.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


#: Per-session server settings: the server drops a connection whose client (a crashed node)
#: stopped answering after about a minute, not after the kernel's two hours, and ends a
#: transaction left idle for 5 minutes (gridlab's are milliseconds long), so a dead worker
#: can never keep a job's row locked; claims skip locked rows and reconcile would wait on it.
PG_SESSION_SETTINGS = {
    "tcp_keepalives_idle": "30",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "3",
    "idle_in_transaction_session_timeout": "300000",  # ms
}
#: libpq's keepalives, the same from the client's side: a worker notices a dead server or
#: network within about a minute and its caller retries, rather than hanging on a socket.
PG_CLIENT_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


def _postgresql_engine(url: URL, *, readonly: bool) -> Engine:
    settings = dict(PG_SESSION_SETTINGS)
    if readonly:
        settings["default_transaction_read_only"] = "on"
    connect_args: dict[str, object] = {
        "connect_timeout": 5,
        **PG_CLIENT_KEEPALIVES,
        "options": " ".join(f"-c {name}={value}" for name, value in settings.items()),
    }
    # No pre-ping (a round trip per checkout): a dropped connection surfaces as an
    # error that invalidates the pool, the transaction is retried by its caller.
    # No reset-on-return: db.session.scope always ends its own transaction.
    return create_engine(url, connect_args=connect_args, pool_reset_on_return=None)
