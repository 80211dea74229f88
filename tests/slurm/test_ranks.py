"""A cell that spans processes, on the real one-node cluster: one Slurm worker with 2 CPUs claims
a ``ranks: 2`` sft cell and trains it as two torch.distributed ranks (gloo) inside its own job,
holding the lease itself; the curve matches the 1-rank cell's (same global batch) within the
tolerance of tests/training/test_ranks.py, and each metric is stored once."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db import engine as db_engine
from db import schema
from db.models import metrics
from jobs import operator, ranks, reports, states, workers as worker_jobs
from jobs.queue import Queue
from tests.slurm.test_dispatch import gridlab
from tests.slurm.conftest import wait_gone
from tests.support.results import metrics_of, run_dir

pytestmark = pytest.mark.slurm

LOSS_TOL = 1e-4  # float32 rounding of the all-reduce (see tests/training/test_ranks.py)
STEPS = 8
GRID = f"""
name: spans
experiment: sft
fixed: {{model: tiny-pythia, peft: lora, strategy: selective, steps: {STEPS}, batch_size: 8, max_length: 48,
         synthetic_records: 128, validation_share: 0.1, lr: 3.0e-3, eval_every: 4, checkpoint_every: 4,
         seed: 7, diagnostics: false, eval_prompts: '', eval_lm_tasks: '', eval_references: 0}}
axes: {{ranks: [1, 2]}}
retry: {{max_attempts: 2, backoff_s: 0}}
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def queue(request, tmp_path, slurm_cluster):
    url = f"sqlite:///{tmp_path / 'gridlab.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    eng = db_engine.create(url)
    schema.upgrade(eng)
    yield Queue(eng, lease_s=15.0)
    for w in worker_jobs.dispatched(eng, executor="slurm"):
        subprocess.run(["scancel", w.external_id], capture_output=True)
    eng.dispose()


def test_a_two_rank_cell_trains_in_one_two_cpu_slurm_job_like_one_rank(queue, tmp_path, slurm_cluster):
    from harness.enqueue import new_jobs
    from harness.grid import parse

    operator.enqueue(queue.engine, "spans", new_jobs(parse(GRID)))
    r = gridlab(tmp_path, queue, "launch", "--cpus", "2", "--workers", "1", "--runs-dir", str(tmp_path / "runs"),
                "--heartbeat", "3", "--time", "10", "--env", f"GRIDLAB_CACHE={tmp_path / 'cache'}")
    assert r.returncode == 0, r.stderr
    (jid,) = [w.external_id for w in worker_jobs.dispatched(queue.engine, executor="slurm")]
    wait_gone([jid], timeout_s=300)

    assert reports.counts(queue.engine)[states.SUCCEEDED] == 2, [(a.outcome, a.error) for j in (1, 2) for a in reports.attempts(queue.engine, j)]
    for job_id in (1, 2):
        (attempt,) = reports.attempts(queue.engine, job_id)
        assert attempt.outcome == states.OUTCOME_SUCCEEDED and attempt.slurm_job_id == jid
    # Both ranks ran inside the worker's Slurm job, each its own process.
    folder = run_dir(queue, tmp_path / "runs", 2) / "attempts" / "a1" / ranks.FOLDER
    starts = [ranks.read_json(ranks.start_record(folder, rank)) for rank in (0, 1)]
    assert [s["slurm_job_id"] for s in starts] == [jid, jid] and starts[0]["pid"] != starts[1]["pid"]
    assert reports.attempts(queue.engine, 2)[0].node == slurm_cluster

    one, two = metrics_of(queue, 1, "loss"), metrics_of(queue, 2, "loss")
    assert [p.step for p in two] == list(range(1, STEPS + 1))
    assert max(abs(a.value - b.value) for a, b in zip(one, two)) <= LOSS_TOL
    val_1, val_2 = metrics_of(queue, 1, "val_loss"), metrics_of(queue, 2, "val_loss")
    assert val_2 and max(abs(a.value - b.value) for a, b in zip(val_1, val_2)) <= LOSS_TOL
    with queue.engine.connect() as conn:
        dupes = conn.execute(select(metrics.c.job_id, metrics.c.name, metrics.c.step).group_by(
            metrics.c.job_id, metrics.c.name, metrics.c.step).having(func.count() > 1)).all()
    assert dupes == []
    assert Path(reports.job(queue.engine, 2).checkpoint_path).is_dir() and reports.job(queue.engine, 2).checkpoint_step == STEPS


@pytest.mark.parametrize("queue", ["sqlite"], indirect=True)
@pytest.mark.parametrize("signal", ["requeue", "usr2"])
def test_a_slurm_signal_to_a_two_rank_cell_checkpoints_on_every_rank_and_resumes(queue, signal, tmp_path, slurm_cluster):
    """Slurm signals every process of the job (proctrack/linuxproc): the worker, torchrun and both
    ranks. ``scontrol requeue`` sends SIGTERM (KillWait 5 s later SIGKILL); ``USR2`` is submitit's
    checkpoint signal (the time limit is near, or a preemption that warns), which torchrun
    ignores. Either way the ranks agree on a step, checkpoint it and hand the job back; the
    requeued worker resumes both ranks from that checkpoint (there is no periodic one)."""
    import time

    from harness.enqueue import new_jobs
    from harness.grid import parse

    steps = 300  # 25-35 ms a step here, after ~10 s of set-up: the requeue lands mid-training
    grid = GRID.replace(f"steps: {STEPS}", f"steps: {steps}").replace("checkpoint_every: 4", "checkpoint_every: 1000") \
        .replace("eval_every: 4", "eval_every: 0").replace("ranks: [1, 2]", "ranks: [2]")
    operator.enqueue(queue.engine, "spans", new_jobs(parse(grid)))
    r = gridlab(tmp_path, queue, "launch", "--cpus", "2", "--workers", "1", "--runs-dir", str(tmp_path / "runs"),
                "--heartbeat", "3", "--time", "10", "--env", f"GRIDLAB_CACHE={tmp_path / 'cache'}")
    assert r.returncode == 0, r.stderr
    (jid,) = [w.external_id for w in worker_jobs.dispatched(queue.engine, executor="slurm")]
    deadline = time.monotonic() + 180
    while not metrics_of(queue, 1, "loss"):  # the first batch of points is stored: training is under way
        assert time.monotonic() < deadline, "the job did not start training"
        assert reports.job(queue.engine, 1).state != states.FAILED, [a.error for a in reports.attempts(queue.engine, 1)]
        time.sleep(0.1)
    subprocess.run(["scontrol", "requeue", jid] if signal == "requeue" else ["scancel", "-s", "USR2", jid], check=True)
    wait_gone([jid], timeout_s=240)

    first, second = reports.attempts(queue.engine, 1)
    assert (first.outcome, second.outcome) == (states.OUTCOME_PREEMPTED, states.OUTCOME_SUCCEEDED), first.error
    assert second.resumed_from_step and 0 < second.resumed_from_step < steps, "not stopped mid-training"
    folder = run_dir(queue, tmp_path / "runs", 1) / "attempts"
    ends = [ranks.read_json(ranks.end_record(folder / "a1" / ranks.FOLDER, rank)) for rank in (0, 1)]
    assert [e["outcome"] for e in ends] == [ranks.INTERRUPTED] * 2
    starts = [ranks.read_json(ranks.start_record(folder / "a2" / ranks.FOLDER, rank)) for rank in (0, 1)]
    assert [s["resume_step"] for s in starts] == [second.resumed_from_step] * 2
    assert [p.step for p in metrics_of(queue, 1, "loss")] == list(range(1, steps + 1))
