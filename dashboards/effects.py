"""Factor effects page: which factors matter for a metric, before anyone builds a pivot.

For the chosen metric, one small panel per grid factor: the mean and 95% t interval per
level of that factor over the rest of the grid (every job at that level pooled), the
factors ordered by eta squared (the share of the metric's variance their levels explain
alone); then the interaction of two chosen factors as a heatmap of cell means (e.g.
norm x strategy for val_loss). The numbers come from db.stats, as `gridlab results
--effects` prints them.
"""

from __future__ import annotations

import math

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import charts, factors, ui
from db import states, stats

#: Panels side by side.
PANELS_PER_ROW = 2


def rows_of(values: pd.DataFrame, names: list[str]) -> list[tuple[dict, float]]:
    """(factors, value) per job, over the factor columns ``names`` (as db.stats takes them)."""
    return [({n: row[n] for n in names if not _missing(row[n])}, row["value"])
            for _, row in values[[*names, "value"]].iterrows()]


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def effects_table(effects: list[stats.FactorEffect]) -> pd.DataFrame:
    """One row per factor: levels, jobs, eta squared, spread of the level means, and the
    levels with the lowest and highest mean."""
    rows = []
    for e in effects:
        by_mean = sorted(((i.mean, level) for level, i in e.levels if math.isfinite(i.mean)), key=lambda t: t[0])
        rows.append({"factor": e.factor, "levels": len(e.levels), "jobs": e.n, "eta_squared": e.eta_squared,
                     "spread": e.spread, "lowest": factors.fmt(by_mean[0][1]) if by_mean else "",
                     "highest": factors.fmt(by_mean[-1][1]) if by_mean else ""})
    return pd.DataFrame(rows, columns=["factor", "levels", "jobs", "eta_squared", "spread", "lowest", "highest"])


def levels_table(effect: stats.FactorEffect) -> pd.DataFrame:
    """One row per level of a factor: level (as printed), mean, low, high, n."""
    return pd.DataFrame([{effect.factor: factors.fmt(level), "mean": i.mean, "low": i.low, "high": i.high, "n": i.n}
                         for level, i in effect.levels], columns=[effect.factor, "mean", "low", "high", "n"])


def panel(effect: stats.FactorEffect, metric: str) -> alt.LayerChart:
    """A factor's panel: a row per level (charts.STEP pixels each), its mean and interval."""
    table = levels_table(effect)
    eta = f"η² = {effect.eta_squared:.2f}" if math.isfinite(effect.eta_squared) else "η² undefined"
    return charts.interval_chart(table, effect.factor, "mean", n="n", low="low", high="high", quantity=metric,
                                 bars=False, title=f"{effect.factor} ({eta})", axis_title=metric)


def interaction_cells(rows: list[tuple[dict, float]], row_factor: str, column_factor: str,
                      metric: str) -> pd.DataFrame:
    """One row per (row level, column level) with jobs: mean, low, high, n, label."""
    cells = stats.interaction(rows, row_factor, column_factor, stats.quantity_range(metric))
    out = pd.DataFrame([{row_factor: factors.fmt(r), column_factor: factors.fmt(c), "mean": i.mean, "low": i.low,
                         "high": i.high, "n": i.n} for (r, c), i in cells.items()],
                       columns=[row_factor, column_factor, "mean", "low", "high", "n"])
    out["label"] = [f"{m:.3g}" for m in out["mean"]]
    return out


def interaction_chart(cells: pd.DataFrame, row_factor: str, column_factor: str, metric: str,
                      values: pd.DataFrame) -> alt.LayerChart:
    x_order = [factors.fmt(v) for v in factors.ordered(values[column_factor])]
    y_order = [factors.fmt(v) for v in factors.ordered(values[row_factor])]
    colour = alt.Color("mean:Q", title=f"mean {metric}", scale=alt.Scale(scheme="viridis"),
                       legend=alt.Legend(orient="top", direction="horizontal", gradientLength=320))
    tooltip = [alt.Tooltip(f"{charts.field(row_factor)}:N", title=row_factor),
               alt.Tooltip(f"{charts.field(column_factor)}:N", title=column_factor), alt.Tooltip("mean:Q", format=".4g"),
               alt.Tooltip("low:Q", format=".4g", title="95% low"), alt.Tooltip("high:Q", format=".4g", title="95% high"),
               "n:Q"]
    means = pd.to_numeric(cells["mean"], errors="coerce")
    middle = float(means.min() + 0.6 * (means.max() - means.min())) if means.notna().any() else 0.0
    text_colour = alt.condition(alt.datum.mean > middle, alt.value("black"), alt.value("white"))  # on viridis' yellows
    return charts.heatmap(cells, column_factor, row_factor, x_order, y_order, colour=colour, text="label",
                          tooltip=tooltip, title=f"{metric}: {row_factor} × {column_factor}", text_colour=text_colour)


def render() -> None:
    st.title("Factor effects")
    with ui.reading() as conn:
        jobs, names = ui.jobs(conn)
        options = ui.metric_options(conn, jobs["id"].tolist()) if not jobs.empty else []
    if not options:
        st.info("No results yet: no job has written final figures or logged a metric.")
        return
    default = next((i for i, o in enumerate(options) if o == "val_loss"), 0)
    c1, c2 = st.columns([3, 1])
    option = c1.selectbox("Metric", options, index=default, key="effects-metric",
                          help="Final figures (summaries), or the last logged value of a curve.")
    only_succeeded = c2.checkbox("Only succeeded jobs", value=True, key="effects-succeeded")
    metric = ui.metric_name(option)
    with ui.reading() as conn:
        values = ui.metric_values(conn, option, jobs)
    if only_succeeded:
        values = values[values["state"] == states.SUCCEEDED]
    values = values[pd.to_numeric(values["value"], errors="coerce").notna()]
    varying = factors.varying(values, names)
    if values.empty or not varying:
        st.warning(f"No factor varies among the jobs with a value for {option}: there is no effect to show.")
        return
    rows = rows_of(values, varying)
    effects = stats.factor_effects(rows, varying, bounds=stats.quantity_range(metric))

    st.subheader(f"Which factors matter for {option}")
    ui.table(effects_table(effects), f"effects_{_slug(option)}", caption=(
        "η²: the share of the variance of the metric across these jobs that the factor's levels explain on their own "
        "(1: all of it). Spread: the highest level mean minus the lowest. Unbalanced grids (zip:, exclude:) mix "
        "factors: read the interaction below before crediting one factor."),
        column_config={"eta_squared": st.column_config.ProgressColumn("η²", min_value=0.0, max_value=1.0,
                                                                      format="%.2f")})

    st.subheader("Each factor's levels")
    for start in range(0, len(effects), PANELS_PER_ROW):
        for col, effect in zip(st.columns(PANELS_PER_ROW), effects[start:start + PANELS_PER_ROW]):
            with col:
                st.altair_chart(panel(effect, metric), width="stretch")
    st.caption(f"Mean and 95% t interval of {option} over every job at the level (the rest of the grid pooled), "
               f"within the range {metric} can take; from {stats.MIN_N} jobs up (fewer: \"n=2\").")
    with st.expander("Per level"):
        ui.table(pd.concat([levels_table(e).rename(columns={e.factor: "level"}).assign(factor=e.factor)
                            for e in effects], ignore_index=True)[["factor", "level", "mean", "low", "high", "n"]],
                 f"effect_levels_{_slug(option)}")

    st.subheader("Interaction of two factors")
    if len(varying) < 2:
        st.caption(f"Only {varying[0]} varies: no interaction to show.")
        return
    ranked = [e.factor for e in effects] + [v for v in varying if v not in {e.factor for e in effects}]
    c1, c2 = st.columns(2)
    row_factor = c1.selectbox("Rows", ranked, index=0, key="effects-rows")
    column_factor = c2.selectbox("Columns", [v for v in ranked if v != row_factor], index=0, key="effects-columns")
    cells = interaction_cells(rows, row_factor, column_factor, metric)
    st.altair_chart(interaction_chart(cells, row_factor, column_factor, metric, values), width="stretch")
    st.caption(f"Each cell: mean {option} of the jobs at both levels (tooltip: 95% interval and n).")
    ui.table(cells.drop(columns=["label"]), f"interaction_{_slug(option)}")


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text).strip("_")


if __name__ == "__main__":  # run as a page by st.navigation (under the name __main__)
    render()
