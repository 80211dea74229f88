"""The statistics the pages show: means with t intervals over seeds, the difference
of two variants (Welch), bootstrap intervals for win rates, curve smoothing.

Plain numpy and pandas (no scipy): the t quantiles the intervals need are tabulated.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

# Two-sided 95% quantiles of Student's t, t_{0.975}(df), for df = 1..30.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)


def t975(df: float) -> float:
    """t_{0.975}(df); df below 1 gives NaN, df over 30 interpolates towards 1.96."""
    if not df >= 1:
        return math.nan
    if df <= 30:
        lo = int(math.floor(df))
        if lo == df or lo == 30:
            return _T975[lo - 1]
        frac = df - lo
        return _T975[lo - 1] * (1 - frac) + _T975[lo] * frac
    # t(df) ~ z + (z^3 + z) / (4 df): the first term of the Cornish-Fisher expansion.
    z = 1.959964
    return z + (z**3 + z) / (4 * df)


def mean_ci(values: pd.Series) -> tuple[float, float, int]:
    """(mean, half-width of the 95% t interval, n) of the finite values. The half-width
    is NaN for fewer than two values."""
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, n
    return mean, t975(n - 1) * float(x.std(ddof=1)) / math.sqrt(n), n


def diff_ci(a: pd.Series, b: pd.Series) -> tuple[float, float]:
    """(mean(a) - mean(b), half-width of its 95% Welch interval)."""
    x = pd.to_numeric(a, errors="coerce").to_numpy(dtype=float)
    y = pd.to_numeric(b, errors="coerce").to_numpy(dtype=float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if len(x) == 0 or len(y) == 0:
        return math.nan, math.nan
    diff = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return diff, math.nan
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se2 = vx + vy
    if se2 == 0:
        return diff, 0.0
    df = se2**2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    return diff, t975(df) * math.sqrt(se2)


def win_rate(winners: pd.Series) -> float:
    """Share of wins for arm a, a tie counting half: (wins + ties / 2) / n."""
    w = winners.astype(str)
    n = len(w)
    if n == 0:
        return math.nan
    return float(((w == "a").sum() + 0.5 * (w == "tie").sum()) / n)


def bootstrap_win_rate(winners: pd.Series, *, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(win rate of a, 2.5th, 97.5th percentile of its bootstrap over prompts).

    Each verdict scores 1 (a wins), 0.5 (tie) or 0 (b wins); prompts are resampled with
    replacement ``resamples`` times. A fixed seed keeps the page stable between reruns."""
    score = winners.astype(str).map({"a": 1.0, "tie": 0.5, "b": 0.0}).to_numpy(dtype=float)
    score = score[np.isfinite(score)]
    n = len(score)
    if n == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = score[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(score.mean()), float(lo), float(hi)


def ema(values: pd.Series, weight: float) -> pd.Series:
    """TensorBoard-style exponential moving average with debiasing; weight 0 is the
    identity, weight 0.99 is very smooth. NaNs are carried, not smoothed over."""
    if weight <= 0:
        return values.astype(float)
    out = np.empty(len(values))
    acc, norm = 0.0, 0.0
    for i, v in enumerate(values.to_numpy(dtype=float)):
        if not math.isfinite(v):
            out[i] = v
            continue
        acc = weight * acc + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = acc / norm
    return pd.Series(out, index=values.index)
