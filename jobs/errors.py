"""Signals between the queue, the worker and the experiment it runs."""

from __future__ import annotations


class LeaseLost(Exception):
    """This worker no longer holds the job: it was cancelled, or its lease expired and
    another worker took it. The worker must stop writing anything for that job."""


class Diverged(Exception):
    """The experiment's loss became NaN or inf at ``step``; the job ends as diverged."""

    def __init__(self, step: int, detail: str = "") -> None:
        self.step = step
        super().__init__(f"loss diverged at step {step}" + (f": {detail}" if detail else ""))


class Interrupted(Exception):
    """The experiment saved a checkpoint and stopped because the worker is stopping
    (SIGTERM, Slurm preemption or time limit). The job goes back to the queue."""

    def __init__(self, reason: str = "stopped", outcome: str = "stopped") -> None:
        self.reason = reason
        self.outcome = outcome
        super().__init__(reason)
