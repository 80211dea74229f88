"""The charts' geometry, from the Vega-Lite specs the pages' own chart functions build: a
height per category at 1, 4 and 30 levels, labels cut or turned rather than overlapping,
legends above the plot, intervals within the quantity's range and only from three jobs up,
points on sparse curves. The same checks run on the drawn charts in test_browser.py."""

from __future__ import annotations

import json

import altair as alt
import pandas as pd
import pytest

from dashboards import charts, effects, overview, timing
from db import stats
from tests.dashboards import geometry

pytestmark = pytest.mark.unit

COUNTS = (1, 4, 30)


def _spec(chart) -> tuple[dict, dict[str, list[dict]]]:
    spec = chart.to_dict()
    return spec, spec.get("datasets", {})


def _names(n: int, stem: str) -> list[str]:
    return [f"{stem}-{i:02d}" if i % 7 else f"an-unusually-long-{stem}-name-that-would-eat-the-plot-{i:02d}"
            for i in range(n)]


def _jobs(rows: int, columns: int) -> pd.DataFrame:
    return pd.DataFrame([{"id": k, "state": "succeeded" if k % 2 else "failed", "norm": r, "model": c}
                         for k, (r, c) in enumerate((r, c) for r in _names(rows, "norm") for c in _names(columns, "model"))])


def _leaves(spec: dict) -> list[dict]:
    return spec.get("layer", [spec])


@pytest.mark.parametrize("rows", COUNTS)
@pytest.mark.parametrize("columns", COUNTS)
def test_cells_by_factor_heatmap_gets_a_row_height_per_level_and_readable_columns(rows, columns):
    jobs = _jobs(rows, columns)
    spec, data = _spec(overview.heatmap_chart(overview.heatmap_cells(jobs, "model", "norm"), jobs, "model", "norm"))
    assert geometry.spec_problems(spec, data) == []
    assert spec["height"] == {"step": charts.STEP}  # rows x STEP px, whatever the number of rows
    rect = _leaves(spec)[0]
    x_axis, y_axis = rect["encoding"]["x"]["axis"], rect["encoding"]["y"]["axis"]
    assert y_axis["labelLimit"] == charts.LABEL_LIMIT
    if columns == 30:
        assert x_axis["labelAngle"] == -45  # 30 columns of labels cannot stand side by side
    else:
        assert x_axis["labelAngle"] == 0 and x_axis["labelLimit"] <= (charts.PLOT_WIDTH - charts.LABEL_LIMIT) / columns
    legend = rect["encoding"]["color"]["legend"]
    assert legend["orient"] == "top" and legend["columns"] == 6  # six states in one row above the plot
    has_text = len(_leaves(spec)) == 2
    assert has_text == (columns < 30)  # "1/1" labels only where the cells are wide enough for them


def test_a_factor_with_a_dot_in_its_name_is_one_column_not_a_nested_field():
    jobs = _jobs(4, 3).rename(columns={"norm": "factor.state"})
    spec, data = _spec(overview.heatmap_chart(overview.heatmap_cells(jobs, "model", "factor.state"), jobs, "model",
                                              "factor.state"))
    assert _leaves(spec)[0]["encoding"]["y"]["field"] == "factor\\.state"
    assert geometry.spec_problems(spec, data) == []
    unescaped = json.loads(json.dumps(spec).replace("factor\\\\.state", "factor.state"))
    assert any("no column of its data" in p for p in geometry.spec_problems(unescaped, data))


def test_heatmap_text_labels_are_left_out_only_when_they_would_not_fit():
    assert charts.cell_text_fits(["12/12"], 4) and not charts.cell_text_fits(["12/12"], 40)


def _variants(n: int) -> pd.DataFrame:
    return pd.DataFrame({"model": _names(n, "model"), "jobs": [2 if i % 3 == 1 else 6 for i in range(n)],
                         "tokens_per_s": [100.0 + i for i in range(n)], "tokens_per_s ci95": [400.0] * n})


@pytest.mark.parametrize("n", COUNTS)
def test_timing_bars_never_go_below_zero_and_say_n_for_two_jobs(n):
    spec, data = _spec(timing.bars(_variants(n), "model", "tokens_per_s", "tokens per second"))
    assert geometry.spec_problems(spec, data) == []
    assert spec["height"] == {"step": charts.STEP}
    leaves = _leaves(spec)
    bar = leaves[0]
    assert bar["encoding"]["x"]["scale"]["domain"][0] == 0.0  # bars from zero, and the axis too
    rule = next(l for l in leaves if l["mark"]["type"] == "rule")
    rule_rows = data[rule["data"]["name"]]
    assert all(r["low"] >= 0.0 for r in rule_rows)  # 100 - 400 clipped to zero tokens/s
    assert all(r["jobs"] >= stats.MIN_N for r in rule_rows)  # no band from two jobs
    texts = [l for l in leaves if l["mark"]["type"] == "text"]
    two = [i for i in range(n) if i % 3 == 1]
    if two:
        (text,) = texts
        assert [r["n_text"] for r in data[text["data"]["name"]]] == ["n=2"] * len(two)
    else:
        assert texts == []


def test_an_accuracy_interval_stops_at_one():
    rows = [({"model": m}, v) for m, vs in (("a", (0.99, 0.999, 0.95)), ("b", (0.5, 0.6, 0.7))) for v in vs]
    effect = stats.factor_effect(rows, "model", stats.quantity_range("token_accuracy"))
    spec, data = _spec(effects.panel(effect, "token_accuracy"))
    assert geometry.spec_problems(spec, data) == []
    rule = next(l for l in _leaves(spec) if l["mark"]["type"] == "rule")
    highs = {r["model"]: r["high"] for r in data[rule["data"]["name"]]}
    assert highs["a"] == 1.0 and highs["b"] < 1.0  # 0.98 + t(2) * sd / sqrt(3) would pass 1
    x_scale = _leaves(spec)[0]["encoding"]["x"]["scale"]
    assert x_scale["domain"][1] <= 1.0


def test_the_spec_check_finds_the_old_charts_illegible():
    # The heatmap and the bars as the pages drew them before: a fixed height for every row.
    jobs = _jobs(4, 3)
    cells = overview.heatmap_cells(jobs, "model", "norm")
    old = alt.Chart(cells).mark_rect().encode(x="model:N", y="norm:N").properties(height=60)
    old_spec, old_data = _spec(old)
    found = geometry.spec_problems(old_spec, old_data)
    assert any("4 categories of norm get 15 px each" in p for p in found), found
    assert any("does not cut long labels" in p for p in found), found
    table = _variants(4)
    bar = alt.Chart(table).mark_bar().encode(y="model:N", x=alt.X("tokens_per_s:Q", title="tokens_per_s"))
    whisker = alt.Chart(table.assign(lo=table["tokens_per_s"] - 400, hi=table["tokens_per_s"] + 400, n=2)).mark_rule(
    ).encode(y="model:N", x="lo:Q", x2="hi:Q")
    spec, data = _spec((bar + whisker).properties(height=120))
    found = geometry.spec_problems(spec, data)
    assert any("outside what tokens_per_s can be" in p for p in found)
    assert any("interval from n=2" in p for p in found)


def test_a_legend_longer_than_the_plot_goes_above_it_and_the_chart_grows_by_it():
    labels = [f"run-{i:02d}-with-a-long-name" for i in range(30)]
    data = pd.DataFrame([{"step": s, "value": 1.0 / s, "colour": c, "line": c, "points": 1}
                         for c in labels for s in range(1, 101)])
    spec = charts.line_chart(data, y_title="loss", colour="colour", colour_title="run", colour_order=labels).to_dict()
    legend = spec["encoding"]["color"]["legend"]
    assert legend["orient"] == "top" and legend["columns"] >= 2
    rows = -(-30 // legend["columns"])
    assert spec["height"] == 320 + charts.LEGEND_TITLE_PX + rows * charts.LEGEND_ROW_PX
    assert spec["mark"]["point"] is False  # 100 points per line, every step: a dense curve


def test_sparse_curves_show_their_points_dense_ones_and_buckets_do_not():
    every_step = pd.DataFrame({"step": range(1, 101), "value": 1.0, "points": 1, "line": "a"})
    every_50 = pd.DataFrame({"step": range(50, 5001, 50), "value": 1.0, "points": 1, "line": "a"})
    buckets = every_50.assign(points=10)
    short = every_step.head(8)
    assert not charts.shows_points(every_step, "line")
    assert charts.shows_points(every_50, "line")
    assert not charts.shows_points(buckets, "line")
    assert charts.shows_points(short, "line")
    assert charts.curve_chart(every_50.drop(columns="line"), "val_loss").to_dict()["mark"]["point"] != False  # noqa: E712


def test_the_drawn_check_finds_overlaps_cut_legends_and_negative_axes():
    label = {"angle": 0, "font": 11}
    chart = {
        "renderer": "svg", "titles": ["bad"], "box": {"x": 0, "y": 0, "w": 500, "h": 100},
        "drawing": {"x": 0, "y": 0, "w": 500, "h": 100},
        "axes": [
            {"aria": "Y-axis titled 'norm' for a discrete scale with 4 values: a, b, c, d", "title": "norm",
             "labels": [{**label, "text": "a", "x": 10, "y": 10, "w": 20, "h": 12},
                        {**label, "text": "b", "x": 10, "y": 16, "w": 20, "h": 12}]},
            {"aria": "X-axis titled 'tokens_per_s' for a linear scale with values from \u22122,000 to 5,000",
             "title": "tokens_per_s", "labels": []},
        ],
        "legends": [{"aria": "Symbol legend titled 'state' for fill color with 2 values: x, y",
                     "labels": [{**label, "text": "x", "x": 400, "y": 90, "w": 30, "h": 19}]}],
        "marks": [{**label, "text": "1/1", "x": 50, "y": 10, "w": 20, "h": 12},
                  {**label, "text": "1/1", "x": 60, "y": 12, "w": 20, "h": 12}],
    }
    found = "\n".join(geometry.drawn_problems(chart))
    for needle in ("draws 2 of its 4 category labels", "labels 'a' and 'b' overlap", "runs from -2000 to 5000",
                   "legend draws 1 of 2", "legend entry 'x' is cut off", "text marks '1/1' and '1/1' overlap"):
        assert needle in found, found
    # Turned labels: apart enough across their direction, or not.
    turned = [{"text": t, "angle": 315, "font": 11, "x": x, "y": 80, "w": 60, "h": 60} for t, x in (("p", 0), ("q", 20))]
    assert geometry._labels_apart(turned) == []
    assert geometry._labels_apart([{**turned[0]}, {**turned[1], "x": 5}])


def test_specs_round_trip_as_json():
    # What st.altair_chart sends is the spec as JSON: every chart function's output must serialise.
    jobs = _jobs(4, 3)
    for chart in (overview.heatmap_chart(overview.heatmap_cells(jobs, "model", "norm"), jobs, "model", "norm"),
                  timing.bars(_variants(4), "model", "tokens_per_s", "t")):
        json.loads(chart.to_json())


def test_win_rates_are_drawn_on_zero_to_one_with_the_even_line():
    from dashboards import comparisons

    verdicts = pd.DataFrame({"judge": "pairrm", "arm_a": [1] * 6 + [3] * 2, "arm_b": [2] * 6 + [4] * 2,
                             "winner": ["a"] * 6 + ["a", "b"], "question_id": [f"q{i}" for i in range(8)]})
    rates = comparisons.win_rates(verdicts, resamples=500).assign(a=["job 1", "job 3"], b=["job 2", "job 4"])
    spec, data = _spec(comparisons.win_rate_chart(rates))
    assert geometry.spec_problems(spec, data) == []
    leaves = _leaves(spec)
    assert leaves[0]["mark"]["type"] == "rule" and data[leaves[0]["data"]["name"]] == [{"reference": 0.5}]
    point = next(l for l in leaves if l["mark"]["type"] == "point")
    assert point["encoding"]["x"]["scale"]["domain"] == [0.0, 1.0]
    rule = next(l for l in leaves[1:] if l["mark"]["type"] == "rule")
    assert [r["high"] for r in data[rule["data"]["name"]]] == [1.0]  # six wins of six: the interval is [1, 1]
    text = next(l for l in leaves if l["mark"]["type"] == "text")
    assert [r["n_text"] for r in data[text["data"]["name"]]] == ["n=2"]  # two prompts: no interval drawn
