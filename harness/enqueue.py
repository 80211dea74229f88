"""Turn a validated grid into job records: idempotent by spec hash.

The grid is expanded once (:func:`plan`); a dry run counts the plan's cells against the
queue, a real run writes them (:class:`Plan`), so the two cannot disagree.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from harness import experiments
from harness.grid import Cell, Grid, GridFileError, canonical_json, spec_hash
from harness.params import stored_spec
from jobs import operator
from jobs.operator import NewJob
from jobs.queue import Queue
from jobs.records import EnqueueResult


def new_jobs(grid: Grid) -> list[NewJob]:
    with _collector_paused():
        return _new_jobs(grid)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a grid's job records are built.
    They make no reference cycles (reference counting frees them), but a 100,000-cell
    grid allocates half a million containers, and the collector's repeated full passes
    over them were a fifth of expansion time (benchmarks/enqueue_grid.py)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _new_jobs(grid: Grid) -> list[NewJob]:
    jobs = [
        NewJob(
            spec_hash=digest,
            spec=spec,
            factors=factors,
            experiment=grid.experiment,
            priority=grid.priority,
            max_attempts=grid.max_attempts,
            backoff_s=grid.backoff_s,
            spec_json=spec_json,
            factors_json=factors_json,
            resource_class=grid.resources.for_cell(factors, spec),
        )
        for factors, spec, digest, spec_json, factors_json in grid.cell_records()
    ]
    if not jobs:
        raise GridFileError(grid.path, ["exclude: the exclusions remove every cell, so the grid has nothing to run"])
    return jobs + (judge_jobs(grid, list(grid.cells())) if grid.compare else [])


def judge_jobs(grid: Grid, cells: list[Cell]) -> list[NewJob]:
    """One judge job per ``compare:`` factor and pair of cells that differ only in it (same
    other factors, seed included); each depends on its two arms, so it runs after both
    succeed. Its spec names the arms by spec hash, so re-enqueueing adds nothing twice."""
    if not grid.compare:
        return []
    base = stored_spec("judge", experiments.load("judge").PARAMS, grid.judge)
    out: list[NewJob] = []
    problems: list[str] = []
    for factor, (value_a, value_b) in grid.compare.items():
        by_rest: dict[str, dict[Any, Cell]] = {}
        for cell in cells:
            if factor in cell.factors:
                rest = json.dumps({k: v for k, v in cell.factors.items() if k != factor}, sort_keys=True, default=str)
                by_rest.setdefault(rest, {})[cell.factors[factor]] = cell
        made = 0
        for rest, arms in by_rest.items():
            if value_a not in arms or value_b not in arms:
                continue
            a, b = arms[value_a], arms[value_b]
            spec = {**base, "factor": factor, "value_a": _text(value_a), "value_b": _text(value_b),
                    "arm_a": a.spec_hash, "arm_b": b.spec_hash}
            factors = {**json.loads(rest), "compare": f"{factor}: {_text(value_a)} vs {_text(value_b)}"}
            out.append(NewJob(spec_hash=spec_hash(spec), spec=spec, spec_json=canonical_json(spec), factors=factors,
                              experiment="judge",
                              priority=grid.priority, max_attempts=grid.max_attempts, backoff_s=grid.backoff_s,
                              depends_on=(a.spec_hash, b.spec_hash), resource_class=grid.resources.for_judge()))
            made += 1
        if not made:
            problems.append(f"compare.{factor}: no two cells differ only in {factor} ({_text(value_a)} vs "
                            f"{_text(value_b)}); make {factor} an axis, or add cells that match")
    if problems:
        raise GridFileError(grid.path, problems)
    return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@dataclass(frozen=True)
class Plan:
    """A grid expanded into its job records (every problem of the grid surfaced already)."""

    grid: Grid
    jobs: list[NewJob]

    def count(self, queue: Queue | None) -> EnqueueResult:
        """New and already queued cells, writing nothing (``queue`` None: there is no database
        yet, so every cell is new)."""
        existing = operator.existing_hashes(queue.engine, self.grid.name) if queue is not None else set()
        old = sum(1 for j in self.jobs if j.spec_hash in existing)
        return EnqueueResult(grid=self.grid.name, total=len(self.jobs), new=len(self.jobs) - old, existing=old)

    def write(self, queue: Queue, *, progress: Callable[[int], None] | None = None) -> EnqueueResult:
        """Add the new cells to the queue (``progress(n)`` as each batch of ``n`` is handled)."""
        return operator.enqueue(queue.engine, self.grid.name, self.jobs, source_path=self.grid.path,
                                source_text=self.grid.source, progress=progress)


def plan(grid: Grid) -> Plan:
    return Plan(grid, new_jobs(grid))


def enqueue(queue: Queue, grid: Grid, *, dry_run: bool = False, progress: Callable[[int], None] | None = None) -> EnqueueResult:
    """Add the grid's cells to the queue (or, with ``dry_run``, only count them)."""
    planned = plan(grid)
    return planned.count(queue) if dry_run else planned.write(queue, progress=progress)
