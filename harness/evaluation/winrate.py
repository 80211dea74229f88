"""Win rates from stored verdicts, with bootstrap confidence intervals.

A verdict scores 1 for a win of arm a, 0 for a loss and 1/2 for a tie; the win rate is the mean
score. Its interval is the percentile bootstrap over prompts (``iterations`` resamples, a fixed
seed so the same rows always print the same interval).

Across seeds the view is *paired*: the same prompt judged under several seeds is one unit, not
several independent ones. :func:`paired` averages each prompt's score over the seeds that judged
it and bootstraps over prompts, next to each seed's own rate.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

SCORES = {"a": 1.0, "b": 0.0, "tie": 0.5}


@dataclass(frozen=True)
class WinRate:
    """Arm a's win rate over arm b."""

    wins: int
    losses: int
    ties: int
    rate: float
    low: float
    high: float
    confidence: float

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties

    def __str__(self) -> str:
        return (f"{self.rate:.1%} [{self.low:.1%}, {self.high:.1%}] "
                f"({self.wins}-{self.losses}-{self.ties} of {self.n})")


def win_rate(winners: Sequence[str], *, iterations: int = 10_000, confidence: float = 0.95, seed: int = 0) -> WinRate:
    """Win rate of arm a from verdicts ``'a'``, ``'b'``, ``'tie'``, one per prompt."""
    scores = [_score(w) for w in winners]
    return _rate(scores, scores, iterations=iterations, confidence=confidence, seed=seed)


@dataclass(frozen=True)
class Paired:
    per_seed: dict[Hashable, WinRate]
    pooled: WinRate  # prompts paired across seeds
    prompts: int
    seeds_favouring_a: int  # seeds whose own rate is above one half


def paired(
    by_seed: Mapping[Hashable, Mapping[Hashable, str]],
    *,
    iterations: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Paired:
    """``by_seed``: seed -> {prompt key: winner}. Each prompt's score is averaged over the seeds
    that judged it; the pooled interval bootstraps those per-prompt means."""
    per_seed = {
        s: win_rate(list(verdicts.values()), iterations=iterations, confidence=confidence, seed=seed)
        for s, verdicts in by_seed.items()
    }
    per_prompt: dict[Hashable, list[float]] = {}
    every: list[float] = []
    for verdicts in by_seed.values():
        for key, winner in verdicts.items():
            per_prompt.setdefault(key, []).append(_score(winner))
            every.append(_score(winner))
    means = [sum(v) / len(v) for v in per_prompt.values()]
    pooled = _rate(means, every, iterations=iterations, confidence=confidence, seed=seed)
    favouring = sum(1 for r in per_seed.values() if r.rate > 0.5)
    return Paired(per_seed=per_seed, pooled=pooled, prompts=len(per_prompt), seeds_favouring_a=favouring)


def _score(winner: str) -> float:
    try:
        return SCORES[winner]
    except KeyError:
        raise ValueError(f"a verdict is 'a', 'b' or 'tie', got {winner!r}") from None


def _rate(units: Sequence[float], verdicts: Sequence[float], *, iterations: int, confidence: float, seed: int) -> WinRate:
    """Mean of ``units`` with a percentile bootstrap interval; counts from ``verdicts``."""
    import numpy as np

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    wins = sum(1 for v in verdicts if v == 1.0)
    losses = sum(1 for v in verdicts if v == 0.0)
    ties = len(verdicts) - wins - losses
    if not units:
        nan = float("nan")
        return WinRate(wins, losses, ties, nan, nan, nan, confidence)
    values = np.asarray(units, dtype=float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(values), size=(iterations, len(values)))
    means = values[draws].mean(axis=1)
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return WinRate(wins, losses, ties, float(values.mean()), float(low), float(high), confidence)
