r"""The states a job can be in, defined once: their names, their groups, their colours.

Every layer reads them from here (the dashboard may import only ``db/``);
:mod:`jobs.states` re-exports them beside the attempt outcomes and the moves the queue
makes between states. Alembic migrations keep their own literals (a migration is frozen
in time).

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

#: Every state, in the order tables and legends show them.
ALL = (PENDING, RUNNING, SUCCEEDED, FAILED, DIVERGED, CANCELLED)
#: States a job never leaves by itself.
FINAL = (SUCCEEDED, FAILED, DIVERGED, CANCELLED)
#: States `gridlab retry` takes a job out of.
RETRYABLE = (FAILED, DIVERGED, CANCELLED)
#: States `gridlab cancel` takes a job out of.
CANCELLABLE = (PENDING, RUNNING)
#: Final states that mean the job did not succeed (a dependent of one can never run).
UNSUCCESSFUL = (FAILED, DIVERGED)
#: A set of cells with jobs in several states shows the most pressing one (the overview's heatmap).
URGENCY = (FAILED, DIVERGED, RUNNING, PENDING, CANCELLED, SUCCEEDED)

#: Each state's colour on the dashboard (as `gridlab status` shows it in the terminal: TERMINAL_STYLE).
COLOURS = {
    PENDING: "#e8b829",
    RUNNING: "#2f9fd8",
    SUCCEEDED: "#2e9e5b",
    FAILED: "#d64541",
    DIVERGED: "#a34fc9",
    CANCELLED: "#9a9a9a",
}
#: Each state's Rich style in the terminal.
TERMINAL_STYLE = {
    PENDING: "yellow",
    RUNNING: "cyan",
    SUCCEEDED: "green",
    FAILED: "red",
    DIVERGED: "magenta",
    CANCELLED: "dim",
}
