"""Fixtures for the training tests: a queue on SQLite and a helper that runs an in-process worker
over a grid (the tiny-model cache is the session's, tests/conftest.py)."""

from __future__ import annotations

import pytest

#: Third-party warnings a training run emits; ignored by name, everything else stays an error.
THIRD_PARTY_WARNINGS = [
    # transformers 5 deprecates the attribute that peft 0.21 still reads when wrapping a model.
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]


@pytest.fixture
def sqlite_queue(sqlite_engine, sqlite_url):
    from jobs.queue import Queue

    return Queue(sqlite_engine, lease_s=30.0), sqlite_url


@pytest.fixture
def run_grid(sqlite_queue, tmp_path):
    """Enqueue a grid (YAML text) and drain it with one in-process worker; returns the queue."""
    import torch

    from harness import experiments
    from harness.enqueue import new_jobs
    from harness.grid import parse
    from jobs import operator
    from jobs.worker import Worker

    torch.set_num_threads(1)
    queue, _ = sqlite_queue

    def run(text: str):
        grid = parse(text)
        operator.enqueue(queue.engine, grid.name, new_jobs(grid))
        Worker(queue, experiments.run, runs_dir=tmp_path / "runs", heartbeat_s=5).run()
        return queue

    return run

