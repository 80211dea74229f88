"""``gridlab dashboard``: serve the Streamlit dashboard (dashboards/app.py) for a database.

The database is checked first (it exists, answers, and is at this gridlab's schema), so
a wrong ``--db`` is one line on stderr and exit code 2, not a page of errors in the
browser. Then the process becomes ``streamlit run dashboards/app.py -- --db URL``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

import dashboards
from db import database
from db import engine as db_engine
from db.errors import GridlabError
from harness.cli import options


def app_path() -> Path:
    return Path(dashboards.__file__).resolve().parent / "app.py"


def check_database(db_url: str | None) -> str:
    """The URL to serve, after checking the database opens read-only at our schema."""
    url = db_engine.resolve_url(db_url)
    database.open_engine(url, readonly=True).dispose()
    return url.render_as_string(hide_password=False)


def streamlit_argv(url: str, *, host: str, port: int) -> list[str]:
    """The command that serves the dashboard. A URL with a password (userinfo or query
    string) goes to the server in GRIDLAB_DB instead of its command line, where any
    user's `ps` could read it."""
    argv = [
        sys.executable, "-m", "streamlit", "run", str(app_path()),
        "--server.headless", "true",
        "--server.address", host,
        "--server.port", str(port),
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
    ]
    if not db_engine.has_secret(db_engine.resolve_url(url)):
        argv += ["--", "--db", url]
    return argv


def server_env(url: str) -> dict[str, str]:
    """The server's environment: the database URL, and the folder this gridlab's
    packages live in ahead of PYTHONPATH (Streamlit puts only app.py's folder there)."""
    env = dict(os.environ)
    env[db_engine.ENV_VAR] = url
    root = str(app_path().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


@click.command("dashboard")
@options.db_option
@click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535), help="Port to serve on.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface: anyone who can reach it can read the results).")
def dashboard(db_url: str | None, port: int, host: str) -> None:
    """Serve the results dashboard (read-only) for a database in the browser."""
    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise GridlabError("the dashboard needs Streamlit, which is not installed", "pip install streamlit") from None
    url = check_database(db_url)
    shown_host = "localhost" if host in ("127.0.0.1", "localhost") else host
    click.echo(f"gridlab dashboard for {db_engine.redact(url)} at http://{shown_host}:{port} (Ctrl-C to stop)")
    sys.stdout.flush()
    argv = streamlit_argv(url, host=host, port=port)
    os.execve(argv[0], argv, server_env(url))
