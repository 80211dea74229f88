"""Comparisons page: a judge's (e.g. PairRM's) win rates between arms, with bootstrap
intervals over prompts, and the arms' answers to each prompt side by side."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import charts, factors, queries, ui
from db import stats

ALL_JUDGES = "(all judges)"


def oriented(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Verdicts with each pair of arms read one way round (lower job id as arm a):
    a verdict recorded as (b, a) has its winner flipped."""
    swap = verdicts["arm_a"] > verdicts["arm_b"]
    out = verdicts.copy()
    out.loc[swap, ["arm_a", "arm_b"]] = verdicts.loc[swap, ["arm_b", "arm_a"]].to_numpy()
    out.loc[swap, "winner"] = verdicts.loc[swap, "winner"].replace({"a": "b", "b": "a"})
    return out


def win_rates(verdicts: pd.DataFrame, *, resamples: int = stats.RESAMPLES) -> pd.DataFrame:
    """Per (judge, arm a, arm b): prompts, a wins, b wins, ties, win rate of a (ties count
    half) and its 95% bootstrap interval over questions (a question's turns resampled together)."""
    rows = []
    for (judge, a, b), part in oriented(verdicts).groupby(["judge", "arm_a", "arm_b"], sort=True):
        questions = list(zip(part.get("prompt_set", part.index), part.get("question_id", part.index)))  # turns go together
        rate, lo, hi = stats.bootstrap_win_rate_by_question(part["winner"], questions, resamples=resamples)
        rows.append({"judge": judge, "arm_a": int(a), "arm_b": int(b), "prompts": len(part),
                     "a_wins": int((part["winner"] == "a").sum()), "b_wins": int((part["winner"] == "b").sum()),
                     "ties": int((part["winner"] == "tie").sum()), "win_rate_a": rate, "ci95_low": lo, "ci95_high": hi})
    return pd.DataFrame(rows, columns=["judge", "arm_a", "arm_b", "prompts", "a_wins", "b_wins", "ties",
                                       "win_rate_a", "ci95_low", "ci95_high"])


def win_rate_chart(rates: pd.DataFrame) -> alt.LayerChart:
    """A row per pair of arms (and judge): arm a's win rate and its bootstrap interval, on
    an axis from 0 to 1 at most; "n=2" where a pair has fewer than three prompts."""
    table = rates.assign(pair=[f"{a}  vs  {b}" + (f" ({j})" if rates["judge"].nunique() > 1 else "")
                               for a, b, j in zip(rates["a"], rates["b"], rates["judge"])])
    return charts.interval_chart(table, "pair", "win_rate_a", n="prompts", low="ci95_low", high="ci95_high",
                                 quantity="win_rate_a", bars=False, axis_title="win_rate_a", domain=(0.0, 1.0), reference=0.5,
                                 title="Win rate of a (95% bootstrap interval over prompts)")


def arm_labels(jobs: pd.DataFrame, names: list[str], arm_ids: list[int]) -> dict[int, str]:
    """Job id -> "job N: factor=value, ..." over the factors that differ between the arms."""
    arms = jobs[jobs["id"].isin(arm_ids)]
    differing = factors.varying(arms, names)
    if arms["grid"].nunique() > 1:
        differing = ["grid", *differing]
    text = factors.labels(arms, differing) if differing else arms["id"].map(lambda i: "")
    return {int(i): f"job {int(i)}" + (f": {t}" if t else "") for i, t in zip(arms["id"], text)}


def render() -> None:
    st.title("Comparisons")
    with ui.reading() as conn:
        judges = queries.judges(conn)
        if not judges:
            st.info("No judgments yet: no judge job (e.g. PairRM) has compared two arms.")
            return
        judge = st.selectbox("Judge", [ALL_JUDGES, *judges], key="comparisons-judge") if len(judges) > 1 else judges[0]
        verdicts = queries.judgment_counts(conn, judge=None if judge == ALL_JUDGES else judge)
        jobs, names = factors.expand(queries.job_table(conn))  # arms may live in any grid
    grid = ui.grid()
    if grid is not None:
        in_grid = set(jobs.loc[jobs["grid"] == grid, "id"])
        verdicts = verdicts[verdicts["arm_a"].isin(in_grid) | verdicts["arm_b"].isin(in_grid)]
    if verdicts.empty:
        st.info("No judgments involve this grid's jobs.")
        return
    rates = win_rates(verdicts)
    labels = arm_labels(jobs, names, sorted(set(rates["arm_a"]) | set(rates["arm_b"])))
    rates.insert(2, "a", rates["arm_a"].map(labels))
    rates.insert(4, "b", rates["arm_b"].map(labels))

    st.subheader("Win rates")
    st.altair_chart(win_rate_chart(rates), width="stretch")
    ui.table(rates, "win_rates", column_config={
        "win_rate_a": st.column_config.ProgressColumn("win rate of a", min_value=0.0, max_value=1.0, format="%.3f"),
        "ci95_low": st.column_config.NumberColumn(format="%.3f"),
        "ci95_high": st.column_config.NumberColumn(format="%.3f"),
    }, caption="Win rate of a = (a wins + ties / 2) / prompts; interval: 2.5th-97.5th percentile of "
               f"{stats.RESAMPLES:,} bootstrap resamples of the prompts (as `gridlab compare` prints it).")

    st.subheader("Answers side by side")
    pairs = [(int(r.arm_a), int(r.arm_b)) for r in rates.drop_duplicates(["arm_a", "arm_b"]).itertuples()]
    a, b = st.selectbox("Pair", pairs, format_func=lambda p: f"{labels[p[0]]}  vs  {labels[p[1]]}",
                        key="comparisons-pair")
    with ui.reading() as conn:
        outputs = queries.pair_outputs(conn, a, b, judge=None if judge == ALL_JUDGES else judge)
    if outputs.empty:
        st.caption("These arms have no generations for the same prompts.")
        return
    keys = [f"{r.prompt_set} / {r.question_id} / turn {r.turn}" for r in outputs.itertuples()]
    verdict_text = {"a": "a wins", "b": "b wins", "tie": "tie"}
    pick = st.selectbox("Prompt", range(len(keys)), key="comparisons-prompt",
                        format_func=lambda i: f"{keys[i]} ({verdict_text.get(outputs['winner'].iloc[i], 'no verdict')})")
    row = outputs.iloc[pick]
    st.markdown(f"**Prompt** ({row['category'] or 'no category'}):")
    st.text(row["prompt"])
    left, right = st.columns(2)
    left.markdown(f"**a: {labels[a]}**")
    left.text(row["output_a"])
    right.markdown(f"**b: {labels[b]}**")
    right.text(row["output_b"])
    if isinstance(row["winner"], str):
        st.caption(f"Verdict: {verdict_text.get(row['winner'], row['winner'])} (logit for a: {row['logit']:+.3f})")
    with st.expander("Every prompt of this pair"):
        ui.table(outputs, f"outputs_{a}_vs_{b}")


if __name__ == "__main__":  # run as a page by st.navigation (under the name __main__)
    render()
