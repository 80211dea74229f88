"""Cells that span processes: an sft cell with ``ranks: 2`` trains as two torch.distributed
ranks (gloo, on the CPU) that the worker launches with torchrun while it keeps the lease.

Tolerance. tiny-pythia has no dropout, and the ranks split each global batch of the one-rank
run between them (accelerate shards the batches of the one seeded sampler: rank 0 the first
half, rank 1 the second), so both runs see the same examples at every step. What differs is
the order of float32 additions (two half-batch losses and gradients, each normalised by the
global token count and averaged by the all-reduce, against one sum), so the losses agree to
float32 rounding: measured |difference| <= 5e-7 over 8 steps (loss ~6.2). The tests allow
``LOSS_TOL`` = 1e-4 absolute, 200 times that, still far below a step's change of the loss
(~3e-2). (With dropout, tiny-gpt2's default 0.1, each rank draws its own masks and the curves
differ by up to ~2e-2; no model with dropout is compared here.)

Within an epoch. The split has 115 training examples, 14 full steps of 8 and 3 left over; at the
15th step one rank trains on those 3 while two ranks each fill their half of the batch by
wrapping around (accelerate's ``even_batches``), so from there the curves part (measured: 0.27 at
step 15). Every comparison of one rank with two stays within the first 14 steps.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from jobs import checkpoints, operator, ranks, reports, states
from tests.support.results import metrics_of, run_dir, summaries_of
from tests.training.conftest import THIRD_PARTY_WARNINGS

pytestmark = [pytest.mark.e2e, *THIRD_PARTY_WARNINGS]

LOSS_TOL = 1e-4
STEPS = 8
GRID = """
name: {name}
experiment: sft
fixed: {{model: tiny-pythia, peft: lora, strategy: selective, steps: {steps}, batch_size: 8, max_length: 48,
         synthetic_records: 128, validation_share: 0.1, lr: 3.0e-3, eval_every: 4, checkpoint_every: 4,
         seed: 7, diagnostics: false, eval_prompts: demo, eval_prompt_limit: 1, eval_max_new_tokens: 4,
         eval_lm_tasks: '', eval_references: 0}}
axes: {{ranks: {ranks}}}
retry: {{max_attempts: 3, backoff_s: 0}}
"""


def _enqueue(queue, name: str, ranks_: list[int], steps: int = STEPS) -> None:
    from harness.enqueue import new_jobs
    from harness.grid import parse

    operator.enqueue(queue.engine, name, new_jobs(parse(GRID.format(name=name, steps=steps, ranks=ranks_))))


#: The lease these tests run under: 3 heartbeats was too short on a loaded machine (the suite runs in
#: parallel; one run lost a lease three times), and no test here is about a lease expiring on time.
LEASE_S = 15.0


def _worker(queue, runs: Path, **kw):
    from harness import experiments
    from jobs.worker import Worker

    return Worker(queue, experiments.run, runs_dir=runs, heartbeat_s=kw.pop("heartbeat_s", 2.0), poll_s=0.1, **kw)


def _ranks_folder(queue, runs: Path, job_id: int, attempt: int) -> Path:
    return run_dir(queue, runs, job_id) / "attempts" / f"a{attempt}" / ranks.FOLDER


def _start(queue, runs, job_id, attempt, rank) -> dict:
    return ranks.read_json(ranks.start_record(_ranks_folder(queue, runs, job_id, attempt), rank)) or {}


def _marker(queue, runs, job_id, attempt) -> list[dict]:
    from jobs import runs as run_files

    lines = run_files.read_markers(runs)[run_dir(queue, runs, job_id)]
    return [line for line in lines if line["attempt"] == attempt]


def _no_duplicates(queue) -> None:
    from db.models import metrics

    with queue.engine.connect() as conn:
        dupes = conn.execute(select(metrics.c.job_id, metrics.c.name, metrics.c.step).group_by(
            metrics.c.job_id, metrics.c.name, metrics.c.step).having(func.count() > 1)).all()
    assert dupes == []


@pytest.fixture
def db_queue(db_url, tiny_cache):
    """The queue on each backend (the fenced writes of rank 0 cross processes)."""
    import torch

    from db import engine as db_engine
    from db import schema
    from jobs.queue import Queue

    torch.set_num_threads(1)
    engine = db_engine.create(db_url)
    schema.upgrade(engine)
    yield Queue(engine, lease_s=LEASE_S)
    engine.dispose()


def test_two_ranks_train_like_one_with_the_same_global_batch_and_only_rank_0_writes(db_queue, tmp_path):
    queue, runs = db_queue, tmp_path / "runs"
    _enqueue(queue, "g", [1, 2])
    started = time.monotonic()
    stats = _worker(queue, runs).run()
    assert stats.succeeded == 2, [(a.outcome, a.error) for j in (1, 2) for a in reports.attempts(queue.engine, j)]
    one, two = reports.job(queue.engine, 1), reports.job(queue.engine, 2)
    assert (one.spec.get("ranks", 1), two.spec["ranks"]) == (1, 2)
    assert [a.outcome for a in reports.attempts(queue.engine, 2)] == [states.OUTCOME_SUCCEEDED]

    # The same curve, to float32 rounding (see the module), each step stored once.
    loss_1, loss_2 = metrics_of(queue, 1, "loss"), metrics_of(queue, 2, "loss")
    assert [p.step for p in loss_2] == list(range(1, STEPS + 1))
    diffs = [abs(a.value - b.value) for a, b in zip(loss_1, loss_2)]
    assert max(diffs) <= LOSS_TOL, diffs
    for name, tol in (("val_loss", LOSS_TOL), ("grad_norm", 1e-3), ("token_accuracy", 1e-6)):
        a, b = metrics_of(queue, 1, name), metrics_of(queue, 2, name)
        assert [p.step for p in a] == [p.step for p in b] and a, name
        assert max(abs(x.value - y.value) for x, y in zip(a, b)) <= tol, (name, a, b)
    _no_duplicates(queue)
    assert {p.attempt for p in metrics_of(queue, 2)} == {1}

    # Rank 0 alone wrote, from its own process, under the worker's lease: the attempt's marker
    # has every confirmed write from rank 0's pid, none from rank 1's or the worker's.
    rank_0, rank_1 = _start(queue, runs, 2, 1, 0), _start(queue, runs, 2, 1, 1)
    assert rank_0["pid"] != rank_1["pid"] and os.getpid() not in (rank_0["pid"], rank_1["pid"])
    lines = _marker(queue, runs, 2, 1)
    writes = [line for line in lines if line["event"] in ("metrics", "summary", "checkpoint")]
    assert writes and {line["pid"] for line in writes} == {rank_0["pid"]}
    assert {line["owner"] for line in lines} == {reports.attempts(queue.engine, 2)[0].worker}
    # Checkpoints: sealed once per step, with both ranks' files (each rank's RNG state).
    assert [line["step"] for line in writes if line["event"] == "checkpoint"] == [4, 8]
    recorded = Path(two.checkpoint_path)
    assert two.checkpoint_step == STEPS and recorded.name == checkpoints.name(STEPS, 1)
    identity = checkpoints.Identity(database_id=queue.database_id(), job_id=2, spec_hash=two.spec_hash)
    assert checkpoints.verify(recorded, identity, step=STEPS) is None
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= set(checkpoints.read_seal(recorded)["files"])
    # The evaluation after training is rank 0's: answers and summaries once.
    from jobs import outputs

    assert summaries_of(queue, 2)["steps"] == STEPS and "gen_tokens_per_s" in summaries_of(queue, 2)
    assert len(outputs.generations_of(queue.engine, 2)) == len(outputs.generations_of(queue.engine, 1)) > 0
    for rank in (0, 1):
        end = ranks.read_json(ranks.end_record(_ranks_folder(queue, runs, 2, 1), rank))
        assert end["outcome"] == ranks.SUCCEEDED
    print(f"\n2 ranks vs 1: max |loss difference| {max(diffs):.2e} over {STEPS} steps; "
          f"both cells {time.monotonic() - started:.1f} s")


def _run_in_thread(worker):
    out: dict = {}
    thread = threading.Thread(target=lambda: out.setdefault("stats", worker.run()), daemon=True)
    thread.start()
    return thread, out


def _wait_for(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} not within {timeout_s:.0f} s")


def test_a_rank_killed_mid_training_fails_the_attempt_and_both_ranks_resume_from_the_checkpoint(sqlite_queue, tmp_path):
    queue, _ = sqlite_queue
    queue.lease_s = LEASE_S
    runs = tmp_path / "runs"
    # The uninterrupted reference is one rank, in this process: two ranks train like one to
    # LOSS_TOL within an epoch (the module's docstring), and it spares a torchrun launch (two
    # more processes importing the training stack). 14 steps of 8 stay in the first epoch.
    steps = 14
    _enqueue(queue, "straight", [1], steps=steps)
    _enqueue(queue, "killed", [2], steps=steps)
    assert _worker(queue, runs).run(max_jobs=1).succeeded == 1  # job 1, uninterrupted

    worker = _worker(queue, runs)
    thread, out = _run_in_thread(worker)
    _wait_for(lambda: (reports.job(queue.engine, 2).checkpoint_step or 0) >= 4, 120, "job 2's first checkpoint")
    victim = _start(queue, runs, 2, 1, 1)["pid"]
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    failed = _wait_for(lambda: (a := reports.attempts(queue.engine, 2)) and a[0].outcome and a[0], 60, "the attempt's failure")
    noticed_s = time.monotonic() - killed_at
    thread.join(timeout=120)
    assert not thread.is_alive(), "the worker hung"

    assert failed.outcome == states.OUTCOME_ERROR and failed.error_type == "jobs.ranks.RankDied"
    assert "rank 1" in failed.error and "SIGKILL" in failed.error, failed.error
    first, second = reports.attempts(queue.engine, 2)
    job = reports.job(queue.engine, 2)
    assert job.state == states.SUCCEEDED and job.attempts == 2 and second.outcome == states.OUTCOME_SUCCEEDED
    resumed = second.resumed_from_step
    assert resumed is not None and resumed >= 4
    # Every rank of the second attempt loaded the recorded checkpoint.
    assert [_start(queue, runs, 2, 2, r)["resume_step"] for r in (0, 1)] == [resumed, resumed]
    # The curve: each step once, attempt 1's up to the checkpoint and attempt 2's after it, and
    # the same as the uninterrupted run's (RNG states, data position and optimizer all resumed).
    curve = metrics_of(queue, 2, "loss")
    assert [p.step for p in curve] == list(range(1, steps + 1))
    assert {p.attempt for p in curve if p.step <= resumed} == {1}
    assert {p.attempt for p in curve if p.step > resumed} == {2}
    straight = metrics_of(queue, 1, "loss")
    diffs = [abs(a.value - b.value) for a, b in zip(straight, curve)]
    assert max(diffs) <= LOSS_TOL, diffs
    _no_duplicates(queue)
    # The dead rank's peer did not linger.
    for rank in (0, 1):
        pid = _start(queue, runs, 2, 1, rank)["pid"]
        assert not ranks._is_rank(pid), f"rank {rank} of the failed attempt is still running"
    print(f"\nrank 1 SIGKILLed after step {resumed}: attempt failed {noticed_s:.1f} s later, "
          f"resumed curve vs uninterrupted max |difference| {max(diffs):.2e}")


def test_a_worker_asked_to_stop_has_its_ranks_checkpoint_the_same_step_and_hand_the_job_back(sqlite_queue, tmp_path):
    queue, _ = sqlite_queue
    queue.lease_s = LEASE_S
    runs = tmp_path / "runs"
    steps = 16
    _enqueue(queue, "stopped", [2], steps=steps)
    worker = _worker(queue, runs)
    thread, out = _run_in_thread(worker)
    _wait_for(lambda: len(metrics_of(queue, 1, "loss")) >= 2, 120, "job 1's second step")
    worker.request_stop("test stop", states.OUTCOME_PREEMPTED)
    thread.join(timeout=120)
    assert not thread.is_alive(), "the worker hung"
    (attempt,) = reports.attempts(queue.engine, 1)
    assert attempt.outcome == states.OUTCOME_PREEMPTED, (attempt.outcome, attempt.error)
    job = reports.job(queue.engine, 1)
    assert job.state == states.PENDING and 2 <= job.checkpoint_step < steps
    ends = [ranks.read_json(ranks.end_record(_ranks_folder(queue, runs, 1, 1), r)) for r in (0, 1)]
    assert [e["outcome"] for e in ends] == [ranks.INTERRUPTED] * 2
    # A new worker finishes it from the step both ranks checkpointed.
    assert _worker(queue, runs).run().succeeded == 1
    assert reports.attempts(queue.engine, 1)[1].resumed_from_step == job.checkpoint_step
    assert [p.step for p in metrics_of(queue, 1, "loss")] == list(range(1, steps + 1))
    _no_duplicates(queue)


def test_a_lost_lease_kills_the_ranks(sqlite_queue, tmp_path):
    queue, _ = sqlite_queue
    queue.lease_s = 3.0
    runs = tmp_path / "runs"
    _enqueue(queue, "cancelled", [2], steps=200)
    worker = _worker(queue, runs, heartbeat_s=1.0)
    thread, out = _run_in_thread(worker)
    _wait_for(lambda: len(metrics_of(queue, 1, "loss")) >= 1, 120, "job 1's first step")
    pids = [_start(queue, runs, 1, 1, r)["pid"] for r in (0, 1)]
    operator.cancel(queue.engine, ids=[1])
    thread.join(timeout=60)
    assert not thread.is_alive(), "the worker hung"
    assert out["stats"].lost == 1
    _wait_for(lambda: not any(ranks._is_rank(pid) for pid in pids), 10, "the ranks' end")
    assert reports.job(queue.engine, 1).state == states.CANCELLED


def test_a_sigkilled_worker_takes_torchrun_and_its_ranks_with_it(sqlite_queue, tmp_path):
    import subprocess
    import sys

    queue, url = sqlite_queue
    runs = tmp_path / "runs"
    _enqueue(queue, "orphans", [2], steps=200)
    code = ("from jobs.pool import worker_main\nfrom jobs.worker import WorkerOptions\n"
            f"raise SystemExit(worker_main(WorkerOptions(url={url!r}, runs_dir={str(runs)!r}, heartbeat_s=1.0,"
            " poll_s=0.1, max_jobs=1)))\n")
    worker = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONWARNINGS": "ignore"},
                              cwd=Path(__file__).resolve().parents[2])
    try:
        pids = _wait_for(lambda: (s := [_start(queue, runs, 1, 1, r).get("pid") for r in (0, 1)]) and all(s) and s,
                         120, "both ranks' start")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        _wait_for(lambda: not any(ranks._is_rank(pid) for pid in pids), 15, "the orphaned ranks' end")
    finally:
        worker.kill()


def test_a_cell_whose_class_has_two_gpus_runs_as_two_ranks_without_a_ranks_setting(sqlite_queue, tmp_path):
    """The rank count comes from the job's resource class (``gpus: 2``), not from the spec: here
    two CPU ranks (gloo), as the class's two GPUs would be two GPU ranks."""
    from harness.enqueue import new_jobs
    from harness.grid import parse

    queue, _ = sqlite_queue
    runs = tmp_path / "runs"
    text = GRID.format(name="classed", steps=4, ranks="[0]").replace("axes: {ranks: [0]}", "axes: {seed: [7]}")
    text = text.replace("seed: 7, ", "") + "resources: {gpus: 2}\n"
    (job,) = new_jobs(parse(text))
    assert "ranks" not in job.spec and job.resource_class == "gpus=2"
    operator.enqueue(queue.engine, "classed", [job])
    stats = _worker(queue, runs).run()
    assert stats.succeeded == 1, [(a.outcome, a.error) for a in reports.attempts(queue.engine, 1)]
    starts = [_start(queue, runs, 1, 1, rank) for rank in (0, 1)]
    assert all(starts) and starts[0]["pid"] != starts[1]["pid"]
    assert ranks.read_json(_ranks_folder(queue, runs, 1, 1) / ranks.LAUNCH)["world_size"] == 2
    assert [p.step for p in metrics_of(queue, 1, "loss")] == [1, 2, 3, 4]
    _no_duplicates(queue)
