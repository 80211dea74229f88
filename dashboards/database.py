"""The dashboard's database: opened read-only, checked to be at this gridlab's schema,
and with each connection tuned for reading (see queries.READER_SETTINGS)."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import Engine

from dashboards import queries
from db import engine as db_engine
from db import schema


def open_readonly(url: str) -> Engine:
    """A read-only engine on ``url``. Raises db.errors.GridlabError (one line: what is
    wrong and how to fix it) if the database is missing, unreachable, empty, or not at
    this gridlab's schema."""
    engine = db_engine.create(url, readonly=True)
    dialect = engine.dialect.name

    @event.listens_for(engine, "connect")
    def _tune(dbapi_connection, _record) -> None:
        queries.tune_reader(dbapi_connection, dialect)

    try:
        schema.ensure(engine, migrate_empty=False)
    except Exception:
        engine.dispose()
        raise
    return engine
