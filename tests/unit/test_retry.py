"""The retry policy's decisions."""

from __future__ import annotations

import pytest

from jobs import retry, states

pytestmark = pytest.mark.unit


def test_backoff_doubles_per_attempt_and_is_capped():
    delays = [retry.decide(attempts=n, max_attempts=100, backoff_s=10, outcome="error").delay_s for n in (1, 2, 3)]
    assert delays == [10, 20, 40]
    assert retry.decide(attempts=50, max_attempts=100, backoff_s=10, outcome="error").delay_s == retry.MAX_BACKOFF_S


def test_limit_reached_means_failed():
    d = retry.decide(attempts=3, max_attempts=3, backoff_s=1, outcome="error")
    assert (d.retry, d.state) == (False, states.FAILED)


def test_divergence_is_never_retried():
    d = retry.decide(attempts=1, max_attempts=9, backoff_s=1, outcome=states.OUTCOME_DIVERGED)
    assert (d.retry, d.state) == (False, states.DIVERGED)


def test_infrastructure_losses_retry_at_once():
    for outcome in (states.OUTCOME_LEASE_EXPIRED, states.OUTCOME_PREEMPTED, states.OUTCOME_NODE_FAIL):
        d = retry.decide(attempts=2, max_attempts=5, backoff_s=60, outcome=outcome)
        assert (d.retry, d.delay_s) == (True, 0.0)


def test_invalid_input_is_not_retried():
    d = retry.decide(attempts=1, max_attempts=5, backoff_s=1, outcome=states.OUTCOME_INVALID)
    assert (d.retry, d.state) == (False, states.FAILED)
