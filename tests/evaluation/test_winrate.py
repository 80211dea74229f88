"""Win rates and their bootstrap intervals; the paired view across seeds."""

from __future__ import annotations

import math

import pytest

from harness.evaluation import winrate

pytestmark = pytest.mark.unit


def test_counts_rate_and_interval():
    r = winrate.win_rate(["a"] * 7 + ["b"] * 2 + ["tie"], iterations=2000)
    assert (r.wins, r.losses, r.ties, r.n) == (7, 2, 1, 10)
    assert r.rate == pytest.approx(0.75)
    assert 0.0 <= r.low < r.rate < r.high <= 1.0
    assert r == winrate.win_rate(["a"] * 7 + ["b"] * 2 + ["tie"], iterations=2000)  # fixed seed: same interval


def test_unanimous_and_empty():
    r = winrate.win_rate(["b"] * 5)
    assert (r.rate, r.low, r.high) == (0.0, 0.0, 0.0)
    assert math.isnan(winrate.win_rate([]).rate)
    with pytest.raises(ValueError, match="'a', 'b' or 'tie'"):
        winrate.win_rate(["x"])


def test_interval_narrows_with_more_prompts():
    small = winrate.win_rate(["a", "b"] * 5)
    large = winrate.win_rate(["a", "b"] * 200)
    assert (large.high - large.low) < (small.high - small.low)


def test_paired_averages_each_prompt_over_seeds():
    by_seed = {
        0: {"q1": "a", "q2": "a", "q3": "b"},
        1: {"q1": "a", "q2": "b", "q3": "b"},
    }
    view = winrate.paired(by_seed, iterations=2000)
    assert view.prompts == 3
    assert view.per_seed[0].rate == pytest.approx(2 / 3) and view.per_seed[1].rate == pytest.approx(1 / 3)
    assert view.pooled.rate == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert (view.pooled.wins, view.pooled.losses) == (3, 3)
    assert view.seeds_favouring_a == 1
