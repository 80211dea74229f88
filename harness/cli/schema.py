"""``gridlab db upgrade`` and ``gridlab db current``: the database's schema."""

from __future__ import annotations

import click

from db import database, schema
from db import engine as db_engine
from harness import terminal
from harness.cli import options

console = terminal.console


@click.group("db")
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@options.db_option
def upgrade(db_url: str | None) -> None:
    """Create the schema, or migrate it to this gridlab's version."""
    engine = database.open_engine(db_url, create=True, any_schema=True)
    before, after = schema.upgrade(engine)
    if before == after:
        console.print(f"Database {db_engine.redact(engine.url)} is already at schema {after}.")
    else:
        console.print(f"Database {db_engine.redact(engine.url)} upgraded from {before or 'empty'} to {after}.")


@db.command("current")
@options.db_option
def current(db_url: str | None) -> None:
    """Print the database's schema revision and this gridlab's."""
    engine = database.open_engine(db_url, create=True, any_schema=True)
    console.print(f"database: {schema.current_revision(engine) or 'empty'}; gridlab: {schema.HEAD}")
