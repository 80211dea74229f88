"""db.stats' tests and cluster bootstrap (the report's, `gridlab compare`'s and the dashboard's),
checked against scipy and against what resampling questions must do."""

from __future__ import annotations

import math

import numpy as np
import pytest

from db import stats
from harness.evaluation import winrate

pytestmark = pytest.mark.unit
import scipy.stats as scipy_stats  # noqa: E402  (a dev dependency)


@pytest.mark.parametrize("a, b", [([1.0, 2.0, 4.0], [1.5, 2.1, 5.0]), ([3.2, 3.1, 3.3, 3.0, 2.9], [3.0, 3.05, 3.1, 2.7, 2.95])])
def test_paired_t_is_scipys(a, b):
    test = stats.paired_t(dict(enumerate(a)), dict(enumerate(b)))
    ref = scipy_stats.ttest_rel(b, a)
    assert test.t == pytest.approx(ref.statistic) and test.p == pytest.approx(ref.pvalue, rel=1e-9)
    d = np.subtract(b, a)
    half = scipy_stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    assert (test.low, test.high) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-3)


def test_paired_t_pairs_by_key_and_says_nothing_under_two_pairs():
    assert stats.paired_t({0: 1.0, 1: 2.0}, {1: 2.5, 2: 9.0}).n == 1
    one = stats.paired_t({0: 1.0}, {0: 1.5})
    assert one.mean == 0.5 and math.isnan(one.p) and math.isnan(one.low)
    same = stats.paired_t({0: 1.0, 1: 2.0}, {0: 1.5, 1: 2.5})
    assert (same.low, same.high, same.p) == (0.5, 0.5, 0.0)


@pytest.mark.parametrize("wins, losses", [(3, 1), (67, 14), (0, 0), (10, 10), (0, 7), (40, 41)])
def test_binomial_p_is_scipys_two_sided_exact_test(wins, losses):
    expected = 1.0 if wins + losses == 0 else scipy_stats.binomtest(wins, wins + losses).pvalue
    assert stats.binomial_p(wins, losses) == pytest.approx(expected, rel=1e-9)


def test_the_t_distribution_is_scipys():
    for t, df in ((0.5, 1), (2.1, 5), (3.7, 12), (1.96, 200)):
        assert stats.t_two_sided_p(t, df) == pytest.approx(2 * scipy_stats.t.sf(t, df), rel=1e-8)


def test_a_question_is_resampled_whole():
    """Turn 2 agrees with turn 1 on every question: resampling verdicts pretends to twice the
    evidence there is; resampling questions gives the one-turn interval."""
    one_turn = ["a"] * 12 + ["b"] * 8
    winners = [w for w in one_turn for _ in (1, 2)]
    questions = [q for q in range(20) for _ in (1, 2)]
    by_verdict = stats.bootstrap_win_rate(winners)
    by_question = stats.bootstrap_win_rate_by_question(winners, questions)
    alone = stats.bootstrap_win_rate(one_turn)
    assert by_question[0] == by_verdict[0] == 0.6
    assert by_question[2] - by_question[1] > 1.3 * (by_verdict[2] - by_verdict[1])
    assert by_question[2] - by_question[1] == pytest.approx(alone[2] - alone[1], abs=0.03)


def test_one_verdict_per_question_is_the_plain_bootstrap_in_any_order():
    winners = ["a"] * 11 + ["b"] * 6 + ["tie"] * 3
    assert stats.bootstrap_win_rate_by_question(winners, range(20)) == stats.bootstrap_win_rate(winners)
    rev = stats.cluster_bootstrap([1, 0, 1, 1, 0.5, 0], ["q1", "q1", "q2", "q3", "q3", "q4"])
    assert stats.cluster_bootstrap([0, 0.5, 1, 1, 0, 1], ["q4", "q3", "q3", "q2", "q1", "q1"]) == rev


def test_compare_resamples_questions_when_told_them():
    winners = ["a", "a", "b", "b", "a", "a", "tie", "tie"]
    questions = [("p", q) for q in ("1", "1", "2", "2", "3", "3", "4", "4")]
    r = winrate.win_rate(winners, questions=questions)
    assert (r.rate, r.low, r.high) == stats.bootstrap_win_rate_by_question(winners, questions)
    assert (r.wins, r.losses, r.ties) == (4, 2, 2)
    view = winrate.paired({0: dict(zip([(*q, t) for q, t in zip(questions, [1, 2] * 4)], winners)),
                           1: dict(zip([(*q, t) for q, t in zip(questions, [1, 2] * 4)], winners))},
                          cluster=lambda key: key[:2])
    assert view.pooled.n == 16 and view.pooled.rate == r.rate


def test_the_change_of_a_rate_resamples_prompts_of_both_arms_together():
    rng = np.random.default_rng(1)
    seconds = rng.uniform(1.0, 3.0, 30)
    tokens = np.full(30, 64.0)
    # arm b is 10 % faster on every prompt, however long the prompt takes
    change, low, high = stats.cluster_ratio_change((tokens, seconds, range(30)), (tokens, seconds / 1.1, range(30)))
    assert change == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1)
    noisy = seconds / 1.1 * rng.uniform(0.95, 1.05, 30)
    change, low, high = stats.cluster_ratio_change((tokens, seconds, range(30)), (tokens, noisy, range(30)))
    assert low < change < high and low > 0.05 and high < 0.15
    assert math.isnan(stats.cluster_ratio_change(([1], [1], ["x"]), ([1], [1], ["y"]))[0])
