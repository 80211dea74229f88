"""Fixtures for the training tests: one tiny-model cache per session, a queue on SQLite, and a
helper that runs an in-process worker over a grid."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Third-party warnings a training run emits; ignored by name, everything else stays an error.
THIRD_PARTY_WARNINGS = [
    # transformers 5 deprecates the attribute that peft 0.21 still reads when wrapping a model.
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """GRIDLAB_CACHE for the session (tests and the worker processes they start)."""
    path = tmp_path_factory.mktemp("gridlab-cache")
    previous = os.environ.get("GRIDLAB_CACHE")
    os.environ["GRIDLAB_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("GRIDLAB_CACHE", None)
    else:
        os.environ["GRIDLAB_CACHE"] = previous


@pytest.fixture
def sqlite_queue(tmp_path, tiny_cache):
    from db import engine as db_engine
    from db import schema
    from jobs.queue import Queue

    url = f"sqlite:///{tmp_path / 'gridlab.db'}"
    engine = db_engine.create(url)
    schema.upgrade(engine)
    yield Queue(engine, lease_s=30.0), url
    engine.dispose()


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

