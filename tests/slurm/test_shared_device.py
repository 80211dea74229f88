"""A Slurm worker of a class with ``cells_per_gpu: 2`` on the real one-node cluster: one array
task runs two cells at once, each a child process with its own lease (the device share of
``gridlab work --cells-per-device``); ``scontrol requeue`` (SIGTERM) or ``USR2`` reaches both
cells, both checkpoint and hand their jobs back, and the requeued task resumes both from
there. The cells are CPU cells (the cluster has no GPUs): the class names no GPUs, so the memory probe
reads the machine's available memory (as `gridlab work --cells-per-device --cell-mem 1` does
locally), which a 1 MiB cell always fits."""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace

import pytest
from sqlalchemy import select

from db.models import attempts
from db.session import scope
from jobs import operator, reports, states
from tests.slurm.conftest import wait_gone
from tests.slurm.test_dispatch import (assert_metrics_once, backend, launch, on_both_backends, outcomes,  # noqa: F401
                                      queue, starts, steps_logged)
from tests.support.grids import make_jobs

pytestmark = pytest.mark.slurm

SHARED = "cpus=2,cells_per_gpu=2,cell_mem=1M"  # the probe is asked (MemAvailable here) and always fits


def _enqueue(queue, n: int, *, steps: int, delay: float) -> None:
    jobs = make_jobs(n, experiment="count", steps=steps, delay=delay, every=1000)  # no periodic checkpoint
    operator.enqueue(queue.engine, "g", [replace(j, resource_class=SHARED) for j in jobs])


def _spans(queue) -> list[tuple]:
    with scope(queue.engine, write=False) as conn:
        return conn.execute(select(attempts.c.job_id, attempts.c.worker, attempts.c.slurm_job_id,
                                   attempts.c.started_at, attempts.c.ended_at).order_by(attempts.c.id)).all()


@on_both_backends
def test_one_task_runs_two_cells_at_once_each_with_its_own_lease(queue, tmp_path):
    _enqueue(queue, 4, steps=6, delay=0.2)
    (jid,) = launch(tmp_path, queue)
    wait_gone([jid], timeout_s=240)
    assert reports.counts(queue.engine)[states.SUCCEEDED] == 4, [(a.outcome, a.error) for j in range(1, 5) for a in reports.attempts(queue.engine, j)]
    spans = _spans(queue)
    assert {s.slurm_job_id for s in spans} == {jid}
    assert len({s.worker for s in spans}) == 4, "each cell its own process and lease"
    overlap = max(sum(1 for o in spans if o.started_at <= s.started_at < o.ended_at) for s in spans)
    assert overlap == 2, "two cells ran at once, never more"
    # Each attempt records the two cells its device was shared between (cells_per_gpu: 2), and is
    # charged half its wall time x devices (no GPU here: devices is 0, so the share is what is checked).
    assert [(a.cells_sharing, a.device_seconds <= (a.ended_at - a.started_at) * a.devices / 2 + 0.01)
            for j in range(1, 5) for a in reports.attempts(queue.engine, j)] == [(2, True)] * 4
    for job_id in range(1, 5):
        assert_metrics_once(queue, job_id, 6)


@pytest.mark.parametrize("signal", ["requeue", "usr2"])
def test_a_signal_reaches_both_cells_which_checkpoint_and_resume(queue, signal, tmp_path):
    steps = 60
    _enqueue(queue, 2, steps=steps, delay=0.25)
    (jid,) = launch(tmp_path, queue)
    deadline = time.monotonic() + 180
    while not all(len(steps_logged(queue, j)) >= 8 for j in (1, 2)):  # both cells are under way
        assert time.monotonic() < deadline, "the two cells did not both start"
        time.sleep(0.2)
    subprocess.run(["scontrol", "requeue", jid] if signal == "requeue" else ["scancel", "-s", "USR2", jid], check=True)
    wait_gone([jid], timeout_s=240)

    for job_id in (1, 2):
        assert outcomes(queue, job_id) == [states.OUTCOME_PREEMPTED, states.OUTCOME_SUCCEEDED], \
            [(a.outcome, a.error) for a in reports.attempts(queue.engine, job_id)]
        first, second = reports.attempts(queue.engine, job_id)
        assert first.slurm_job_id == second.slurm_job_id == jid
        assert first.worker.startswith(f"slurm:{jid}.0@") and second.worker.startswith(f"slurm:{jid}.1@")
        begun = starts(tmp_path, job_id, queue)
        assert begun[0] == 0 and begun[1] >= 8, "resumed from the checkpoint taken on the signal, not scratch"
        assert second.resumed_from_step == begun[1]
        assert_metrics_once(queue, job_id, steps)
    firsts = [reports.attempts(queue.engine, j)[0] for j in (1, 2)]
    assert firsts[0].worker != firsts[1].worker
