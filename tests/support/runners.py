"""Tiny runners for queue tests: they run in worker processes, so they live in a module."""

from __future__ import annotations

import os
import time


def noop(ctx) -> None:
    """Log one metric and finish."""
    ctx.log(1, {"work": float(ctx.job.id)})


def slow(ctx) -> None:
    """Sleep per step, stopping cleanly when asked (for stop/lease tests)."""
    from jobs.errors import Interrupted

    for step in range(int(ctx.spec.get("steps", 50))):
        if ctx.should_stop():
            raise Interrupted(ctx.stop_reason, ctx.stop_outcome)
        ctx.log(step, {"x": float(step)})
        time.sleep(float(ctx.spec.get("delay", 0.05)))


def flaky(ctx) -> None:
    """Fail on the first attempt, succeed on later ones."""
    if ctx.attempt == 1:
        raise RuntimeError(f"simulated failure in pid {os.getpid()}")
    ctx.log(1, {"ok": 1.0})
