"""Retry policy: after a failed attempt, try again, and when.

Exponential backoff from the job's ``backoff_s``: the n-th failure waits
``backoff_s * 2**(n-1)`` seconds, capped at :data:`MAX_BACKOFF_S`. A job lost to the
infrastructure (its worker died, its node failed, it was preempted) is retried at
once: nothing about the job says waiting helps. A diverged job (NaN/inf loss) is a
finding, not a fault, and a job whose own input is invalid (a corrupted data file)
cannot succeed by trying again: neither is retried.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs import states

MAX_BACKOFF_S = 3600.0


@dataclass(frozen=True)
class Decision:
    retry: bool
    delay_s: float
    state: str  # the state the job moves to


def decide(*, attempts: int, max_attempts: int, backoff_s: float, outcome: str) -> Decision:
    """What to do after attempt number ``attempts`` ended with ``outcome``."""
    if outcome == states.OUTCOME_DIVERGED:
        return Decision(retry=False, delay_s=0.0, state=states.DIVERGED)
    if outcome == states.OUTCOME_INVALID or attempts >= max_attempts:
        return Decision(retry=False, delay_s=0.0, state=states.FAILED)
    if outcome in states.INFRASTRUCTURE_OUTCOMES:
        return Decision(retry=True, delay_s=0.0, state=states.PENDING)
    delay = min(backoff_s * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S)
    return Decision(retry=True, delay_s=delay, state=states.PENDING)
