"""Helpers that build queue jobs without a grid file."""

from __future__ import annotations

import hashlib

from jobs.operator import NewJob


def make_jobs(n: int, *, experiment: str = "test", priority: int = 0, max_attempts: int = 3,
              backoff_s: float = 0.0, **spec) -> list[NewJob]:
    out = []
    for i in range(n):
        s = {"i": i, **spec}
        out.append(NewJob(spec_hash=hashlib.sha256(repr(sorted(s.items())).encode()).hexdigest(), spec=s,
                          factors={"i": i}, experiment=experiment, priority=priority,
                          max_attempts=max_attempts, backoff_s=backoff_s))
    return out
