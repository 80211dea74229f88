"""Retry policy: what a failure is, whether to try again, and when.

Two tables decide, not an exception's base class (after procrastinate's ``RetryStrategy``):

- :func:`classify` turns the exception that ended an attempt into an *outcome*, stored on the
  attempt as data (``attempts.outcome``, with the exception's type in ``attempts.error_type``).
  An exception may say what it is with a class attribute ``outcome`` (the project's own errors
  do: a corrupted data file is ``invalid``, a hub download that failed is ``network``), and one
  that stands for another process's failure also which type that was (``error_type``: a rank of
  a job run as N ranks, :class:`jobs.ranks.RankFailed`);
  otherwise :data:`TRANSIENT_TYPES` maps well-known types by their qualified name (so this
  module imports none of the libraries), and ``OSError`` by errno (a full disk is ``disk``).
  Anything else is ``error``.
- :data:`POLICY` says, per outcome, what happens next:

  ===================  =====================================================================
  ``never``            not retried: ``invalid`` (the job's own input is wrong: trying again
                       cannot help) and ``diverged`` (NaN/inf loss: a finding, not a fault)
  ``backoff``          retried after ``backoff_s * 2**(n-1)`` s (capped at
                       :data:`MAX_BACKOFF_S`): ``error`` and the transient ``network``,
                       ``database`` and ``disk``
  ``at_once``          retried with no wait: the infrastructure lost the job (its worker died,
                       its node failed, it was preempted, its time ran out, it was stopped)
  ===================  =====================================================================

Every retry counts against the job's ``max_attempts`` except a release (preemption, a worker
stopping), which hands the job back without blame.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from jobs import states

MAX_BACKOFF_S = 3600.0

NEVER, BACKOFF, AT_ONCE = "never", "backoff", "at_once"

#: Outcome -> what happens next.
POLICY: dict[str, str] = {
    states.OUTCOME_INVALID: NEVER,
    states.OUTCOME_DIVERGED: NEVER,
    states.OUTCOME_ERROR: BACKOFF,
    states.OUTCOME_NETWORK: BACKOFF,
    states.OUTCOME_DATABASE: BACKOFF,
    states.OUTCOME_DISK: BACKOFF,
    states.OUTCOME_LEASE_EXPIRED: AT_ONCE,
    states.OUTCOME_PREEMPTED: AT_ONCE,
    states.OUTCOME_TIMEOUT: AT_ONCE,
    states.OUTCOME_NODE_FAIL: AT_ONCE,
    states.OUTCOME_STOPPED: AT_ONCE,
    states.OUTCOME_OOM: BACKOFF,
    states.OUTCOME_CANCELLED: NEVER,
}

#: Exception types (by module-qualified name, matched anywhere in the exception's MRO) that
#: are passing troubles of the network or a remote service: retried with backoff.
TRANSIENT_TYPES: dict[str, str] = {
    "builtins.ConnectionError": states.OUTCOME_NETWORK,
    "builtins.TimeoutError": states.OUTCOME_NETWORK,
    "socket.gaierror": states.OUTCOME_NETWORK,
    "urllib.error.URLError": states.OUTCOME_NETWORK,
    "http.client.HTTPException": states.OUTCOME_NETWORK,
    "requests.exceptions.ConnectionError": states.OUTCOME_NETWORK,
    "requests.exceptions.Timeout": states.OUTCOME_NETWORK,
    "httpx.TransportError": states.OUTCOME_NETWORK,
    "huggingface_hub.errors.HfHubHTTPError": states.OUTCOME_NETWORK,
    "huggingface_hub.errors.OfflineModeIsEnabled": states.OUTCOME_NETWORK,
    "db.errors.DatabaseUnavailable": states.OUTCOME_DATABASE,
}

#: OSError errnos that mean the machine, not the job, is short of something.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})


@dataclass(frozen=True)
class Decision:
    retry: bool
    delay_s: float
    state: str  # the state the job moves to


@dataclass(frozen=True)
class Failure:
    """How an attempt failed: its outcome (the retry class) and the exception's type."""

    outcome: str
    error_type: str


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def classify(exc: BaseException) -> Failure:
    """The outcome of an attempt that ``exc`` ended (see the module's tables)."""
    name = qualified_name(type(exc))
    declared = getattr(exc, "outcome", None)
    if isinstance(declared, str) and declared in POLICY:
        stands_for = getattr(exc, "error_type", None)
        return Failure(declared, stands_for if isinstance(stands_for, str) and stands_for else name)
    for cls in type(exc).__mro__:
        found = TRANSIENT_TYPES.get(qualified_name(cls))
        if found:
            return Failure(found, name)
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
        return Failure(states.OUTCOME_DISK, name)
    return Failure(states.OUTCOME_ERROR, name)


def decide(*, attempts: int, max_attempts: int, backoff_s: float, outcome: str) -> Decision:
    """What to do after attempt number ``attempts`` ended with ``outcome``."""
    policy = POLICY.get(outcome, BACKOFF)
    if policy == NEVER:
        state = states.DIVERGED if outcome == states.OUTCOME_DIVERGED else states.FAILED
        return Decision(retry=False, delay_s=0.0, state=state)
    if attempts >= max_attempts:
        return Decision(retry=False, delay_s=0.0, state=states.FAILED)
    if policy == AT_ONCE:
        return Decision(retry=True, delay_s=0.0, state=states.PENDING)
    delay = min(backoff_s * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S)
    return Decision(retry=True, delay_s=delay, state=states.PENDING)
