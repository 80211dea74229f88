"""Results page: a final metric pivoted by factors, mean and 95% interval over the
factors left out (usually seeds), and the difference between two variants of the
column factor (e.g. norm dyt - layernorm per dataset: the seeds' "DyT val loss /
vanilla val loss / gap" table)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import factors, provenance, ui
from db import states, stats

LAST = ui.LAST
NONE = "(none)"


def pivot(values: pd.DataFrame, rows: list[str], column: str | None) -> pd.DataFrame:
    """One row per combination of ``rows``; per value v of ``column``: "v mean", "v ci95",
    "v n" (mean, 95% t half-width and count of ``values["value"]`` over the rest)."""
    keyed = values.assign(**{c: values[c].map(factors.fmt) for c in [*rows, *([column] if column else [])]})
    groups = rows or ["_all"]
    if not rows:
        keyed = keyed.assign(_all="all")
    col_values = [factors.fmt(v) for v in factors.ordered(values[column])] if column else [None]
    records = []
    for key, part in keyed.groupby(groups, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        record = dict(zip(groups, key))
        for cv in col_values:
            sub = part if cv is None else part[part[column] == cv]
            mean, ci, n = stats.mean_ci(sub["value"])
            prefix = "" if cv is None else f"{cv} "
            record.update({f"{prefix}mean": mean, f"{prefix}ci95": ci, f"{prefix}n": n})
        records.append(record)
    out = pd.DataFrame.from_records(records)
    if rows:
        order = {c: [factors.fmt(v) for v in factors.ordered(values[c])] for c in rows}
        out = out.sort_values(rows, key=lambda s: s.map({v: i for i, v in enumerate(order[s.name])}), ignore_index=True)
    else:
        out = out.drop(columns=["_all"])
    return out


def add_difference(table: pd.DataFrame, values: pd.DataFrame, rows: list[str], column: str, a: str, b: str) -> pd.DataFrame:
    """Columns "a - b" and "a - b ci95" (Welch) per row of ``table``, and "a / b"."""
    keyed = values.assign(**{c: values[c].map(factors.fmt) for c in [*rows, column]})
    diffs, cis = [], []
    for _, row in table.iterrows():
        part = keyed
        for r in rows:
            part = part[part[r] == row[r]]
        d, ci = stats.diff_ci(part.loc[part[column] == a, "value"], part.loc[part[column] == b, "value"])
        diffs.append(d)
        cis.append(ci)
    out = table.copy()
    out[f"{a} - {b}"] = diffs
    out[f"{a} - {b} ci95"] = cis
    out[f"{a} / {b}"] = out[f"{a} mean"] / out[f"{b} mean"]
    return out


def display(table: pd.DataFrame, digits: int) -> pd.DataFrame:
    """Each mean and its interval merged into one "m ± ci" text column, for reading
    (the CSV keeps the numbers)."""
    out = pd.DataFrame(index=table.index)
    for c in table.columns:
        if c.endswith("ci95"):
            continue
        ci = f"{c.removesuffix('mean')}ci95" if c.endswith("mean") else f"{c} ci95"
        if ci in table:
            out[c] = [_pm(m, h, digits) for m, h in zip(table[c], table[ci])]
        elif pd.api.types.is_float_dtype(table[c]):
            out[c] = table[c].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}f}")
        else:
            out[c] = table[c]
    return out


def _pm(mean: float, ci: float, digits: int) -> str:
    if mean is None or pd.isna(mean):
        return ""
    if ci is None or pd.isna(ci):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {ci:.{digits}f}"


def render() -> None:
    st.title("Results")
    with ui.reading() as conn:
        jobs, names = ui.jobs(conn)
        options = ui.metric_options(conn, jobs["id"].tolist())
    if not options:
        st.info("No results yet: no job has written final figures or logged a metric.")
        return
    default = next((i for i, o in enumerate(options) if o == "val_loss"), 0)
    c1, c2, c3 = st.columns([3, 1, 1])
    metric = c1.selectbox("Metric", options, index=default, key="results-metric",
                          help="Final figures (summaries), or the last logged value of a curve.")
    only_succeeded = c2.checkbox("Only succeeded jobs", value=True, key="results-succeeded")
    digits = c3.number_input("Digits", 1, 8, 4, key="results-digits")

    with ui.reading() as conn:
        values = ui.metric_values(conn, metric, jobs)
    if only_succeeded:
        values = values[values["state"] == states.SUCCEEDED]
    values = ui.factor_filters(values, names, key="results")
    if values.empty:
        st.warning(f"No selected job has a value for {metric}.")
        return

    with ui.reading() as conn:
        drift = provenance.drift_of(conn, values["id"].tolist())
    values = provenance.label_columns(values, drift)

    varying = factors.varying(values, names)
    seedlike = [n for n in varying if "seed" in n.lower()]
    c1, c2 = st.columns(2)
    column_choices = [NONE, *varying]
    default_col = next((varying.index(n) + 1 for n in varying if n not in seedlike), 0)
    column = c2.selectbox("Columns", column_choices, index=default_col, key="results-column")
    column = None if column == NONE else column
    row_choices = [n for n in varying if n != column]
    rows = c1.multiselect("Rows", row_choices, default=[n for n in row_choices if n not in seedlike],
                          key="results-rows")
    over = [n for n in varying if n not in rows and n != column]
    table = pivot(values, rows, column)

    if column is not None:
        col_values = [factors.fmt(v) for v in factors.ordered(values[column])]
        if len(col_values) >= 2:
            c1, c2, c3 = st.columns([1, 1, 2])
            a = c1.selectbox("Difference: A", col_values, index=0, key="results-a")
            b = c2.selectbox("minus B", col_values, index=1, key="results-b")
            if a != b:
                table = add_difference(table, values, rows, column, a, b)
    table = provenance.pooled_labels(table, values, rows)
    provenance.warn(drift)
    st.dataframe(display(table, digits), hide_index=True)
    st.caption(f"{metric}: mean ± 95% t interval over {', '.join(over) if over else 'repeats of a cell'}"
               f" ({len(values)} jobs). A − B interval: Welch.")
    st.download_button(f"Download results_{metric}.csv", table.to_csv(index=False).encode(),
                       file_name=f"results_{_slug(metric)}.csv", mime="text/csv", key="csv-results", on_click="ignore")
    with st.expander("Per-job values"):
        ui.table(values, f"values_{_slug(metric)}")


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text).strip("_")


if __name__ == "__main__":  # run as a page by st.navigation (under the name __main__)
    render()
