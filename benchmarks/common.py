"""Shared benchmark plumbing: throwaway databases on each backend."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

PG_ADMIN = os.environ.get("GRIDLAB_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def pg_available() -> bool:
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except Exception:
        return False


@contextlib.contextmanager
def database(backend: str) -> Iterator[str]:
    """Yield the URL of a new, migrated, empty gridlab database; remove it afterwards."""
    from db import engine as db_engine
    from db import schema

    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            _migrate(url, db_engine, schema)
            yield url
        return
    import psycopg

    name = f"gridlab_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        _migrate(url, db_engine, schema)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(url, db_engine, schema) -> None:
    eng = db_engine.create(url)
    schema.upgrade(eng)
    eng.dispose()


def backends() -> list[str]:
    return ["sqlite", "postgresql"] if pg_available() else ["sqlite"]
