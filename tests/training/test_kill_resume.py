"""Exact resume: a worker process killed with SIGKILL at a random step, and the job picked up by
another worker process, logs the same per-step losses as an uninterrupted run (in the test's own
process), bit for bit, and the metrics table holds each (job, name, step) once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs import operator, reports, states
from tests.support.results import metrics_of
from tests.training.conftest import THIRD_PARTY_WARNINGS

pytestmark = [pytest.mark.e2e, *THIRD_PARTY_WARNINGS]  # the uninterrupted run trains in this process

STEPS = 16
GRID = f"""
name: {{name}}
experiment: sft
fixed: {{{{model: tiny-gpt2, norm: dyt, peft: lora, strategy: selective, steps: {STEPS}, batch_size: 4,
         max_length: 48, synthetic_records: 48, validation_share: 0.1, lr: 3.0e-3, eval_every: 8,
         checkpoint_every: 4, seed: 7, eval_prompts: '', eval_lm_tasks: '', eval_references: 0}}}}
axes: {{{{dataset: [synthetic]}}}}
retry: {{{{max_attempts: 3, backoff_s: 0}}}}  # an expired lease counts as a failed attempt: retry at once
"""
# (The evaluation after training is off: the curves are what must match, and it is the same code
# on both runs.)
#: A lease lasts 3 heartbeats: 75 s here, so the resumer claims the killed job up to 75 s after the
#: kill. Shorter leases were lost on the loaded machine of a full run (the suite runs in
#: parallel): a 3 s one by the resuming worker, which then left the job running, and a 3 s and a
#: 6 s one by the victim before the kill; its heartbeats once stopped for 48 s while it set up
#: training (attempt.jsonl: beats every 2 s for 25 s, then none until the lease was gone). Likely:
#: the heartbeat is a thread, and the main thread holds the GIL through long C calls while it sets
#: up: loading torch's extension (``from torch._C import *``) and full ``gc.collect()`` passes
#: (accelerate's at the start of ``train()``). Unloaded, the longest stall of a thread beside a
#: worker's first job is 0.3 s; with six CPU hogs at nice 0 beside the worker at nice 5, 3.2 s
#: (benchmarks/heartbeat_stalls.py, BENCHMARKS.md). A full run's load is heavier still.
HEARTBEAT_S = 25.0


def _worker(url: str, runs: Path) -> subprocess.Popen:
    code = (
        "from jobs.pool import worker_main\nfrom jobs.worker import WorkerOptions\n"
        f"raise SystemExit(worker_main(WorkerOptions(url={url!r}, runs_dir={str(runs)!r}, heartbeat_s={HEARTBEAT_S},"
        " poll_s=0.1, threads_per_worker=1, max_jobs=1)))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=Path(__file__).resolve().parents[2])


def _recorded_step(queue) -> int:
    """The step of the sealed checkpoint the database recorded for the killed grid's job."""
    return reports.jobs(queue.engine, grid="killed")[0] and (reports.job(queue.engine, 2).checkpoint_step or 0)


def test_sigkill_at_a_random_step_then_resume_is_bit_identical(sqlite_queue, run_grid, tmp_path, rng_seed):
    from harness.enqueue import new_jobs
    from harness.grid import parse

    queue, url = sqlite_queue
    runs = tmp_path / "runs"  # run_grid's too
    # Job 1, uninterrupted, in this process (one worker process fewer to start: each imports the
    # training stack); the killed job's curve must match it bit for bit all the same.
    run_grid(GRID.format(name="straight"))
    assert reports.jobs(queue.engine, grid="straight")[0].state == states.SUCCEEDED
    operator.enqueue(queue.engine, "killed", new_jobs(parse(GRID.format(name="killed"))))

    # Seeded (GRIDLAB_TEST_SEED), and the seed in every failure, so a failing kill can be replayed.
    rng = random.Random(rng_seed)
    # A sealed checkpoint at this step, then a random delay of up to two steps (as long as
    # the uninterrupted run's steps took): the kill lands mid-training, at least two
    # checkpoints before the end. (Killed after its last step, the job would finish from its
    # final checkpoint with no training left for the second attempt to do.)
    kill_after = rng.choice([4, 8])
    step_s = sorted(p.value for p in metrics_of(queue, 1, "step_time_s"))[STEPS // 2]
    delay = rng.uniform(0.0, min(0.15, 2 * step_s))
    victim = _worker(url, runs)
    deadline = time.monotonic() + 300
    while _recorded_step(queue) < kill_after:
        assert victim.poll() is None, (
            f"the worker exited before it could be killed (GRIDLAB_TEST_SEED={rng_seed}): "
            + "; ".join(e.reason or "" for e in reports.events(queue.engine, 2))
            + "; a lost lease leaves no event: see the attempt's attempt.jsonl and output.log under " + str(runs))
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(delay)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert reports.jobs(queue.engine, grid="killed")[0].state == states.RUNNING  # nobody recorded the death

    assert _worker(url, runs).wait(timeout=400) == 0  # reclaims the expired lease and resumes
    job = reports.jobs(queue.engine, grid="killed")[0]
    assert job.state == states.SUCCEEDED and job.attempts == 2

    straight, resumed = metrics_of(queue, 1, "loss"), metrics_of(queue, 2, "loss")
    assert [r.step for r in resumed] == list(range(1, STEPS + 1))
    assert [r.value for r in resumed] == [r.value for r in straight]  # bit-identical
    second = [r.step for r in resumed if r.attempt == 2]
    resumed_from = reports.attempts(queue.engine, 2)[1].resumed_from_step
    assert resumed_from is not None and resumed_from >= kill_after, f"restarted (GRIDLAB_TEST_SEED={rng_seed})"
    assert second and second[0] == resumed_from + 1, "the curve continues from the recorded checkpoint's step"
    assert {r.attempt for r in resumed if r.step <= resumed_from} == {1}
    for name in ("grad_norm", "token_accuracy", "val_loss"):
        assert [r.value for r in metrics_of(queue, 2, name)] == [r.value for r in metrics_of(queue, 1, name)], name

    from sqlalchemy import func, select

    from db.models import metrics

    with queue.engine.connect() as conn:
        dupes = conn.execute(select(metrics.c.job_id, metrics.c.name, metrics.c.step).group_by(
            metrics.c.job_id, metrics.c.name, metrics.c.step).having(func.count() > 1)).all()
    assert dupes == []
