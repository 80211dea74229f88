"""A Streamlit page of the dashboard's charts at 1, 4 and 30 categories, each built by the
page's own chart function, for the browser check (tests/dashboards/test_browser.py):

    streamlit run tests/dashboards/gallery.py

The cells-by-factor heatmap (Overview) with 1, 4 and 30 rows and columns, the timing bars
(Timing) and a factor's panel (Factor effects) with 1, 4 and 30 levels, where intervals
would run below zero and some levels have two jobs. Last, a control: a chart drawn the way
the Timing page drew it before (30 rows in a fixed 120 px, whiskers below zero), which the
checks must find illegible.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import effects, overview, timing
from db import stats

COUNTS = (1, 4, 30)
CONTROL = "control: the old fixed-height bars"


def names(n: int, stem: str) -> list[str]:
    return [f"{stem}-{i:02d}" if i % 7 else f"an-unusually-long-{stem}-name-that-would-eat-the-plot-{i:02d}"
            for i in range(n)]


def jobs_table(rows: int, columns: int) -> pd.DataFrame:
    states = ["succeeded", "failed", "running", "pending", "diverged", "cancelled"]
    records = [{"id": k, "state": states[k % len(states)], "norm": r, "model": c}
               for k, (r, c) in enumerate((r, c) for r in names(rows, "norm") for c in names(columns, "model"))]
    return pd.DataFrame(records)


def variant_table(n: int) -> pd.DataFrame:
    # Means of 100 tokens/s with half-widths of 400 (an unclipped interval reaches -300);
    # every third variant has two jobs only.
    return pd.DataFrame({"model": names(n, "model"), "jobs": [2 if i % 3 == 1 else 6 for i in range(n)],
                         "tokens_per_s": [100.0 + 10 * i for i in range(n)], "tokens_per_s ci95": [400.0] * n})


def effect_of(n: int) -> stats.FactorEffect:
    rows = [({"model": m}, 0.9 + 0.001 * k + 0.02 * (i % 5)) for i, m in enumerate(names(n, "model"))
            for k in range(2 if i % 3 == 1 else 4)]
    return stats.factor_effect(rows, "model", stats.quantity_range("token_accuracy"))


st.set_page_config(page_title="gridlab chart gallery", layout="wide")
st.title("Chart gallery")
for rows, columns in ((1, 4), (4, 4), (4, 30), (30, 4), (30, 30), (1, 1)):
    jobs = jobs_table(rows, columns)
    chart = overview.heatmap_chart(overview.heatmap_cells(jobs, "model", "norm"), jobs, "model", "norm")
    st.altair_chart(chart.properties(title=f"heatmap {rows} rows x {columns} columns"), width="stretch")
dotted = jobs_table(4, 3).rename(columns={"norm": "factor.state"})  # a factor named like a job column
chart = overview.heatmap_chart(overview.heatmap_cells(dotted, "model", "factor.state"), dotted, "model", "factor.state")
st.altair_chart(chart.properties(title="heatmap of a factor named factor.state"), width="stretch")
for n in COUNTS:
    st.altair_chart(timing.bars(variant_table(n), "model", "tokens_per_s", f"timing bars, {n} variants"),
                    width="stretch")
    st.altair_chart(effects.panel(effect_of(n), "token_accuracy").properties(title=f"effect panel, {n} levels"),
                    width="stretch")

old = variant_table(30)
base = alt.Chart(old, title=CONTROL).encode(y=alt.Y("model:N", sort=list(old["model"])))
bar = base.mark_bar().encode(x=alt.X("tokens_per_s:Q", title="tokens_per_s"))
whiskers = alt.Chart(old.assign(lo=old["tokens_per_s"] - 400, hi=old["tokens_per_s"] + 400)).mark_rule().encode(
    y=alt.Y("model:N", sort=list(old["model"])), x="lo:Q", x2="hi:Q")
st.altair_chart((bar + whiskers).properties(height=120), width="stretch")
