"""What every page shares: the read-only database, the grid picker, factor filters,
and tables with a CSV download (job states and their colours: :mod:`db.states`).

The database URL comes from the command line after ``--`` (``streamlit run app.py --
--db URL``, which is what ``gridlab dashboard`` runs), else ``GRIDLAB_DB``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Connection, Engine

from dashboards import database, factors, queries
from db import engine as db_engine
from db.session import scope

ALL_GRIDS = "(all grids)"


def db_url_from(argv: Sequence[str], environ: dict[str, str] | None = None) -> str | None:
    """``--db URL`` (or ``--db=URL``) from ``argv``, else GRIDLAB_DB, else None."""
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--db" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--db="):
            return arg.split("=", 1)[1]
    env = os.environ if environ is None else environ
    return env.get(db_engine.ENV_VAR) or None


@st.cache_resource(show_spinner=False)
def _engine(url: str) -> Engine:
    """One read-only engine per URL for the server's lifetime (not cached if it fails)."""
    return database.open_readonly(url)


def open_database(url: str) -> Engine:
    """The dashboard's engine: read-only, at this gridlab's schema. Raises GridlabError."""
    return _engine(url)


def engine() -> Engine:
    return _engine(st.session_state["db_url"])


@contextmanager
def reading() -> Iterator[Connection]:
    """A read-only transaction on the dashboard's database."""
    with scope(engine(), write=False) as conn:
        yield conn


def grid() -> str | None:
    """The grid picked in the sidebar, or None for all grids."""
    picked = st.session_state.get("grid", ALL_GRIDS)
    return None if picked == ALL_GRIDS else picked


def jobs(conn: Connection) -> tuple[pd.DataFrame, list[str]]:
    """The picked grid's jobs with one column per factor, and the factor columns."""
    return factors.expand(queries.job_table(conn, grid=grid()))


#: Appended to a curve's name where a page offers the last logged value of a curve as a metric.
LAST = " (last logged)"


def metric_options(conn: Connection, job_ids: Sequence[int]) -> list[str]:
    """Metrics a page may show per job: final figures (summaries), then the last logged
    value of each curve the jobs logged ("loss (last logged)")."""
    curve_names = queries.metric_names(conn, job_ids) if len(job_ids) else []
    return queries.summary_names(conn) + [f"{n}{LAST}" for n in curve_names]


def metric_name(option: str) -> str:
    """The quantity a metric option is about ("loss" for "loss (last logged)")."""
    return option.removesuffix(LAST)


def metric_values(conn: Connection, option: str, jobs_: pd.DataFrame) -> pd.DataFrame:
    """``jobs_`` (the job table) joined to each job's value of metric ``option``: the rows
    of the jobs that have one, with a "value" column."""
    if option.endswith(LAST):
        values = queries.last_values(conn, metric_name(option), jobs_["id"].tolist())
    else:
        values = queries.summary_values(conn, option, grid=grid())
    return jobs_.merge(values[["job_id", "value"]], left_on="id", right_on="job_id").drop(columns=["job_id"])


def table(df: pd.DataFrame, name: str, *, caption: str | None = None, **dataframe_kw: Any) -> None:
    """A table and a button that downloads it as CSV (``name``.csv)."""
    st.dataframe(df, hide_index=True, **dataframe_kw)
    st.download_button(
        f"Download {name}.csv", df.to_csv(index=False).encode(), file_name=f"{name}.csv", mime="text/csv",
        key=f"csv-{name}", on_click="ignore",
    )
    if caption:
        st.caption(caption)


def factor_filters(table_: pd.DataFrame, names: Sequence[str], *, key: str,
                   exclude: Sequence[str] = ()) -> pd.DataFrame:
    """Multiselects (all values picked at first) for every varying factor not in
    ``exclude``; returns the rows that pass."""
    chosen: dict[str, list[Any]] = {}
    shown = [n for n in factors.varying(table_, names) if n not in exclude]
    if not shown:
        return table_
    with st.expander("Filter by factors", expanded=False):
        cols = st.columns(min(3, len(shown)))
        for i, name in enumerate(shown):
            values = factors.ordered(table_[name])
            picked = cols[i % len(cols)].multiselect(
                name, values, default=values, format_func=factors.fmt, key=f"{key}-filter-{name}"
            )
            if len(picked) != len(values):
                chosen[name] = picked
    return factors.filter_jobs(table_, chosen)


def job_link(job_id: int) -> str:
    """A URL path to the run detail page of a job (for LinkColumn)."""
    return f"/run_detail?job={int(job_id)}"


def fmt_age(seconds: float | None) -> str:
    if seconds is None or pd.isna(seconds):
        return ""
    seconds = float(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def when(epoch: float | None) -> str:
    """Epoch seconds as 'YYYY-MM-DD HH:MM:SS' in UTC (the server's and browser's zones may differ)."""
    if epoch is None or pd.isna(epoch):
        return ""
    return pd.Timestamp(float(epoch), unit="s").strftime("%Y-%m-%d %H:%M:%S")
