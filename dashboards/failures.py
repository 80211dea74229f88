"""Failures page: attempts that ended badly, with their error, host, Slurm job id, and
the `gridlab retry` command that puts the job back in the queue."""

from __future__ import annotations

import shlex

import pandas as pd
import streamlit as st

from dashboards import factors, queries, ui
from db import engine as db_engine


def last_line(error: str | None) -> str:
    """The line of a traceback that says what happened (its last non-empty line)."""
    lines = [line for line in (error or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def db_option(db_url: str) -> str:
    """`` --db URL`` for a command to paste; nothing for a URL with a password, which is
    never shown (such a command reads GRIDLAB_DB instead)."""
    url = db_engine.resolve_url(db_url)
    if url.password:
        return ""
    return f" --db {shlex.quote(db_engine.redact(url))}"


def retry_command(job_id: int, db_url: str) -> str:
    """What to run to retry one job."""
    return f"gridlab retry {int(job_id)}{db_option(db_url)}"


def render() -> None:
    st.title("Failures")
    only_now = st.checkbox("Only jobs that are failed, diverged or cancelled now", value=True, key="failures-now",
                           help="Off: also attempts of jobs that were retried since, or are running again.")
    with ui.reading() as conn:
        failed = queries.failed_attempts(conn, grid=ui.grid(), only_retryable=only_now)
        errors = queries.jobs_with_errors(conn, grid=ui.grid())
    url = st.session_state["db_url"]
    if failed.empty and errors.empty:
        st.success("No failed attempts.")
        return

    if not failed.empty:
        shown, names = factors.expand(failed)
        shown["cells"] = factors.labels(shown, factors.varying(shown, names) or names, id_column="job_id")
        shown["error_line"] = shown["error"].map(last_line)
        shown["slurm_job"] = [
            "" if pd.isna(j) else (str(j) if pd.isna(i) or "_" in str(j) else f"{j}_{int(i)}")
            for j, i in zip(shown["slurm_job_id"], shown["slurm_array_index"])
        ]
        shown["retry"] = shown["job_id"].map(lambda i: retry_command(i, url))
        shown["started"] = shown["started_at"].map(ui.when)
        cols = ["job_id", "grid", "state", "attempt", "outcome", "error_line", "host", "node", "slurm_job",
                "worker", "started", "cells", "retry"]
        st.metric("failed attempts", len(shown))
        ui.table(shown[cols + ["error"]], "failed_attempts", column_order=cols)

        st.subheader("One attempt")
        picks = list(range(len(shown)))
        pick = st.selectbox("Attempt", picks, key="failures-attempt", format_func=lambda i: (
            f"job {shown['job_id'].iloc[i]} attempt {shown['attempt'].iloc[i]} ({shown['outcome'].iloc[i]}): "
            f"{shown['error_line'].iloc[i][:80]}"))
        row = shown.iloc[pick]
        where = ", ".join(f"{k} {row[k]}" for k in ("host", "node") if isinstance(row[k], str) and row[k])
        st.markdown(f"**Job {row['job_id']}** ({row['grid']}, now {row['state']}): {row['cells']}; "
                    f"ran on {where or 'an unknown host'}" + (f", Slurm job {row['slurm_job']}" if row["slurm_job"] else ""))
        st.code(row["error"] or "(no error text)", language="text")
        st.markdown("Retry it:")
        st.code(row["retry"], language="bash")

    if not errors.empty:
        st.subheader("Failed and diverged jobs")
        grids = errors["grid"].unique().tolist()
        ui.table(errors.assign(error_line=errors["last_error"].map(last_line),
                               retry=errors["id"].map(lambda i: retry_command(i, url))).drop(columns=["factors"]),
                 "failed_jobs")
        st.markdown("Retry every failed or diverged job of a grid:")
        st.code("\n".join(f"gridlab retry --grid {shlex.quote(g)} --state failed --state diverged{db_option(url)}"
                          for g in grids), language="bash")
    if db_engine.resolve_url(url).password:
        st.caption("The database URL has a password, so these commands leave out --db: run them with GRIDLAB_DB set.")


if __name__ == "__main__":  # run as a page by st.navigation (under the name __main__)
    render()
