"""A demo job stopped mid-run resumes from its checkpoint and logs the same losses."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.session import scope
from harness import experiments
from harness.enqueue import new_jobs
from harness.grid import parse
from jobs import operator, queries, reports, states
from jobs.worker import Worker
from tests.support import results, runners

pytestmark = pytest.mark.e2e

GRID = """
name: {name}
experiment: tiny_lm
fixed: {{steps: 12, batch_size: 4, seq_len: 32, checkpoint_every: 4, eval_batches: 1}}
axes: {{seed: [3]}}
"""


def test_stop_and_resume_gives_identical_losses(queue, tmp_path):
    import torch

    torch.set_num_threads(1)
    for name in ("straight", "interrupted"):
        g = parse(GRID.format(name=name))
        operator.enqueue(queue.engine, name, new_jobs(g))

    # Job 1 runs straight through.
    Worker(queue, experiments.run, runs_dir=tmp_path, heartbeat_s=5).run(max_jobs=1)

    # Job 2: the worker is asked to stop after step 6 (as on SIGTERM or preemption).
    worker = Worker(queue, experiments.run, runs_dir=tmp_path, heartbeat_s=5)

    worker.runner = runners.stop_after(worker, 6, experiments.run)
    worker.run(max_jobs=1)
    assert reports.counts(queue.engine)[states.PENDING] == 1
    job = reports.job(queue.engine, 2)
    assert job.checkpoint_step == 6 and Path(job.checkpoint_path).name == "step-00000006-a1"
    assert Path(job.checkpoint_path).parent.parent == results.run_dir(queue, tmp_path, 2)

    Worker(queue, experiments.run, runs_dir=tmp_path, heartbeat_s=5).run(max_jobs=1)
    assert reports.counts(queue.engine)[states.SUCCEEDED] == 2

    with scope(queue.engine, write=False) as conn:
        straight = queries.job_metrics(conn, 1, "loss")
        resumed = queries.job_metrics(conn, 2, "loss")
    assert [r.step for r in resumed] == list(range(1, 13))
    assert [r.attempt for r in resumed] == [1] * 6 + [2] * 6
    assert [r.value for r in resumed] == [r.value for r in straight]
    assert [a.outcome for a in reports.attempts(queue.engine, 2)] == ["preempted", "succeeded"]
