"""The statistics gridlab prints, in one place: means with 95% t intervals over jobs, the
Welch interval of a difference, win rates with percentile-bootstrap intervals over prompts,
the range a quantity can take (intervals are clipped to it), each grid factor's effect on a
metric and the interaction of two factors, and curve smoothing.

The dashboard, the terminal reports (``harness.report``, ``gridlab compare``) and the judge
experiment all call these functions, so a figure and its interval read the same wherever
they are printed. The module lives in ``db/`` because that is the one layer every other layer
may import (dashboards may import only ``db``); it holds no SQL and imports no torch: it is
numpy only, and what it computes is about what the results database holds. Everything is
deterministic: bootstraps draw from a seeded generator and resample the sorted values, so
the same verdicts give the same interval in whatever order they were read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95
#: Bootstrap resamples for win rates (the judge job, `gridlab compare` and the dashboard).
RESAMPLES = 10_000
#: Fewer values than this and a chart draws no interval: it says "n=2" instead (a t
#: interval from two jobs is 12.7 standard errors wide; it says nothing).
MIN_N = 3

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


def finite(values: Iterable[Any]) -> np.ndarray:
    """The finite numbers among ``values`` (None, NaN and inf dropped) as a float array."""
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    return x[np.isfinite(x)]


# --- what a quantity can be -----------------------------------------------------------

#: The values a quantity can take, by metric name: (low, high), None where unbounded.
#: Names are matched whole, then by their last part after a "." or "/" (``heldout.acc``),
#: then by suffix (``train_tokens_per_s``); unknown names are unbounded.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "win_rate": (0.0, 1.0),
    "win_rate_a": (0.0, 1.0),
    "win_rate_low": (0.0, 1.0),
    "win_rate_high": (0.0, 1.0),
    "accuracy": (0.0, 1.0),
    "acc": (0.0, 1.0),
    "acc_norm": (0.0, 1.0),
    "exact_match": (0.0, 1.0),
    "rouge1": (0.0, 1.0),
    "rouge2": (0.0, 1.0),
    "rougeL": (0.0, 1.0),
    "bleu": (0.0, 100.0),
    "perplexity": (1.0, None),
    "word_perplexity": (1.0, None),
    "byte_perplexity": (1.0, None),
    "loss": (0.0, None),
    "grad_norm": (0.0, None),
    "learning_rate": (0.0, None),
    "lr": (0.0, None),
    "tokens_per_s": (0.0, None),
    "step_time_s": (0.0, None),
    "latency_s": (0.0, None),
    "params": (0.0, None),
    "trainable_params": (0.0, None),
}
#: Name endings that say what a quantity is, when its whole name is not in RANGES.
_SUFFIXES: tuple[tuple[str, tuple[float | None, float | None]], ...] = (
    ("_accuracy", (0.0, 1.0)),
    ("_perplexity", (1.0, None)),
    ("_loss", (0.0, None)),
    ("_per_s", (0.0, None)),
    ("_latency_s", (0.0, None)),
    ("_time_s", (0.0, None)),
    ("_total_s", (0.0, None)),
    ("_tokens", (0.0, None)),
    ("_params", (0.0, None)),
    ("_rate", (0.0, 1.0)),
    ("_share", (0.0, 1.0)),
)


def quantity_range(name: str) -> tuple[float | None, float | None]:
    """(low, high) a quantity of this name can take; (None, None) if unknown."""
    for candidate in (name, name.replace("/", ".").rsplit(".", 1)[-1]):
        if candidate in RANGES:
            return RANGES[candidate]
    base = name.replace("/", ".").rsplit(".", 1)[-1]
    for suffix, bounds in _SUFFIXES:
        if base.endswith(suffix):
            return bounds
    return (None, None)


def clip(value: float, bounds: tuple[float | None, float | None] | None) -> float:
    """``value`` moved into ``bounds`` (NaN stays NaN)."""
    if bounds is None or value is None or not math.isfinite(value):
        return value
    low, high = bounds
    if low is not None and value < low:
        return float(low)
    if high is not None and value > high:
        return float(high)
    return value


# --- means and differences ------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values and its 95% t interval [low, high], clipped to the range
    of the quantity; low and high are NaN for fewer than two values."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def drawable(self) -> bool:
        """Whether a chart should draw the interval (at least MIN_N values)."""
        return self.n >= MIN_N and math.isfinite(self.low) and math.isfinite(self.high)

    def __str__(self) -> str:
        if not math.isfinite(self.mean):
            return ""
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return f"{self.mean:.4g} (n={self.n})"
        return f"{self.mean:.4g} [{self.low:.4g}, {self.high:.4g}] (n={self.n})"


def mean_ci(values: Iterable[Any]) -> tuple[float, float, int]:
    """(mean, half-width of the 95% t interval, n) of the finite values. The half-width
    is NaN for fewer than two values."""
    x = finite(values)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, n
    return mean, t975(n - 1) * float(x.std(ddof=1)) / math.sqrt(n), n


def mean_interval(values: Iterable[Any], bounds: tuple[float | None, float | None] | None = None) -> Interval:
    """The mean and its 95% t interval, the interval clipped to ``bounds`` (a quantity's
    range, see quantity_range): no negative throughput, no accuracy above 1."""
    mean, half, n = mean_ci(values)
    return Interval(mean, clip(mean - half, bounds), clip(mean + half, bounds), n)


def diff_ci(a: Iterable[Any], b: Iterable[Any]) -> tuple[float, float]:
    """(mean(a) - mean(b), half-width of its 95% Welch interval)."""
    x, y = finite(a), finite(b)
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


# --- win rates ------------------------------------------------------------------------

#: A verdict's score for arm a.
SCORES = {"a": 1.0, "b": 0.0, "tie": 0.5}


def scores(winners: Iterable[Any], *, strict: bool = True) -> np.ndarray:
    """Each verdict ('a', 'b' or 'tie') as arm a's score. ``strict``: anything else is a
    ValueError; otherwise it is left out."""
    out = []
    for w in winners:
        if w in SCORES:
            out.append(SCORES[w])
        elif strict:
            raise ValueError(f"a verdict is 'a', 'b' or 'tie', got {w!r}")
    return np.asarray(out, dtype=float)


def win_rate(winners: Iterable[Any]) -> float:
    """Share of wins for arm a, a tie counting half: (wins + ties / 2) / n."""
    s = scores(winners, strict=False)
    return float(s.mean()) if len(s) else math.nan


#: At most this many distinct values, a bootstrap draws resamples as multinomial counts.
FEW_DISTINCT = 16


def bootstrap(values: Iterable[Any], *, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
              seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean of the finite values and its percentile-bootstrap
    interval (``resamples`` resamples with replacement, generator seeded with ``seed``).

    A resample of n values drawn with replacement holds each distinct value a
    multinomial number of times; where there are few distinct values (three for
    verdicts: 0, 1/2, 1) that is how it is drawn, one multinomial draw per resample
    rather than n draws. Otherwise n indices are drawn into the sorted values. Either
    way the values are taken in sorted order, so their order does not change the
    interval."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    x = finite(values)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan
    distinct, counts = np.unique(x, return_counts=True)
    rng = np.random.default_rng(seed)
    if len(distinct) <= FEW_DISTINCT:
        means = rng.multinomial(n, counts / n, size=resamples) @ distinct / n
    else:
        means = np.sort(x)[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(x.mean()), float(low), float(high)


def bootstrap_win_rate(winners: Iterable[Any], *, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                       seed: int = 0) -> tuple[float, float, float]:
    """(win rate of a, low, high): the bootstrap over prompts of the verdicts' scores
    (verdicts other than 'a', 'b', 'tie' are left out)."""
    return bootstrap(scores(winners, strict=False), resamples=resamples, confidence=confidence, seed=seed)


# --- factor effects -------------------------------------------------------------------


def level_key(value: Any) -> Hashable:
    """A factor value as a dict key (lists and dicts as their JSON text)."""
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, sort_keys=True)
    return value


def ordered_levels(values: Iterable[Any]) -> list[Any]:
    """Distinct values in a natural order: numbers by value, the rest by text."""
    distinct = list(dict.fromkeys(level_key(v) for v in values if v is not None
                                  and not (isinstance(v, float) and math.isnan(v))))
    try:
        return sorted(distinct)
    except TypeError:
        return sorted(distinct, key=str)


@dataclass(frozen=True)
class FactorEffect:
    """One factor's effect on a metric: per level, the mean and 95% interval over every job
    at that level (the rest of the grid pooled); ``eta_squared``, the share of the metric's
    variance across these jobs that the factor's levels explain alone (0: none, 1: all);
    ``spread``, the largest level mean minus the smallest."""

    factor: str
    levels: tuple[tuple[Any, Interval], ...]
    eta_squared: float
    spread: float

    @property
    def n(self) -> int:
        return sum(i.n for _, i in self.levels)


Row = tuple[Mapping[str, Any], Any]


def factor_effect(rows: Sequence[Row], factor: str,
                  bounds: tuple[float | None, float | None] | None = None) -> FactorEffect:
    """The effect of ``factor`` over ``rows`` (factors, value): jobs without the factor or
    without a finite value are left out."""
    groups: dict[Hashable, list[float]] = {}
    for factors, value in rows:
        if factor not in factors or value is None:
            continue
        v = float(value)
        if math.isfinite(v):
            groups.setdefault(level_key(factors[factor]), []).append(v)
    levels = tuple((level, mean_interval(groups[level], bounds)) for level in ordered_levels(groups))
    every = np.asarray([v for vs in groups.values() for v in vs], dtype=float)
    if len(every) == 0:
        return FactorEffect(factor, levels, math.nan, math.nan)
    grand = every.mean()
    total = float(((every - grand) ** 2).sum())
    between = float(sum(len(vs) * (np.mean(vs) - grand) ** 2 for vs in groups.values()))
    means = [i.mean for _, i in levels]
    return FactorEffect(factor, levels, between / total if total > 0 else math.nan, float(max(means) - min(means)))


def factor_effects(rows: Sequence[Row], factors: Iterable[str] | None = None,
                   bounds: tuple[float | None, float | None] | None = None) -> list[FactorEffect]:
    """Every factor's effect (the factors with at least two levels among ``rows``, or those
    named), the largest eta squared first: which factors matter, before any pivot."""
    if factors is None:
        names: list[str] = []
        for f, _ in rows:
            names.extend(k for k in f if k not in names)
        factors = names
    effects = [factor_effect(rows, name, bounds) for name in factors]
    effects = [e for e in effects if len(e.levels) >= 2]
    return sorted(effects, key=lambda e: (-(e.eta_squared if math.isfinite(e.eta_squared) else -1.0), e.factor))


def interaction(rows: Sequence[Row], row_factor: str, column_factor: str,
                bounds: tuple[float | None, float | None] | None = None) -> dict[tuple[Any, Any], Interval]:
    """Per (level of ``row_factor``, level of ``column_factor``): the mean and 95% interval
    of the jobs at both, in the levels' natural order."""
    cells: dict[tuple[Hashable, Hashable], list[float]] = {}
    for factors, value in rows:
        if row_factor not in factors or column_factor not in factors or value is None:
            continue
        v = float(value)
        if math.isfinite(v):
            cells.setdefault((level_key(factors[row_factor]), level_key(factors[column_factor])), []).append(v)
    row_levels = ordered_levels(r for r, _ in cells)
    col_levels = ordered_levels(c for _, c in cells)
    return {(r, c): mean_interval(cells[(r, c)], bounds) for r in row_levels for c in col_levels if (r, c) in cells}


# --- curves ---------------------------------------------------------------------------


def ema(values: Iterable[Any], weight: float) -> np.ndarray:
    """TensorBoard-style exponential moving average with debiasing; weight 0 is the
    identity, weight 0.99 is very smooth. NaNs are carried, not smoothed over."""
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    if weight <= 0:
        return x.copy()
    out = np.empty(len(x))
    acc, norm = 0.0, 0.0
    for i, v in enumerate(x):
        if not math.isfinite(v):
            out[i] = v
            continue
        acc = weight * acc + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = acc / norm
    return out
