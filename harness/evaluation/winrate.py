"""Win rates from stored verdicts, with bootstrap confidence intervals.

A verdict scores 1 for a win of arm a, 0 for a loss and 1/2 for a tie; the win rate is the mean
score. Its interval is the percentile bootstrap over prompts (``iterations`` resamples, a fixed
seed so the same rows always print the same interval), computed by :mod:`db.stats`, the one
statistics module the dashboard also uses: `gridlab compare` and the dashboard print the same
interval for the same verdicts.

Across seeds the view is *paired*: the same prompt judged under several seeds is one unit, not
several independent ones. :func:`paired` averages each prompt's score over the seeds that judged
it and bootstraps over prompts, next to each seed's own rate.

Turns are not independent (turn 2 is asked after the model's answer to turn 1): given each
verdict's question (``questions=``, or ``cluster=`` for :func:`paired`), the interval resamples
questions, every turn of a question (under every seed) drawn together
(:func:`db.stats.bootstrap_win_rate_by_question`, as ``gridlab report`` and the dashboard do).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

from db import stats

SCORES = stats.SCORES


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


def win_rate(winners: Sequence[str], *, questions: Sequence[Hashable] | None = None,
             iterations: int = stats.RESAMPLES, confidence: float = stats.CONFIDENCE, seed: int = 0) -> WinRate:
    """Win rate of arm a from verdicts ``'a'``, ``'b'``, ``'tie'``, one per prompt and turn;
    ``questions``: each verdict's question, resampled whole (None: each verdict is its own)."""
    scores = [_score(w) for w in winners]
    if questions is not None:
        rate, low, high = stats.cluster_bootstrap(scores, list(questions), resamples=iterations,
                                                  confidence=confidence, seed=seed)
        return _counted(scores, rate, low, high, confidence)
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
    iterations: int = stats.RESAMPLES,
    confidence: float = stats.CONFIDENCE,
    seed: int = 0,
    cluster: Callable[[Hashable], Hashable] | None = None,
) -> Paired:
    """``by_seed``: seed -> {prompt key: winner}. Each prompt's score is averaged over the seeds
    that judged it; the pooled interval bootstraps those per-prompt means. ``cluster``: a prompt
    key's question (e.g. the key without its turn); then every interval resamples questions, each
    with all its turns under every seed, and the pooled rate is the mean of every verdict."""
    def questions(keys):
        return None if cluster is None else [cluster(k) for k in keys]

    per_seed = {
        s: win_rate(list(verdicts.values()), questions=questions(verdicts), iterations=iterations,
                    confidence=confidence, seed=seed)
        for s, verdicts in by_seed.items()
    }
    per_prompt: dict[Hashable, list[float]] = {}
    every: list[float] = []
    for verdicts in by_seed.values():
        for key, winner in verdicts.items():
            per_prompt.setdefault(key, []).append(_score(winner))
            every.append(_score(winner))
    if cluster is not None:
        keys = [k for verdicts in by_seed.values() for k in verdicts]
        rate, low, high = stats.cluster_bootstrap(every, questions(keys), resamples=iterations,
                                                  confidence=confidence, seed=seed)
        pooled = _counted(every, rate, low, high, confidence)
    else:
        means = [sum(v) / len(v) for v in per_prompt.values()]
        pooled = _rate(means, every, iterations=iterations, confidence=confidence, seed=seed)
    favouring = sum(1 for r in per_seed.values() if r.rate > 0.5)
    return Paired(per_seed=per_seed, pooled=pooled, prompts=len(per_prompt), seeds_favouring_a=favouring)


def _score(winner: str) -> float:
    return float(stats.scores([winner])[0])  # ValueError for anything but 'a', 'b', 'tie'


def _rate(units: Sequence[float], verdicts: Sequence[float], *, iterations: int, confidence: float, seed: int) -> WinRate:
    """Mean of ``units`` with its percentile bootstrap interval (db.stats.bootstrap); counts
    from ``verdicts``."""
    rate, low, high = stats.bootstrap(units, resamples=iterations, confidence=confidence, seed=seed)
    return _counted(verdicts, rate, low, high, confidence)


def _counted(verdicts: Sequence[float], rate: float, low: float, high: float, confidence: float) -> WinRate:
    wins = sum(1 for v in verdicts if v == 1.0)
    losses = sum(1 for v in verdicts if v == 0.0)
    ties = len(verdicts) - wins - losses
    return WinRate(wins, losses, ties, rate, low, high, confidence)
