"""Checkpoint faults: a full disk mid-write, a corrupted newest checkpoint.

Both run the real demo experiment (tiny_lm) and end with the invariants and with the
resumed loss curve equal, bit for bit, to an uninterrupted run of the same spec.
"""

from __future__ import annotations

import os

import pytest

from db.session import scope
from harness import checkpoints, experiments
from harness.enqueue import new_jobs
from harness.grid import parse
from jobs import queries, states
from jobs.worker import Worker
from tests.support import runners
from tests.faults import invariants

pytestmark = pytest.mark.contract

GRID = """
name: {name}
experiment: tiny_lm
fixed: {{steps: 8, batch_size: 4, seq_len: 32, checkpoint_every: 2, eval_batches: 1}}
axes: {{seed: [5]}}
retry: {{max_attempts: 3, backoff_s: 0}}
"""


def _enqueue(queue, *names):
    for name in names:
        queue.enqueue(name, new_jobs(parse(GRID.format(name=name))))


def _losses(engine, job_id):
    with scope(engine, write=False) as conn:
        return [r.value for r in queries.job_metrics(conn, job_id, "loss")]


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(queue, engine, tmp_path):
    _enqueue(queue, "straight", "diskfull")
    Worker(queue, experiments.run, runs_dir=tmp_path, heartbeat_s=5).run(max_jobs=1)

    # The 2nd job's checkpoint at step 4 is written into /dev/full: the kernel answers ENOSPC.
    run_dir = tmp_path / "job-2"
    run_dir.mkdir()
    os.symlink("/dev/full", run_dir / ".ckpt-00000004.pt.tmp")
    Worker(queue, experiments.run, runs_dir=tmp_path, heartbeat_s=5).run(max_jobs=1)
    (first,) = queue.attempts(2)
    assert first.outcome == states.OUTCOME_ERROR and "No space left on device" in first.error
    assert [p.name for p in checkpoints.available(run_dir)] == ["ckpt-00000002.pt"]
    assert checkpoints.load_latest(run_dir)[0]["step"] == 2

    Worker(queue, experiments.run, runs_dir=tmp_path, heartbeat_s=5).run(max_jobs=1)
    assert [a.outcome for a in queue.attempts(2)] == [states.OUTCOME_ERROR, states.OUTCOME_SUCCEEDED]
    invariants.check(engine)
    assert _losses(engine, 2) == _losses(engine, 1)


def test_corrupted_newest_checkpoint_falls_back_to_the_one_before(queue, engine, tmp_path):
    _enqueue(queue, "straight", "corrupt")
    Worker(queue, experiments.run, runs_dir=tmp_path, heartbeat_s=5).run(max_jobs=1)

    worker = Worker(queue, experiments.run, runs_dir=tmp_path, heartbeat_s=5)

    worker.runner = runners.stop_after(worker, 6, experiments.run)
    worker.run(max_jobs=1)
    run_dir = tmp_path / "job-2"
    newest = checkpoints.available(run_dir)[-1]
    assert newest.name == "ckpt-00000006.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # torn write

    Worker(queue, experiments.run, runs_dir=tmp_path, heartbeat_s=5).run(max_jobs=1)
    assert [a.outcome for a in queue.attempts(2)] == [states.OUTCOME_PREEMPTED, states.OUTCOME_SUCCEEDED]
    invariants.check(engine)
    assert _losses(engine, 2) == _losses(engine, 1)
