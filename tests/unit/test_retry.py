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


# --- classification: the failure's class is data, decided by tables, not by a base class ---------


def _classes():
    import errno
    import socket
    import urllib.error

    from db.errors import DatabaseUnavailable, GridlabError
    from harness.data.errors import DataError, DataUnavailable
    from harness.evaluation.errors import PromptFileError, RankerError, RankerUnavailable
    from harness.models.registry import ModelUnavailable, UnknownModel
    from harness.params import InvalidSpec

    return [
        (DataError("bad.jsonl: 90% of lines unreadable"), states.OUTCOME_INVALID),
        (DataUnavailable("tatsu-lab/alpaca: connection reset"), states.OUTCOME_NETWORK),
        (UnknownModel("gpt-7"), states.OUTCOME_INVALID),
        (ModelUnavailable("could not load 'gpt2' (timeout)"), states.OUTCOME_NETWORK),
        (ModelUnavailable("/models/x has no weights", outcome=states.OUTCOME_INVALID), states.OUTCOME_INVALID),
        (PromptFileError("prompts.jsonl: not MT-Bench format"), states.OUTCOME_INVALID),
        (RankerError("ranker config.json lacks ranker_type"), states.OUTCOME_INVALID),
        (RankerUnavailable("backbone not on this machine"), states.OUTCOME_NETWORK),
        (InvalidSpec("packing with an encoder-decoder"), states.OUTCOME_INVALID),
        (DatabaseUnavailable("cannot reach database"), states.OUTCOME_DATABASE),
        (ConnectionResetError("reset by peer"), states.OUTCOME_NETWORK),
        (TimeoutError("read timed out"), states.OUTCOME_NETWORK),
        (socket.gaierror("name resolution"), states.OUTCOME_NETWORK),
        (urllib.error.URLError("unreachable"), states.OUTCOME_NETWORK),
        (OSError(errno.ENOSPC, "No space left on device"), states.OUTCOME_DISK),
        (OSError(errno.ENOENT, "No such file"), states.OUTCOME_ERROR),
        (GridlabError("a user-fixable error that declares no class"), states.OUTCOME_ERROR),
        (RuntimeError("CUDA error: an illegal memory access"), states.OUTCOME_ERROR),
        (ZeroDivisionError(), states.OUTCOME_ERROR),
    ]


def test_classify_puts_each_failure_in_its_class():
    got = [(type(e).__name__, retry.classify(e).outcome) for e, _ in _classes()]
    assert got == [(type(e).__name__, want) for e, want in _classes()]
    assert retry.classify(OSError(28, "full")).error_type == "builtins.OSError"


def test_every_outcome_has_a_policy_and_transient_ones_back_off():
    outcomes = {v for k, v in vars(states).items() if k.startswith("OUTCOME_")} - {states.OUTCOME_SUCCEEDED}
    assert outcomes - set(retry.POLICY) == set(), "an outcome without a policy"
    for outcome in states.TRANSIENT_OUTCOMES + (states.OUTCOME_ERROR,):
        d = retry.decide(attempts=2, max_attempts=5, backoff_s=10, outcome=outcome)
        assert (d.retry, d.delay_s, d.state) == (True, 20, states.PENDING), outcome
    never = sorted(o for o, p in retry.POLICY.items() if p == retry.NEVER)
    assert never == sorted([states.OUTCOME_INVALID, states.OUTCOME_DIVERGED, states.OUTCOME_CANCELLED])


def test_the_marker_invariant_sees_an_overlap(tmp_path):
    """tests/faults/invariants.check_markers must fail when attempt 1 confirmed a write after
    attempt 2 started (the double run a zombie would make if fencing broke)."""
    from jobs import runs
    from tests.faults import invariants

    run = tmp_path / "g-12345678" / "job-1-abc"
    for attempt, times in ((1, [(0.0, "start"), (5.0, "metrics")]), (2, [(3.0, "start"), (6.0, "end")])):
        marker = runs.Marker(runs.attempt_dir(run, attempt) / runs.MARKER, attempt=attempt, owner=f"w{attempt}")
        for t, event in times:
            with open(marker.path, "a") as f:
                f.write(f'{{"attempt": {attempt}, "event": "{event}", "t": {t}}}\n')
    with pytest.raises(AssertionError, match="attempt 1 still wrote 2.000s after attempt 2 started"):
        invariants.check_markers(tmp_path)
