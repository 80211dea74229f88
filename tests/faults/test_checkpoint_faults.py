"""Checkpoint faults: a full disk mid-write, a corrupted recorded checkpoint.

Both run the real demo experiment (tiny_lm) and end with the invariants and with the
resumed loss curve equal, bit for bit, to an uninterrupted run of the same spec.
"""

from __future__ import annotations

import os

import pytest

from db.session import scope
from harness import experiments
from harness.experiments import tiny_lm
from jobs import checkpoints, operator, reports
from harness.enqueue import new_jobs
from harness.grid import parse
from jobs import queries, states
from jobs.worker import Worker
from tests.support import results, runners
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
        operator.enqueue(queue.engine, name, new_jobs(parse(GRID.format(name=name))))


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


def _sealed(queue, tmp_path, job_id):
    return [p.name for _, _, p in checkpoints.sealed(results.run_dir(queue, tmp_path, job_id))]


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(queue, engine, tmp_path):
    _enqueue(queue, "straight", "diskfull")
    Worker(queue, experiments.run, runs_dir=tmp_path, heartbeat_s=5).run(max_jobs=1)

    # The 2nd job's checkpoint at step 4 is written into /dev/full: the kernel answers ENOSPC.
    staging = results.run_dir(queue, tmp_path, 2) / "attempts" / "a1" / "ckpt-4"
    staging.mkdir(parents=True)
    os.symlink("/dev/full", staging / tiny_lm.STATE_FILE)
    Worker(queue, experiments.run, runs_dir=tmp_path, heartbeat_s=5).run(max_jobs=1)
    (first,) = reports.attempts(queue.engine, 2)
    # A full disk is the machine's trouble, not the job's: classed as such, retried with backoff.
    assert first.outcome == states.OUTCOME_DISK and "No space left on device" in first.error
    assert first.error_type == "builtins.OSError"
    assert reports.job(queue.engine, 2).state == states.PENDING
    assert _sealed(queue, tmp_path, 2) == ["step-00000002-a1"]
    assert reports.job(queue.engine, 2).checkpoint_step == 2

    Worker(queue, experiments.run, runs_dir=tmp_path, heartbeat_s=5).run(max_jobs=1)
    assert [a.outcome for a in reports.attempts(queue.engine, 2)] == [states.OUTCOME_DISK, states.OUTCOME_SUCCEEDED]
    assert [a.resumed_from_step for a in reports.attempts(queue.engine, 2)] == [None, 2]
    invariants.check(engine)
    assert _losses(engine, 2) == _losses(engine, 1)


def test_corrupted_recorded_checkpoint_falls_back_to_the_one_before(queue, engine, tmp_path):
    _enqueue(queue, "straight", "corrupt")
    Worker(queue, experiments.run, runs_dir=tmp_path, heartbeat_s=5).run(max_jobs=1)

    worker = Worker(queue, experiments.run, runs_dir=tmp_path, heartbeat_s=5)

    worker.runner = runners.stop_after(worker, 6, experiments.run)
    worker.run(max_jobs=1)
    recorded = reports.job(queue.engine, 2).checkpoint_path
    assert recorded.endswith("step-00000006-a1") and reports.job(queue.engine, 2).checkpoint_step == 6
    assert _sealed(queue, tmp_path, 2) == ["step-00000006-a1", "step-00000004-a1"]
    state = os.path.join(recorded, tiny_lm.STATE_FILE)
    with open(state, "r+b") as f:  # torn write
        f.truncate(os.path.getsize(state) // 2)

    Worker(queue, experiments.run, runs_dir=tmp_path, heartbeat_s=5).run(max_jobs=1)
    attempts = reports.attempts(queue.engine, 2)
    assert [a.outcome for a in attempts] == [states.OUTCOME_PREEMPTED, states.OUTCOME_SUCCEEDED]
    assert attempts[1].resumed_from_step == 4  # the recorded step 6 was refused: its curve was cut to 4
    assert any("not used" in (e.reason or "") and "starts from step 4" in e.reason for e in reports.events(queue.engine, 2))
    invariants.check(engine)
    assert _losses(engine, 2) == _losses(engine, 1)
