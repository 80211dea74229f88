"""The statistics gridlab prints, in one place: means with 95% t intervals over jobs, the
Welch interval of a difference, the paired t test over seeds, the exact binomial test of wins
against losses, win rates with percentile-bootstrap intervals over prompts or over questions
(a cluster bootstrap: a question's turns are resampled together), the change of one arm's
rate over another's (tokens per second) resampling the prompts both answered,
the range a quantity can take (intervals are clipped to it), each grid factor's effect on a
metric and the interaction of two factors, and curve smoothing.

The dashboard, the terminal reports (``harness.report``, ``gridlab compare``, ``gridlab report``) and the judge
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


# --- tests and resampling by cluster (gridlab report, gridlab compare, the dashboard) -----


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom (NaN for df < 1)."""
    if not df >= 1 or math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    return incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


@dataclass(frozen=True)
class PairedTest:
    """The mean of paired differences b - a over ``n`` pairs, its 95% t interval, and the
    paired t test of "no difference": t and its two-sided p. low, high, t and p are NaN for
    fewer than two pairs (the report prints "n/a")."""

    mean: float
    low: float
    high: float
    t: float
    p: float
    n: int


def paired_t(a: Mapping[Hashable, Any], b: Mapping[Hashable, Any]) -> PairedTest:
    """The paired t test of ``b - a`` over the keys both have finite values for (a seed, say:
    arms that share their seed share their data order and initialisation). Differences that are
    all equal give a zero-width interval and p = 0 (1 if they are all zero)."""
    keys = [k for k in a if k in b and a[k] is not None and b[k] is not None
            and math.isfinite(float(a[k])) and math.isfinite(float(b[k]))]
    d = np.asarray([float(b[k]) - float(a[k]) for k in keys], dtype=float)
    n = len(d)
    if n == 0:
        return PairedTest(math.nan, math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(d.mean())
    if n < 2:
        return PairedTest(mean, math.nan, math.nan, math.nan, math.nan, n)
    se = float(d.std(ddof=1)) / math.sqrt(n)
    if se == 0.0:
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
        return PairedTest(mean, mean, mean, t, 1.0 if mean == 0.0 else 0.0, n)
    half = t975(n - 1) * se
    t = mean / se
    return PairedTest(mean, mean - half, mean + half, t, t_two_sided_p(t, n - 1), n)


def binomial_p(wins: int, losses: int) -> float:
    """The exact two-sided binomial test of "each side is as likely to win" over the decided
    verdicts (ties left out): the probability under Binomial(wins + losses, 1/2) of an outcome
    no likelier than the one seen. 1.0 when nothing was decided."""
    n = int(wins) + int(losses)
    if n == 0:
        return 1.0
    pmf = [math.comb(n, k) / 2.0**n for k in range(n + 1)]
    seen = pmf[int(wins)]
    return float(min(1.0, sum(p for p in pmf if p <= seen * (1 + 1e-9))))


def _cluster_sums(columns: Sequence[Sequence[Any]], clusters: Sequence[Hashable]) -> np.ndarray:
    """Per cluster (in the clusters' sorted order), the sum of each column: (clusters, columns)."""
    keys = [level_key(c) for c in clusters]
    order = sorted(set(keys), key=lambda k: (str(type(k)), str(k)))
    index = {k: i for i, k in enumerate(order)}
    sums = np.zeros((len(order), len(columns)), dtype=float)
    for j, column in enumerate(columns):
        values = np.asarray(column, dtype=float)
        np.add.at(sums[:, j], [index[k] for k in keys], values)
    return sums


def cluster_resamples(sums: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0,
                      chunk: int = 1000) -> np.ndarray:
    """``resamples`` bootstrap resamples of the clusters (rows of ``sums``), drawn with
    replacement: each resample's column totals, (resamples, columns). Seeded, so the same
    clusters give the same totals."""
    rng = np.random.default_rng(seed)
    n = len(sums)
    out = np.empty((resamples, sums.shape[1]))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=size)
        out[start:start + size] = counts @ sums
    return out


def cluster_bootstrap(values: Sequence[Any], clusters: Sequence[Hashable], *, weights: Sequence[Any] | None = None,
                      resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                      seed: int = 0) -> tuple[float, float, float]:
    """(estimate, low, high): sum(values) / sum(weights) (weights default to 1: the mean) and
    its percentile-bootstrap interval resampling whole clusters, not values: a question's turns
    (turn 2 is asked after turn 1's answer) are drawn together. Where every cluster holds one
    value and there are no weights, this is :func:`bootstrap` (the same interval, drawn the same
    way). Values that are not finite are left out with their weights."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    v = np.asarray(list(values), dtype=float)
    w = np.ones(len(v)) if weights is None else np.asarray(list(weights), dtype=float)
    keys = list(clusters)
    if not len(v) == len(w) == len(keys):
        raise ValueError(f"values, weights and clusters differ in length: {len(v)}, {len(w)}, {len(keys)}")
    keep = np.isfinite(v) & np.isfinite(w)
    v, w = v[keep], w[keep]
    keys = [k for k, kept in zip(keys, keep) if kept]
    if len(v) == 0 or w.sum() == 0:
        return math.nan, math.nan, math.nan
    if weights is None and len({level_key(k) for k in keys}) == len(keys):
        return bootstrap(v, resamples=resamples, confidence=confidence, seed=seed)
    totals = cluster_resamples(_cluster_sums([v, w], keys), resamples=resamples, seed=seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        estimates = totals[:, 0] / totals[:, 1]
    alpha = (1.0 - confidence) / 2
    low, high = np.nanquantile(estimates, [alpha, 1.0 - alpha])
    return float(v.sum() / w.sum()), float(low), float(high)


def bootstrap_win_rate_by_question(winners: Sequence[Any], questions: Sequence[Hashable], *,
                                   resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                                   seed: int = 0) -> tuple[float, float, float]:
    """(win rate of a, low, high): the verdicts' mean score with an interval that resamples
    questions (all the turns of a question, under every seed that judged it, together).
    Verdicts other than 'a', 'b', 'tie' are left out."""
    pairs = [(SCORES[w], q) for w, q in zip(winners, questions) if w in SCORES]
    return cluster_bootstrap([s for s, _ in pairs], [q for _, q in pairs], resamples=resamples,
                             confidence=confidence, seed=seed)


def cluster_ratio_change(a: tuple[Sequence[Any], Sequence[Any], Sequence[Hashable]],
                         b: tuple[Sequence[Any], Sequence[Any], Sequence[Hashable]], *,
                         resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                         seed: int = 0) -> tuple[float, float, float]:
    """(change, low, high) of rate b over rate a, rate = sum(numerators) / sum(denominators)
    (tokens per second: tokens over seconds), as ``rate_b / rate_a - 1``, with a bootstrap that
    resamples the clusters (prompts) both arms answered, each prompt's answers of both arms
    drawn together. ``a`` and ``b``: (numerators, denominators, clusters)."""
    shared = {level_key(k) for k in a[2]} & {level_key(k) for k in b[2]}
    if not shared:
        return math.nan, math.nan, math.nan
    columns: list[list[float]] = [[], [], [], []]
    keys: list[Hashable] = []
    for offset, (num, den, clusters) in ((0, a), (2, b)):
        for x, y, k in zip(num, den, clusters):
            if level_key(k) in shared and math.isfinite(float(x)) and math.isfinite(float(y)):
                keys.append(k)
                columns[offset].append(float(x))
                columns[offset + 1].append(float(y))
                columns[2 - offset].append(0.0)
                columns[3 - offset].append(0.0)
    sums = _cluster_sums(columns, keys)
    point = sums.sum(axis=0)
    totals = cluster_resamples(sums, resamples=resamples, seed=seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = (totals[:, 2] / totals[:, 3]) / (totals[:, 0] / totals[:, 1]) - 1.0
    alpha = (1.0 - confidence) / 2
    low, high = np.nanquantile(change, [alpha, 1.0 - alpha])
    return float((point[2] / point[3]) / (point[0] / point[1]) - 1.0), float(low), float(high)
