"""Opening gridlab's database: the one way every command and worker gets an engine.

A URL comes from ``--db``, else ``GRIDLAB_DB``, else ``sqlite:///gridlab.db``
(:func:`db.engine.resolve_url`). Opening checks what a command is about to rely on: the
database exists (unless it may be created), it is gridlab's and at this gridlab's schema
(an empty one gets the schema only where creating is allowed). A failed check disposes of
the engine again and raises a :class:`db.errors.GridlabError`: one line, what and how to fix.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, Engine

from db import engine as db_engine
from db import schema
from db.errors import NoDatabase

#: What to do about a SQLite file that is not there (a command may say it its own way).
NO_DATABASE_FIX = "run `gridlab enqueue GRID.yaml` first, or point --db at an existing database"


def open_engine(url: str | URL | None = None, *, create: bool = False, readonly: bool = False,
                any_schema: bool = False, missing_fix: str = NO_DATABASE_FIX) -> Engine:
    """An engine on the database at ``url``, checked to be at this gridlab's schema.

    ``create``: a missing SQLite file and an empty database get the schema (enqueue, work);
    otherwise a missing SQLite file raises :class:`db.errors.NoDatabase` (with ``missing_fix``),
    and nothing is created. ``readonly``: no write can pass (a missing SQLite file is refused
    by :func:`db.engine.create`). ``any_schema``: skip the schema check (the commands that
    report or change the schema)."""
    resolved = url if isinstance(url, URL) else db_engine.resolve_url(url)
    if (not create and not readonly and resolved.get_backend_name() == "sqlite"
            and not Path(resolved.database).exists()):
        raise NoDatabase(f"no database at {resolved.database}", missing_fix)
    engine = db_engine.create(resolved, readonly=readonly)
    if any_schema:
        return engine
    try:
        schema.ensure(engine, migrate_empty=create)
    except BaseException:
        engine.dispose()
        raise
    return engine
