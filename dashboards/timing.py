"""Timing page: inference speed (from generations: tokens per second, latency) and
training throughput (from the tokens_per_s and step_time_s curves), by variant: a row per
variant, its mean and 95% interval over jobs (never below zero; "n=2" instead of an
interval from fewer than three jobs)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import charts, factors, queries, ui
from db import stats

JOB = "job"


def by_variant(per_job: pd.DataFrame, variant: str, columns: list[str]) -> pd.DataFrame:
    """Per value of ``variant``: jobs, and mean and 95% interval over jobs of each column."""
    keyed = per_job.assign(_v=per_job["id"].map(lambda i: f"job {i}") if variant == JOB else per_job[variant].map(factors.fmt))
    order = (list(keyed["_v"]) if variant == JOB else [factors.fmt(v) for v in factors.ordered(per_job[variant])])
    rows = []
    for value in order:
        part = keyed[keyed["_v"] == value]
        if part.empty:
            continue
        row = {variant: value, "jobs": len(part)}
        for c in columns:
            mean, ci, _ = stats.mean_ci(part[c])
            row[c] = mean
            row[f"{c} ci95"] = ci
        rows.append(row)
    return pd.DataFrame(rows)


def inference(per_job: pd.DataFrame) -> pd.DataFrame:
    """Generation totals per job turned into tokens per second and latencies."""
    out = per_job.copy()
    out["tokens_per_s"] = out["new_tokens"] / out["latency_s"]
    out["tokens_per_answer"] = out["new_tokens"] / out["answers"]
    return out


def bars(table: pd.DataFrame, variant: str, column: str, title: str) -> alt.LayerChart:
    """A bar per variant (charts.STEP pixels each) from zero to its mean ``column``, and the
    95% interval over its jobs, clipped at zero; "n=2" where there are too few jobs."""
    return charts.interval_chart(table, variant, column, half=f"{column} ci95", n="jobs", quantity=column,
                                 title=title, bars=True)


def render() -> None:
    st.title("Timing")
    with ui.reading() as conn:
        jobs, names = ui.jobs(conn)
        gen = queries.generation_timing(conn)
        ids = jobs["id"].tolist()
        train = {name: queries.sampled_means(conn, name, ids) for name in ("tokens_per_s", "step_time_s")}
    if jobs.empty:
        st.info("No jobs yet.")
        return
    varying = factors.varying(jobs, names)
    variant = st.selectbox("By", [*varying, JOB], index=0, key="timing-variant")
    selected = ui.factor_filters(jobs, names, key="timing", exclude=[variant])

    st.subheader("Inference (generations)")
    gen_jobs = selected.merge(inference(gen), left_on="id", right_on="job_id")
    if gen_jobs.empty:
        st.caption("No generations from the selected jobs.")
    else:
        table = by_variant(gen_jobs, variant, ["tokens_per_s", "mean_latency_s", "max_latency_s", "tokens_per_answer"])
        st.altair_chart(bars(table, variant, "tokens_per_s", "generated tokens per second"), width="stretch")
        ui.table(table, "inference_timing",
                 caption=f"Per job: new tokens / total latency; then mean ± 95% interval over the jobs of each variant "
                         f"(the chart draws it from {stats.MIN_N} jobs up).")
        with st.expander("Per job"):
            ui.table(gen_jobs.drop(columns=["job_id"]), "inference_timing_per_job")

    st.subheader("Training throughput")
    per_job = selected[["id", *names]]
    for name, means in train.items():
        per_job = per_job.merge(means[["job_id", "mean"]].rename(columns={"mean": name}),
                                left_on="id", right_on="job_id", how="left").drop(columns=["job_id"])
    logged = [n for n in train if per_job[n].notna().any()]
    if not logged:
        st.caption("No tokens_per_s or step_time_s logged by the selected jobs.")
        return
    per_job = per_job.dropna(subset=logged, how="all")
    table = by_variant(per_job, variant, logged)
    for col, name in zip(st.columns(len(logged)), logged):
        with col:
            st.altair_chart(bars(table, variant, name, name), width="stretch")
    ui.table(table, "training_throughput",
             caption="Per job: mean over about 200 evenly spaced logged steps; then mean ± 95% interval over the "
                     "jobs of each variant.")
    with st.expander("Per job"):
        ui.table(per_job, "training_throughput_per_job")


if __name__ == "__main__":  # run as a page by st.navigation (under the name __main__)
    render()
