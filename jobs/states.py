r"""The states a job moves through, and which moves are allowed.

    pending --claim--> running --complete--> succeeded
       ^                 |  \--fail (attempts left)--> pending (after a backoff)
       |                 |  \--fail (no attempts left)--> failed
       |                 |  \--diverge--> diverged      (NaN/inf loss: not retried)
       |                 \--release (preempted, stopped)--> pending
       +--- retry ---  failed | diverged | cancelled
    pending | running --cancel--> cancelled
"""

from __future__ import annotations

PENDING = "pending"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
DIVERGED = "diverged"
CANCELLED = "cancelled"

ALL = (PENDING, RUNNING, SUCCEEDED, FAILED, DIVERGED, CANCELLED)
#: States a job never leaves by itself.
FINAL = (SUCCEEDED, FAILED, DIVERGED, CANCELLED)
#: States `gridlab retry` takes a job out of.
RETRYABLE = (FAILED, DIVERGED, CANCELLED)
#: States `gridlab cancel` takes a job out of.
CANCELLABLE = (PENDING, RUNNING)

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
