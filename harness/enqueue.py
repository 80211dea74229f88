"""Turn a validated grid into job records: idempotent by spec hash."""

from __future__ import annotations

from collections.abc import Callable

from harness.grid import Grid, GridFileError
from jobs.queue import NewJob, Queue
from jobs.records import EnqueueResult


def new_jobs(grid: Grid) -> list[NewJob]:
    jobs = [
        NewJob(
            spec_hash=cell.spec_hash,
            spec=cell.spec,
            factors=cell.factors,
            experiment=grid.experiment,
            priority=grid.priority,
            max_attempts=grid.max_attempts,
            backoff_s=grid.backoff_s,
            spec_json=cell.spec_json,
        )
        for cell in grid.cells()
    ]
    if not jobs:
        raise GridFileError(grid.path, ["exclude: the exclusions remove every cell, so the grid has nothing to run"])
    return jobs


def enqueue(queue: Queue, grid: Grid, *, dry_run: bool = False, progress: Callable[[int], None] | None = None) -> EnqueueResult:
    """Add the grid's cells to the queue (or, with ``dry_run``, only count them)."""
    jobs = new_jobs(grid)
    if dry_run:
        existing = queue.existing_hashes(grid.name)
        old = sum(1 for j in jobs if j.spec_hash in existing)
        return EnqueueResult(grid=grid.name, total=len(jobs), new=len(jobs) - old, existing=old)
    return queue.enqueue(grid.name, jobs, source_path=grid.path, source_text=grid.source, progress=progress)
