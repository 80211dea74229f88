"""Overview page: where each grid stands, jobs by state, how far each running job's training
has got, the GPU-hours spent and left (per grid and per factor level), a heatmap of cells by
two factors coloured by state, and running jobs whose lease has gone stale."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import charts, factors, queries, ui
from db import costs, states

def progress_table(progress: pd.DataFrame) -> pd.DataFrame:
    """grid x state counts, with total, finished and % finished."""
    table = progress.pivot_table(index="grid", columns="state", values="jobs", aggfunc="sum", fill_value=0)
    table = table.reindex(columns=list(states.ALL), fill_value=0)
    table.columns.name = None
    table["total"] = table.sum(axis=1)
    table["finished"] = table[list(states.FINAL)].sum(axis=1)
    table["% finished"] = (100.0 * table["finished"] / table["total"]).round(1)
    order = progress.drop_duplicates("grid")["grid"]
    return table.reindex(order).reset_index()


def heatmap_cells(jobs: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """One row per (x, y) value pair: its jobs' counts by state, and the state it shows."""
    jobs = jobs[jobs[x].notna() & jobs[y].notna()]
    counts = jobs.assign(_x=jobs[x].map(factors.fmt), _y=jobs[y].map(factors.fmt)).pivot_table(
        index=["_x", "_y"], columns="state", values="id", aggfunc="count", fill_value=0
    )
    counts = counts.reindex(columns=list(states.ALL), fill_value=0)
    counts.columns.name = None
    cells = counts.reset_index().rename(columns={"_x": x, "_y": y})
    cells["jobs"] = counts.sum(axis=1).to_numpy()
    # A cell with jobs in several states shows the most pressing one.
    cells["state"] = [next(s for s in states.URGENCY if row[s] > 0) for _, row in cells.iterrows()]
    cells["label"] = [f"{row[states.SUCCEEDED]}/{row['jobs']}" for _, row in cells.iterrows()]
    return cells


def heatmap_chart(cells: pd.DataFrame, jobs: pd.DataFrame, x: str, y: str) -> alt.LayerChart:
    """The cells by factor: a row per value of ``y`` (charts.STEP pixels each), a column per
    value of ``x``, coloured by state and labelled succeeded/jobs where the labels fit."""
    x_order = [factors.fmt(v) for v in factors.ordered(jobs[x])]
    y_order = [factors.fmt(v) for v in factors.ordered(jobs[y])]
    colour = alt.Color("state:N", title="state", legend=charts.legend("state", states.ALL), scale=alt.Scale(
        domain=list(states.ALL), range=[states.COLOURS[s] for s in states.ALL]))
    return charts.heatmap(cells, x, y, x_order, y_order, colour=colour, text="label",
                          tooltip=[alt.Tooltip(f"{charts.field(x)}:N", title=x), alt.Tooltip(f"{charts.field(y)}:N", title=y), "label:N", "jobs:Q", *(f"{s}:Q" for s in states.ALL)])


def running_table(running: pd.DataFrame) -> pd.DataFrame:
    """One row per running job: its cell, step of steps, share done, loss, worker, heartbeat."""
    cells = [" ".join(f"{k}={factors.fmt(v)}" for k, v in f.items()) for f in running["factors"]]
    share = (running["step"] / running["steps"]).clip(0.0, 1.0)
    return pd.DataFrame({
        "id": running["id"], "grid": running["grid"], "cell": cells, "attempt": running["attempts"],
        "step": running["step"], "steps": running["steps"], "progress": share, "loss": running["loss"],
        "worker": running["lease_owner"], "heartbeat": running["heartbeat_s_ago"].map(ui.fmt_age),
    })


def gpu_hours_section(hours: dict) -> None:
    """GPU-hours spent and estimated left per grid, and spent per factor level of the selection:
    the figures ``gridlab status`` prints (db.costs)."""
    st.subheader("GPU-hours")
    if not costs.any_spent(hours):
        st.caption("No device seconds recorded yet: no attempt has run on a GPU (or asked for one).")
        return
    hour = st.column_config.NumberColumn(format="%.2f")
    ui.table(queries.gpu_hours_by_grid(hours), "gpu_hours", column_config={"spent": hour, "estimate left": hour},
             caption="Spent: the attempts' wall time x their GPUs. Estimate left: each pending or running cell at "
                     "the mean of the succeeded cells of its grid and shape (model, PEFT method, sequence length, "
                     "steps, experiment, kind); \"no estimate\" counts cells of a shape none of which has succeeded.")
    ui.table(queries.gpu_hours_by_factor(hours), "gpu_hours_by_factor", column_config={"GPU-hours": hour})


def render() -> None:
    st.title("Overview")
    with ui.reading() as conn:
        progress = queries.grid_progress(conn)
        jobs, names = ui.jobs(conn)
        stale = queries.stale_leases(conn)
        running = queries.running_jobs(conn)
        now = queries.db_now(conn)
        hours = queries.gpu_hours(conn, grid=ui.grid())
    if progress.empty:
        st.info("No jobs yet. Enqueue a grid: `gridlab enqueue GRID.yaml`.")
        return
    grid = ui.grid()
    if grid is not None:
        progress = progress[progress["grid"] == grid]
        stale = stale[stale["grid"] == grid]
        running = running[running["grid"] == grid]

    counts = progress.groupby("state")["jobs"].sum()
    cols = st.columns(len(states.ALL) + 1)
    cols[0].metric("jobs", int(counts.sum()))
    for col, state in zip(cols[1:], states.ALL):
        col.metric(state, int(counts.get(state, 0)))

    st.subheader("Progress by grid")
    table = progress_table(progress)
    for row in table.itertuples(index=False):
        done = row.finished / row.total if row.total else 0.0
        st.progress(done, text=f"**{row.grid}**: {row.finished} of {row.total} finished "
                               f"({row.succeeded} succeeded, {row.failed} failed, {row.diverged} diverged, "
                               f"{row.running} running, {row.pending} pending)")
    ui.table(table, "grid_progress")

    if not running.empty:
        st.subheader("Running now")
        ui.table(running_table(running), "running", column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent")})

    gpu_hours_section(hours)

    st.subheader("Cells by factor")
    varying = factors.varying(jobs, names)
    if len(varying) < 2:
        st.caption("The heatmap needs two factors that vary; this selection has "
                   f"{len(varying)} ({', '.join(varying) or 'none'}).")
    else:
        c1, c2 = st.columns(2)
        x = c1.selectbox("Columns", varying, index=0, key="overview-x")
        y = c2.selectbox("Rows", [v for v in varying if v != x], index=0, key="overview-y")
        cells = heatmap_cells(jobs, x, y)
        st.altair_chart(heatmap_chart(cells, jobs, x, y), width="stretch")
        st.caption("Each cell: succeeded/jobs over the other factors; its colour is the most pressing state "
                   "among its jobs (failed > diverged > running > pending > cancelled > succeeded).")
        ui.table(cells.drop(columns=["label"]), "cells_by_factor")

    st.subheader("Stale leases")
    if stale.empty:
        st.success("No running job has an expired lease.")
    else:
        st.warning(f"{len(stale)} running job(s) have an expired lease by the database's clock: their worker "
                   "died, hung or lost its network. Any worker will reclaim them.")
        shown = stale.assign(
            expired=stale["expired_s_ago"].map(ui.fmt_age), last_heartbeat=stale["last_heartbeat_s_ago"].map(ui.fmt_age)
        )
        ui.table(shown[["id", "grid", "lease_owner", "attempts", "expired", "last_heartbeat",
                        "expired_s_ago", "last_heartbeat_s_ago"]], "stale_leases")
    st.caption(f"Database clock: {ui.when(now)} UTC")


if __name__ == "__main__":  # run as a page by st.navigation (under the name __main__)
    render()
