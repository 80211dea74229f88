"""Schema versions: is this database gridlab's, and is it at the code's revision?

An empty database is migrated on first use. One behind the code gets a message
naming ``gridlab db upgrade``; one ahead of it (made by a newer gridlab) or one
holding somebody else's tables is refused before anything is written.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from db import models
from db.engine import redact
from db.errors import NotGridlabDatabase, SchemaMismatch
from db.session import scope

#: The newest migration in db/migrations/versions (a test keeps them in step).
HEAD = "0010"
#: Every revision this code knows, oldest first.
KNOWN = ("0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010")

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str):
    """An Alembic config for ``url`` that works from any working directory."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's config is ConfigParser-based: a literal % must be doubled.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["gridlab_quiet"] = True
    return cfg


def current_revision(engine: Engine) -> str | None:
    """The revision stamped in the database, or None for a database without one."""
    with scope(engine, write=False) as conn:
        names = set(inspect(conn).get_table_names())
        if "alembic_version" not in names:
            if names:
                raise NotGridlabDatabase(
                    f"database {redact(engine.url)} holds tables gridlab did not make "
                    f"({', '.join(sorted(names)[:5])})",
                    "point --db at a new or gridlab database",
                )
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to HEAD. Returns (revision before, revision after)."""
    from alembic import command

    before = current_revision(engine)
    if before not in (None, *KNOWN):
        raise _newer(engine, before)
    if before != HEAD:
        url = engine.url.render_as_string(hide_password=False)
        cfg = alembic_config(url)
        if engine.dialect.name == "sqlite":
            # Outside any transaction (SQLite ignores it inside one). Persistent: from
            # now on readers no longer block the writer, nor it them.
            raw = engine.raw_connection()
            try:
                raw.driver_connection.execute("PRAGMA journal_mode=WAL")
            finally:
                raw.close()
            _upgrade_sqlite(engine, cfg)
        else:
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
    return before, HEAD


def _upgrade_sqlite(engine: Engine, cfg) -> None:
    """Migrate with foreign keys off, as SQLite's own procedure for schema changes says:
    batch mode recreates tables (copy, DROP, RENAME) and a DROP with them on would
    cascade-delete the rows that point at the table. They are checked before commit."""
    from alembic import command

    with engine.connect() as conn:
        driver = conn.connection.driver_connection  # autocommit: before the BEGIN below
        driver.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left {len(broken)} broken foreign keys (first: {broken[0]}); rolled back")
        finally:
            driver.execute("PRAGMA foreign_keys=ON")


def ensure(engine: Engine, *, migrate_empty: bool = True) -> None:
    """Check that the database is at HEAD; migrate it if it is empty and that is allowed."""
    revision = current_revision(engine)
    if revision == HEAD:
        return
    if revision is None:
        if migrate_empty:
            upgrade(engine)
            return
        raise SchemaMismatch(
            f"database {redact(engine.url)} is empty",
            "run `gridlab enqueue GRID.yaml` (or `gridlab db upgrade`) to create it",
        )
    if revision in KNOWN:
        raise SchemaMismatch(
            f"database {redact(engine.url)} is at schema {revision}, this gridlab needs {HEAD}",
            f"run `gridlab db upgrade --db {redact(engine.url)}`",
        )
    raise _newer(engine, revision)


def _newer(engine: Engine, revision: str) -> SchemaMismatch:
    return SchemaMismatch(
        f"database {redact(engine.url)} has schema {revision}, made by a newer gridlab",
        "upgrade gridlab (pip install -U gridlab) to use it",
    )


__all__ = ["HEAD", "KNOWN", "alembic_config", "current_revision", "ensure", "upgrade", "models"]
