"""The pages' arithmetic: intervals, win rates, smoothing, factor columns."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dashboards import comparisons, factors
from db import stats

pytestmark = pytest.mark.unit


def test_t_quantiles_and_mean_interval():
    assert stats.t975(1) == 12.706 and stats.t975(2) == 4.303
    assert stats.t975(30) == 2.042 and 1.96 < stats.t975(1000) < 1.965
    assert math.isnan(stats.t975(0))
    mean, ci, n = stats.mean_ci(pd.Series([1.0, 2.0, 3.0]))
    assert (mean, n) == (2.0, 3) and ci == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    mean, ci, n = stats.mean_ci(pd.Series([5.0, float("nan")]))
    assert (mean, n) == (5.0, 1) and math.isnan(ci)


def test_difference_interval_is_welch():
    d, ci = stats.diff_ci(pd.Series([1.0, 2.0, 3.0]), pd.Series([0.0, 0.0, 0.0, 0.0]))
    assert d == 2.0 and ci == pytest.approx(4.303 * math.sqrt(1 / 3))  # df = 2 when one side has no variance


def test_bootstrap_win_rate_is_reproducible_and_brackets_the_rate():
    winners = pd.Series(["a"] * 30 + ["b"] * 10 + ["tie"] * 10)
    rate, lo, hi = stats.bootstrap_win_rate(winners)
    assert rate == pytest.approx(0.7) and lo < rate < hi
    assert stats.bootstrap_win_rate(winners) == (rate, lo, hi)
    assert stats.win_rate(winners) == pytest.approx(0.7)


def test_verdicts_recorded_either_way_round_are_merged():
    verdicts = pd.DataFrame({"judge": ["pairrm"] * 3, "arm_a": [1, 2, 1], "arm_b": [2, 1, 2],
                             "winner": ["a", "a", "tie"], "question_id": ["q1", "q2", "q3"]})
    (row,) = comparisons.win_rates(verdicts, resamples=200).itertuples()
    assert (row.arm_a, row.arm_b, row.a_wins, row.b_wins, row.ties) == (1, 2, 1, 1, 1)
    assert row.win_rate_a == pytest.approx(0.5)


def test_ema_smooths_with_debiasing_and_keeps_nans():
    s = pd.Series([1.0, 1.0, float("nan"), 3.0])
    out = pd.Series(stats.ema(s, 0.5))
    assert out.iloc[0] == 1.0 and out.iloc[1] == 1.0 and math.isnan(out.iloc[2])
    assert out.iloc[3] == pytest.approx((0.5 * 0.75 + 0.5 * 3) / (0.5 * 0.75 + 0.5))
    assert pd.Series(stats.ema(s, 0.0)).equals(s)


def test_factor_columns_order_filter_and_labels():
    table = pd.DataFrame({"id": [1, 2, 3], "state": ["succeeded"] * 3,
                          "factors": [{"lr": 3e-3, "norm": "dyt", "state": "x"}, {"lr": 1e-3, "norm": "dyt"},
                                      {"lr": 1e-3, "norm": "layernorm", "layers": [1, 2]}]})
    out, names = factors.expand(table)
    assert names == ["lr", "norm", "factor.state", "layers"]
    assert out["layers"].tolist()[2] == "[1, 2]" and out["state"].tolist() == ["succeeded"] * 3
    assert factors.ordered(out["lr"]) == [1e-3, 3e-3]
    assert factors.varying(out, names) == ["lr", "norm", "factor.state", "layers"]
    assert factors.filter_jobs(out, {"lr": ["0.001"]})["id"].tolist() == [2, 3]
    assert factors.labels(out, ["lr", "norm"]).tolist() == ["lr=0.003, norm=dyt", "lr=0.001, norm=dyt",
                                                            "lr=0.001, norm=layernorm"]


def test_db_url_comes_from_the_command_line_then_the_environment():
    from dashboards import ui

    assert ui.db_url_from(["--db", "sqlite:///a.db"], {}) == "sqlite:///a.db"
    assert ui.db_url_from(["--db=sqlite:///b.db"], {"GRIDLAB_DB": "x"}) == "sqlite:///b.db"
    assert ui.db_url_from(["-q", "tests"], {"GRIDLAB_DB": "sqlite:///c.db"}) == "sqlite:///c.db"
    assert ui.db_url_from([], {}) is None
