"""Job states for the queue: the states themselves (defined once, in :mod:`db.states`, and
re-exported here) and how an attempt ends (``attempts.outcome``), which the queue and its
retry policy (:mod:`jobs.retry`) decide on."""

from __future__ import annotations

from db.states import (  # noqa: F401  (re-exported: the queue's callers read states from here)
    ALL,
    CANCELLABLE,
    CANCELLED,
    DIVERGED,
    FAILED,
    FINAL,
    PENDING,
    RETRYABLE,
    RUNNING,
    SUCCEEDED,
    UNSUCCESSFUL,
)

# How an attempt ended (attempts.outcome).
OUTCOME_SUCCEEDED = "succeeded"
OUTCOME_ERROR = "error"
OUTCOME_DIVERGED = "diverged"
OUTCOME_LEASE_EXPIRED = "lease_expired"
OUTCOME_CANCELLED = "cancelled"
OUTCOME_PREEMPTED = "preempted"
OUTCOME_TIMEOUT = "timeout"
OUTCOME_NODE_FAIL = "node_fail"
OUTCOME_OOM = "oom"
OUTCOME_STOPPED = "stopped"
OUTCOME_INVALID = "invalid"  # the job's own input is wrong (a bad data file...): retrying cannot help
OUTCOME_NETWORK = "network"  # a download, the hub or another remote service failed for now
OUTCOME_DATABASE = "database"  # the results database was unreachable for longer than the worker waits
OUTCOME_DISK = "disk"  # the disk was full (or failed) under the job

#: Outcomes caused by the infrastructure, not the job: retried at once, no backoff
#: (jobs.retry.POLICY is the whole table).
INFRASTRUCTURE_OUTCOMES = (OUTCOME_LEASE_EXPIRED, OUTCOME_PREEMPTED, OUTCOME_TIMEOUT, OUTCOME_NODE_FAIL, OUTCOME_STOPPED)
#: Passing troubles: retried with backoff.
TRANSIENT_OUTCOMES = (OUTCOME_NETWORK, OUTCOME_DATABASE, OUTCOME_DISK)
