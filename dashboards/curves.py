"""Curves page: training and validation curves over steps, one line per run (or the
mean per colour, with a band: the 95% interval over the colour's runs, its seeds),
coloured by a factor and filtered by the others; smoothing and log scale. Curves are downsampled in the database (see :func:`dashboards.queries.curves`)."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import charts, factors, queries, ui
from db import stats

#: Shown first, in this order, when logged.
PREFERRED = ("loss", "val_loss", "grad_norm", "token_accuracy", "learning_rate", "lr", "val_perplexity")
#: Points per chart the browser is sent at most (over all its lines), and per line.
POINT_BUDGET = 20_000
MAX_BUCKETS = 1_000
MIN_BUCKETS = 25
JOB = "job"


def buckets_per_run(runs: int, resolution: int) -> int:
    """Buckets per curve: ``resolution``, cut so all curves together stay in the budget."""
    return max(MIN_BUCKETS, min(resolution, POINT_BUDGET // max(1, runs)))


def ordered_metrics(names: list[str]) -> list[str]:
    return [n for n in PREFERRED if n in names] + [n for n in names if n not in PREFERRED]


def shape(points: pd.DataFrame, jobs: pd.DataFrame, colour: str, *, smoothing: float, mean_per_colour: bool,
          quantity: str | None = None) -> pd.DataFrame:
    """Downsampled points joined to the runs' colour, smoothed per line; or, with
    ``mean_per_colour``, one line per colour value: at each step the mean over its runs
    (each smoothed first) and, where it has at least db.stats.MIN_N runs, the 95% t interval
    of that mean as "low" and "high" (db.stats.mean_interval, clipped to what ``quantity``
    can be), NaN elsewhere: the band over the seeds (and whatever else the colour pools)."""
    if points.empty:
        return points.assign(colour=pd.Series(dtype=str), line=pd.Series(dtype=str))
    lookup = jobs.set_index("id")
    colours = (lookup.index.map(lambda i: f"job {i}") if colour == JOB else lookup[colour].map(factors.fmt))
    data = points.assign(colour=points["job_id"].map(pd.Series(colours, index=lookup.index)))
    data["line"] = data["job_id"].map(lambda i: f"job {i}")
    data = data.sort_values(["line", "step"], ignore_index=True)
    if smoothing > 0:
        data["raw"] = data["value"]
        data["value"] = data.groupby("line", group_keys=False)["value"].transform(lambda s: stats.ema(s.to_numpy(), smoothing))
    if mean_per_colour:
        data = pooled(data, stats.quantity_range(quantity) if quantity else (None, None))
    return data


def pooled(data: pd.DataFrame, bounds: tuple[float | None, float | None]) -> pd.DataFrame:
    """One row per colour and step of per-run ``data``: the mean, its 95% interval (low,
    high; NaN from fewer than MIN_N runs), min, max, points and runs pooled."""
    groups = data.groupby(["colour", "step"], sort=True)
    out = groups.agg(value=("value", "mean"), min=("min", "min"), max=("max", "max"), points=("points", "sum"),
                     runs=("job_id", "nunique"))
    if "raw" in data:
        out["raw"] = groups["raw"].mean()
    intervals = groups["value"].agg(lambda s: stats.mean_interval(s.to_numpy(), bounds))
    out["low"] = [i.low if i.drawable else math.nan for i in intervals]
    out["high"] = [i.high if i.drawable else math.nan for i in intervals]
    out = out.reset_index()
    out["line"] = out["colour"]
    return out.sort_values(["line", "step"], ignore_index=True)


def chart(data: pd.DataFrame, metric: str, colour: str, *, log_y: bool, colour_order: list[str]) -> alt.Chart:
    """One line per run (or per colour), the legend above it; sparse curves show their points."""
    tooltip = ["line:N", "colour:N", "step:Q", alt.Tooltip("value:Q", format=".4g"), "points:Q"]
    if "low" in data:
        tooltip += [alt.Tooltip("low:Q", format=".4g", title="95% low"), alt.Tooltip("high:Q", format=".4g", title="95% high"),
                    "runs:Q"]
    shown = [c for c in colour_order if c in set(data["colour"])] if not data.empty else list(colour_order)
    return charts.line_chart(data, y_title=metric, colour="colour", colour_title=colour, colour_order=shown,
                             title=metric, log_y=log_y, tooltip=tooltip)


@st.cache_data(ttl=30, show_spinner="Reading curves…", max_entries=64)
def downsampled(url: str, metric: str, runs: tuple[int, ...], buckets: int) -> pd.DataFrame:
    """queries.curves, kept for 30 s: changing smoothing, scale or colours does not read
    the database again, and new points still show up within half a minute."""
    with ui.reading() as conn:
        return queries.curves(conn, metric, list(runs), buckets=buckets)


def render() -> None:
    st.title("Curves")
    with ui.reading() as conn:
        jobs, names = ui.jobs(conn)
        metric_names = queries.metric_names(conn, jobs["id"].tolist()) if not jobs.empty else []
    if not metric_names:
        st.info("No curves yet: no job of this selection has logged a metric.")
        return
    metric_names = ordered_metrics(metric_names)
    varying = factors.varying(jobs, names)

    c1, c2, c3 = st.columns([3, 2, 2])
    picked = c1.multiselect("Metrics", metric_names, default=[n for n in metric_names if n in ("loss", "val_loss")][:2]
                            or metric_names[:1], key="curves-metrics")
    colour = c2.selectbox("Colour by", [*varying, JOB], index=0, key="curves-colour")
    lines = c3.radio("Lines", ["one per run", "mean per colour"], horizontal=True, key="curves-lines")
    c4, c5, c6 = st.columns([3, 2, 2])
    smoothing = c4.slider("Smoothing (EMA weight)", 0.0, 0.99, 0.0, 0.01, key="curves-smoothing")
    log_y = c5.checkbox("Log scale", key="curves-log")
    resolution = c6.select_slider("Points per curve", [50, 100, 200, 400, 1000], value=400, key="curves-resolution")
    selected = ui.factor_filters(jobs, names, key="curves")
    runs = selected["id"].tolist()
    if not runs:
        st.warning("No run matches the filters.")
        return
    colour_order = ([f"job {i}" for i in runs] if colour == JOB
                    else [factors.fmt(v) for v in factors.ordered(selected[colour])])

    for metric in picked:
        points = downsampled(st.session_state["db_url"], metric, tuple(runs), buckets_per_run(len(runs), resolution))
        if points.empty:
            st.caption(f"{metric}: not logged by the selected runs.")
            continue
        stride = int(points["stride"].max())
        data = shape(points, selected, colour, smoothing=smoothing, mean_per_colour=lines == "mean per colour",
                     quantity=metric)
        st.altair_chart(chart(data, metric, colour, log_y=log_y, colour_order=colour_order), width="stretch")
        sampled = f", long dense curves averaged over every {stride}th step" if stride > 1 else ""
        band = (f" Each line is the mean over its colour's runs at each step; the band, its 95% t interval "
                f"(where {stats.MIN_N} or more runs have the step)." if "low" in data else "")
        st.caption(f"{metric}: {points['job_id'].nunique()} runs, {len(points):,} points drawn from "
                   f"{int(points['points'].sum()):,} logged points (bucketed and averaged in the database{sampled})."
                   + band)
        with st.expander(f"{metric}: data"):
            ui.table(data, f"curve_{metric}")


if __name__ == "__main__":  # run as a page by st.navigation (under the name __main__)
    render()
