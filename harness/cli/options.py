"""What several commands share: the one ``--db`` option and the one way a command opens the
database's queue, and the job selection of ``retry`` and ``cancel``."""

from __future__ import annotations

import os

import click

from db import database
from db import engine as db_engine
from db.errors import GridlabError
from harness import inputs
from jobs.queue import Queue

DB_HELP = "Database URL: sqlite:///PATH or postgresql://USER@HOST/DB (default: $GRIDLAB_DB, else sqlite:///gridlab.db)."


def db_option(f):
    """``--db URL`` (or ``GRIDLAB_DB``), passed to the command as ``db_url``."""
    return click.option("--db", "db_url", envvar=db_engine.ENV_VAR, default=None, metavar="URL", type=inputs.TEXT,
                        help=DB_HELP)(f)


def open_queue(db_url: str | None, *, create: bool = False, lease_s: float = 30.0,
               missing_fix: str = database.NO_DATABASE_FIX) -> Queue:
    """The queue on ``--db``'s database (:func:`db.database.open_engine`: ``create`` lets a
    command that adds work create it; otherwise a missing database is a one-line error)."""
    return Queue(database.open_engine(db_url, create=create, missing_fix=missing_fix), lease_s=lease_s)


def url_as_given(db_url: str | None) -> str:
    """``--db``, else ``GRIDLAB_DB``, else the default, unopened (what ``launch --dry-run`` shows workers opening)."""
    return db_url or os.environ.get(db_engine.ENV_VAR) or db_engine.DEFAULT_URL


# --- selecting jobs: retry, cancel ------------------------------------------------------------


def selection_options(f):
    """``JOB_IDS...``, ``--grid NAME`` and ``--where FACTOR=VALUE``."""
    f = click.option("--where", multiple=True, metavar="FACTOR=VALUE", help="Only jobs whose factor has this value (repeatable).")(f)
    f = click.option("--grid", default=None, type=inputs.TEXT, help="Only jobs of this grid.")(f)
    return click.argument("job_ids", nargs=-1, type=inputs.JOB_ID)(f)


def selection(job_ids: tuple[int, ...], grid: str | None, where: tuple[str, ...]) -> dict:
    """The selection as the queue's ``retry``/``cancel`` take it; nothing selected is an error."""
    if not job_ids and not grid and not where:
        raise GridlabError("no jobs selected", "give job ids, --grid NAME and/or --where FACTOR=VALUE")
    return {"ids": job_ids or None, "grid": grid, "where": parse_where(where)}


def parse_where(pairs: tuple[str, ...]) -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for pair in pairs:
        inputs.check_text(pair, "--where")
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise GridlabError(f"--where {pair!r} is not KEY=VALUE", "write it like --where norm=dyt")
        inputs.check_number(value, f"--where {key}")
        where.setdefault(key, []).append(value)
    return where
