"""Run detail page: one job's resolved spec, factors, summaries, every curve, its attention
entropy (the layer x head heatmap, :mod:`dashboards.attention`), attempts, provenance (grid file
version; per attempt the code, environment and machine), events and generations. Opens on
``?job=ID`` when given."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import attention, charts, curves, factors, provenance, queries, ui

BUCKETS = 400


def pick_job(jobs: pd.DataFrame) -> int | None:
    """The job to show: from ``?job=ID`` first, then the picker (which writes it back)."""
    ids = jobs["id"].tolist()
    if not ids:
        return None
    wanted = st.query_params.get("job")
    try:
        wanted = int(wanted) if wanted is not None else None
    except ValueError:
        wanted = None
    if wanted is not None and wanted not in ids:
        ids = [wanted, *ids]  # another grid's job, or a missing one: the page says which
    index = ids.index(wanted) if wanted in ids else 0
    labels = dict(zip(jobs["id"], jobs["label"]))
    job_id = st.selectbox("Job", ids, index=index, key=f"run-detail-job-{wanted}",
                          format_func=lambda i: f"{i}: {labels.get(i, '(not in this grid)')}")
    st.query_params["job"] = str(job_id)
    return int(job_id)


def render() -> None:
    st.title("Run detail")
    with ui.reading() as conn:
        jobs, names = ui.jobs(conn)
    jobs["label"] = jobs["state"] + " · " + factors.labels(jobs, names) if not jobs.empty else []
    job_id = pick_job(jobs)
    if job_id is None:
        st.info("No jobs yet.")
        return
    with ui.reading() as conn:
        job = queries.job(conn, job_id)
        if job is None:
            st.error(f"No job with id {job_id} in this database.")
            return
        summaries = queries.job_summaries(conn, job_id)
        attempts = queries.job_attempts(conn, job_id)
        events = queries.job_events(conn, job_id)
        metric_names = curves.ordered_metrics(queries.metric_names(conn, [job_id]))
        points = {name: queries.curves(conn, name, [job_id], buckets=BUCKETS) for name in metric_names}
        generations = queries.job_generations(conn, job_id)

    st.subheader(f"Job {job_id}: {job['state']}")
    cols = st.columns(4)
    cols[0].metric("grid", job["grid"])
    cols[1].metric("experiment", job["experiment"])
    cols[2].metric("attempts", f"{job['attempts']} of {job['max_attempts']}")
    cols[3].metric("state", job["state"])
    if job["last_error"]:
        st.error(f"Last error: {job['last_error'].strip().splitlines()[-1]}")
    left, right = st.columns(2)
    with left:
        st.markdown("**Factors**")
        ui.table(pd.DataFrame({"factor": list(job["factors"]), "value": [str(v) for v in job["factors"].values()]}),
                 f"job_{job_id}_factors")
        st.markdown("**Summaries**")
        if summaries.empty:
            st.caption("No final figures.")
        else:
            ui.table(summaries, f"job_{job_id}_summaries")
    with right:
        st.markdown("**Resolved spec**")
        st.json(job["spec"])

    st.subheader("Curves")
    if not points:
        st.caption("No metric logged.")
    grid = st.columns(2)
    for i, (name, data) in enumerate(points.items()):
        with grid[i % 2]:
            st.altair_chart(charts.curve_chart(data, name), width="stretch")
            st.caption(f"{name}: {len(data):,} points from {int(data['points'].sum()):,} logged")

    with ui.reading() as conn:
        attention.render_job(conn, job_id)

    st.subheader("Attempts")
    ui.table(attempts, f"job_{job_id}_attempts")
    with ui.reading() as conn:
        provenance.render_job(conn, job_id)
    st.subheader("Events")
    ui.table(events.assign(time=events["at"].map(ui.when)), f"job_{job_id}_events")
    st.subheader("Generations")
    if generations.empty:
        st.caption("No generations.")
    else:
        ui.table(generations, f"job_{job_id}_generations")


if __name__ == "__main__":  # run as a page by st.navigation (under the name __main__)
    render()
