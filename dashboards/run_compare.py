"""Compare runs page: two or more runs (or cells of the grid, their seeds pooled) side by
side, as MLflow's and W&B's run comparison shows them: their curves overlaid on one set of
axes per metric, their final figures side by side with the differences from a baseline,
and the settings of their resolved specs that differ.

``?jobs=3,7`` in a link picks the runs to compare.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from dashboards import charts, curves, factors, queries, ui
from db import stats

#: Runs or cells one comparison holds at most (beyond this the overlay is a blur).
MAX_UNITS = 10
RUNS = "runs"
CELLS = "cells (seeds pooled)"


def flatten(spec: Any, prefix: str = "") -> dict[str, str]:
    """A resolved spec as {dotted key: value as JSON text}: nested settings become
    ``a.b``; lists stay whole."""
    if isinstance(spec, dict):
        out: dict[str, str] = {}
        for key in sorted(spec):
            out.update(flatten(spec[key], f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): json.dumps(spec, sort_keys=True) if not isinstance(spec, str) else spec}


def units_of(jobs: pd.DataFrame, names: list[str], pooled: list[str]) -> pd.DataFrame:
    """``jobs`` with a "unit" key per row: "job 7" when nothing is pooled, else its grid and
    its factors other than ``pooled`` ("ablation: dataset=alpaca, norm=dyt"): the runs of
    one cell share it."""
    keep = [n for n in names if n not in pooled]
    if not pooled:
        return jobs.assign(unit=jobs["id"].map(lambda i: f"job {int(i)}"))
    text = factors.labels(jobs, keep) if keep else pd.Series("", index=jobs.index)
    return jobs.assign(unit=[f"{g}: {t}" if keep else str(g) for g, t in zip(jobs["grid"], text)])


def unit_names(jobs: pd.DataFrame, names: list[str], pooled: list[str], picked: list[str]) -> dict[str, str]:
    """A short name per picked unit: what sets it apart from the other picked units
    (``norm=dyt``), with its job id when units are runs."""
    reps = jobs[jobs["unit"].isin(picked)].drop_duplicates("unit")
    candidates = [n for n in names if n not in pooled]
    differing = factors.varying(reps, candidates)
    if reps["grid"].nunique() > 1:
        differing = ["grid", *differing]
    text = factors.labels(reps, differing) if differing else reps["unit"].map(lambda u: "")
    out = {}
    for unit, t, job_id in zip(reps["unit"], text, reps["id"]):
        if not pooled:
            out[unit] = f"job {int(job_id)}" + (f" ({t})" if t and not t.startswith("job ") else "")
        else:
            out[unit] = t if t and not t.startswith("job ") else unit
    # Two units that differ only in a pooled or constant factor would read alike: number them.
    seen: dict[str, int] = {}
    for unit, name in list(out.items()):
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            out[unit] = f"{name} #{seen[name]}"
    return out


def option_label(jobs: pd.DataFrame, names: list[str], pooled: list[str], unit: str) -> str:
    """How a unit reads in the picker: its factors (and, for a run, its id and state)."""
    part = jobs[jobs["unit"] == unit]
    first = part.iloc[0]
    keep = [n for n in names if n not in pooled]
    text = ", ".join(f"{n.removeprefix('factor.')}={factors.fmt(first[n])}" for n in keep if factors.fmt(first[n]) != "")
    if not pooled:
        return f"job {int(first['id'])} · {first['state']} · {text or first['grid']}"
    return f"{text or first['grid']} · {len(part)} run(s)"


def summary_table(figures: pd.DataFrame, members: dict[str, list[int]], shown: dict[str, str],
                  baseline: str) -> pd.DataFrame:
    """Final figures side by side: a row per figure name, per unit its value (the mean
    over the unit's runs, with its 95% interval and n when there are several), and per
    other unit its difference from ``baseline`` (Welch interval when both have several)."""
    rows = []
    for name, part in figures.groupby("name", sort=True):
        by_job = dict(zip(part["job_id"], part["value"]))
        values = {u: [by_job[j] for j in ids if j in by_job] for u, ids in members.items()}
        row: dict[str, Any] = {"figure": name}
        for unit, label in shown.items():
            mean, half, n = stats.mean_ci(values[unit])
            row[label] = mean
            if any(len(ids) > 1 for ids in members.values()):
                row[f"{label} ci95"] = half
                row[f"{label} n"] = n
        for unit, label in shown.items():
            if unit == baseline:
                continue
            diff, half = stats.diff_ci(values[unit], values[baseline])
            row[f"{label} − {shown[baseline]}"] = diff
            if any(len(ids) > 1 for ids in members.values()):
                row[f"{label} − {shown[baseline]} ci95"] = half
        rows.append(row)
    return pd.DataFrame(rows)


def spec_diff(specs: pd.DataFrame, members: dict[str, list[int]], shown: dict[str, str], *,
              everything: bool = False) -> pd.DataFrame:
    """The resolved specs' settings, a row per setting and a column per unit: only the
    settings whose value is not the same everywhere (unless ``everything``). A unit whose
    runs disagree on a setting (their seeds) shows "varies: 0, 1, 2"."""
    flat = {int(j): flatten(s if isinstance(s, dict) else {}) for j, s in zip(specs["id"], specs["spec"])}
    keys = sorted({k for f in flat.values() for k in f})
    rows = []
    for key in keys:
        row: dict[str, Any] = {"setting": key}
        per_job = []
        for unit, label in shown.items():
            seen = list(dict.fromkeys(flat.get(j, {}).get(key, "(not set)") for j in members[unit]))
            per_job.extend(flat.get(j, {}).get(key, "(not set)") for j in members[unit])
            row[label] = seen[0] if len(seen) == 1 else "varies: " + ", ".join(seen)
        if everything or len(set(per_job)) > 1:
            rows.append(row)
    return pd.DataFrame(rows, columns=["setting", *shown.values()])


def overlay(points: pd.DataFrame, jobs: pd.DataFrame, shown: dict[str, str], pooled: bool,
            metric: str | None = None) -> pd.DataFrame:
    """Curve points per unit: one line per run, or the mean over a cell's runs per step
    with its 95% interval over them (the band; see curves.shape)."""
    named = jobs.assign(compared=jobs["unit"].map(shown))
    return curves.shape(points, named, "compared", smoothing=0.0, mean_per_colour=pooled, quantity=metric)


def render() -> None:
    st.title("Compare runs")
    with ui.reading() as conn:
        jobs, names = ui.jobs(conn)
    if jobs.empty:
        st.info("No jobs yet.")
        return
    varying = factors.varying(jobs, names)
    seedlike = [n for n in varying if "seed" in n.lower()]
    c1, c2 = st.columns([1, 2])
    mode = c1.radio("Compare", [RUNS, CELLS] if varying else [RUNS], horizontal=True, key="compare-mode",
                    help="Cells: the runs that share every factor but the pooled ones (seeds), averaged.")
    pooled = (c2.multiselect("Pool over", varying, default=seedlike or varying[-1:], key="compare-pooled")
              if mode == CELLS else [])
    jobs = units_of(jobs, varying, pooled)
    units = list(dict.fromkeys(jobs["unit"]))
    wanted = []
    if mode == RUNS and st.query_params.get("jobs"):
        try:
            wanted = [f"job {int(j)}" for j in st.query_params["jobs"].split(",")]
        except ValueError:
            wanted = []
    default = [u for u in wanted if u in units] or units[:2]
    picked = st.multiselect(f"{'Runs' if mode == RUNS else 'Cells'} to compare (2 to {MAX_UNITS})", units,
                            default=default, max_selections=MAX_UNITS, key=f"compare-picked-{mode}-{'-'.join(pooled)}",
                            format_func=lambda u: option_label(jobs, varying, pooled, u))
    if len(picked) < 2:
        st.info("Pick two or more to compare.")
        return
    shown = unit_names(jobs, varying, pooled, picked)
    shown = {u: shown[u] for u in picked}
    members = {u: jobs.loc[jobs["unit"] == u, "id"].astype(int).tolist() for u in picked}
    selected = jobs[jobs["unit"].isin(picked)]
    ids = selected["id"].astype(int).tolist()
    with ui.reading() as conn:
        metric_names = curves.ordered_metrics(queries.metric_names(conn, ids))
        figures = queries.summaries_of(conn, ids)
        specs = queries.job_specs(conn, ids)

    st.subheader("Curves")
    if not metric_names:
        st.caption("None of these runs logged a metric.")
    else:
        chosen = st.multiselect("Metrics", metric_names, default=[n for n in metric_names if n in ("loss", "val_loss")]
                                or metric_names[:1], key="compare-metrics")
        colour_order = list(shown.values())
        buckets = curves.buckets_per_run(len(ids), 400)
        for metric in chosen:
            points = curves.downsampled(st.session_state["db_url"], metric, tuple(ids), buckets)
            if points.empty:
                st.caption(f"{metric}: not logged by these runs.")
                continue
            data = overlay(points, selected, shown, pooled=bool(pooled), metric=metric)
            st.altair_chart(charts.line_chart(data, y_title=metric, colour="colour", colour_title="compared",
                                              colour_order=colour_order, title=metric), width="stretch")
    st.caption("One line per run" + (", or the mean over a cell's runs at each step, with a band: its 95% t interval "
                                      f"over them (from {stats.MIN_N} runs)" if pooled else "") + ".")

    st.subheader("Final figures")
    if figures.empty:
        st.caption("None of these runs has final figures.")
    else:
        baseline = st.selectbox("Differences from", picked, format_func=lambda u: shown[u], key="compare-baseline")
        table = summary_table(figures, members, shown, baseline)
        ui.table(table, "compare_figures", caption=(
            "Each figure per run; differences: the other minus the baseline." if not pooled else
            "Mean, 95% t interval and n over each cell's runs; differences: the other minus the baseline, "
            "with a Welch interval."))

    st.subheader("Settings that differ")
    everything = st.checkbox("Show every setting", key="compare-everything")
    diff = spec_diff(specs, members, shown, everything=everything)
    if diff.empty:
        st.caption("Their resolved specs are the same.")
    else:
        ui.table(diff, "compare_settings", caption="From each run's resolved spec (what it ran with).")


if __name__ == "__main__":  # run as a page by st.navigation (under the name __main__)
    render()
