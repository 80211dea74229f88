"""The Slurm-side worker (slurm.worker): its lease-owner names, and a node that cannot
reach the database; sbatch's refusal as one line (slurm.launch)."""

from __future__ import annotations

import pytest

from jobs import states
from jobs.worker import WorkerOptions
from slurm.launch import sbatch_error
from slurm.worker import DatabaseUnreachableFromNode, open_queue, parse_worker_name, worker_name

pytestmark = pytest.mark.unit


def test_worker_names_round_trip():
    assert parse_worker_name(worker_name("12_3", 2, "node7", 99)) == ("12_3", 2)
    assert parse_worker_name("vm:1234") is None


def test_sbatch_error_is_its_last_line_without_prefix():
    text = ("sbatch: error: invalid partition specified: nosuch\n"
            "sbatch: error: Batch job submission failed: Invalid partition name specified\n")
    assert sbatch_error(text) == "Invalid partition name specified"
    assert sbatch_error("sbatch: error: Memory specification can not be satisfied") == "Memory specification can not be satisfied"


def test_a_node_without_the_database_fails_early_with_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURMD_NODENAME", "node7")
    with pytest.raises(DatabaseUnreachableFromNode) as err:
        open_queue(WorkerOptions(url=f"sqlite:///{tmp_path / 'missing.db'}"))
    text = str(err.value)
    assert text.startswith("worker on node node7: cannot use database sqlite:///") and "\n" not in text
    assert "missing.db: no such file on this node; give a database" in text
    assert "every compute node can reach" in text
    assert not (tmp_path / "missing.db").exists()


def test_an_unreachable_postgresql_is_named_too(monkeypatch):
    monkeypatch.setenv("SLURMD_NODENAME", "node7")
    with pytest.raises(DatabaseUnreachableFromNode, match=r"^worker on node node7: cannot reach database postgresql\+psycopg://gridlab@127\.0\.0\.1:1/gridlab: .*Connection refused; give a database every compute node can reach"):
        open_queue(WorkerOptions(url="postgresql://gridlab@127.0.0.1:1/gridlab"))


# --- why SIGTERM came, and whether the time limit is near: scontrol, faked at the boundary ---


@pytest.fixture
def slurm_job(fake_slurm, monkeypatch):
    """This process as a worker in the fake Slurm's job, on node fake1, in its first start."""
    job = fake_slurm.submit()
    fake_slurm.start(job)
    monkeypatch.setenv("SLURM_JOB_ID", job)
    monkeypatch.setenv("SLURMD_NODENAME", "fake1")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    monkeypatch.setenv("GRIDLAB_SIGNAL_DELAY_S", "90")
    return job


@pytest.mark.parametrize("node_state, requeued, run_time, outcome", [
    ("DOWN+DRAIN", False, "00:10:00", states.OUTCOME_NODE_FAIL),  # scontrol update nodename=... state=down
    ("NOT_RESPONDING", False, "00:10:00", states.OUTCOME_NODE_FAIL),
    ("MIXED", True, "00:10:00", states.OUTCOME_PREEMPTED),  # Slurm counted a restart: requeue or preemption
    ("MIXED", False, "00:59:57", states.OUTCOME_TIMEOUT),  # the time limit itself
    ("MIXED", False, "00:10:00", states.OUTCOME_CANCELLED),  # scancel
])
def test_why_sigterm_came(fake_slurm, slurm_job, node_state, requeued, run_time, outcome):
    from slurm.worker import why_terminated

    fake_slurm.set_node("fake1", node_state)
    fake_slurm.set_times(slurm_job, run_time=run_time, time_limit="01:00:00")
    if requeued:
        fake_slurm.requeue(slurm_job)
    assert why_terminated() == outcome
    asked = [c for c in fake_slurm.calls if c[0] == "scontrol"]
    assert all(c[-1] in (slurm_job, "fake1") for c in asked)  # about this job and node only


@pytest.mark.parametrize("run_time, time_limit, near", [
    ("1-01:58:00", "1-02:00:00", True),  # 120 s left: within the 90 s delay and a minute of slack
    ("1-00:00:00", "1-02:00:00", False),
    ("1-00:00:00", "1-02", False),  # two hours left (once read as a day and two seconds: "near")
    ("00:00:05", "UNLIMITED", False),
])
def test_usr2_is_a_timeout_only_near_the_time_limit(fake_slurm, slurm_job, run_time, time_limit, near):
    from slurm.worker import _near_time_limit

    fake_slurm.set_times(slurm_job, run_time=run_time, time_limit=time_limit)
    assert _near_time_limit() is near


# --- a worker whose class shares its GPU: signals forwarded to its cells ----------------------


class _Pending:
    """A queue with ``n`` jobs of the class pending for ever (the cells here claim nothing): its
    ``engine`` stands in for a database, and :func:`_pending_reports` makes the queue's reports
    (:mod:`jobs.reports`) answer from it."""

    def __init__(self, n: int) -> None:
        self.engine = self
        self.n = n


def _pending_reports(monkeypatch) -> None:
    from jobs import reports

    monkeypatch.setattr(reports, "unfinished", lambda engine, *, resource_class=None: engine.n)
    monkeypatch.setattr(reports, "pending", lambda engine, *, resource_class=None: engine.n)
    monkeypatch.setattr(reports, "peak_memory", lambda engine, *, resource_class=None: None)


def _ready(folder, cells: int, timeout_s: float = 60.0) -> list[int]:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = sorted(folder.glob("cell-*.ready"))
        if len(found) == cells:
            return [int(p.read_text()) for p in found]
        time.sleep(0.05)
    raise AssertionError(f"{cells} cells were not ready within {timeout_s:.0f} s")


@pytest.mark.parametrize("signum", ["SIGUSR2", "SIGTERM"])
def test_a_sharing_worker_forwards_usr2_and_sigterm_to_every_cell_and_starts_no_more(
        fake_slurm, slurm_job, tmp_path, monkeypatch, signum):
    import signal
    import submitit

    from jobs import pool
    from slurm import worker as slurm_worker
    from tests.support import cells

    fake_slurm.set_times(slurm_job, run_time="00:10:00", time_limit="01:00:00")
    options = WorkerOptions(url="sqlite://", runs_dir=str(tmp_path), resource_class="cpus=2,cells_per_gpu=2")
    worker = slurm_worker.SlurmWorker()
    _pending_reports(monkeypatch)
    worker._share = pool.SharedDevice(_Pending(5), options, 2, None, target=cells.signal_echo)
    worker._share.share.poll_s = 0.05
    pids = _ready(tmp_path, 2)
    if signum == "SIGUSR2":  # submitit's checkpoint hook: the cells stop, then the worker is resubmitted
        delayed = worker.checkpoint(options)
        assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    else:
        worker._on_sigterm(signal.SIGTERM, None)
    assert not worker._share.is_alive(), "the worker waits for its cells"
    got = {p.name: int(p.read_text()) for p in tmp_path.glob(f"cell-*.{signum}")}
    assert sorted(got.values()) == sorted(pids) and len(got) == 2, got
    assert worker._share.report.started == 2, "no cell started after the signal"
    assert worker._share.exitcode == 0


def test_a_sharing_worker_gives_its_device_share_the_class_s_cells_and_cell_memory(tmp_path, monkeypatch):
    from jobs import pool
    from slurm import worker as slurm_worker

    made = {}

    class Share:
        def __init__(self, queue, options, cells, cell_mib, *, target):
            made.update(cells=cells, cell_mib=cell_mib, target=target, threads=options.threads_per_worker)
            self.exitcode, self.report = 0, pool.Sharing(started=3)

        def is_alive(self) -> bool:
            return False

    class Queue:
        class engine:
            url = "sqlite://"

            @staticmethod
            def dispose() -> None:
                pass

    monkeypatch.setattr(pool, "SharedDevice", Share)
    monkeypatch.setattr(slurm_worker.signal, "signal", lambda *args: None)  # leave pytest's SIGTERM alone
    monkeypatch.setattr(slurm_worker, "open_queue", lambda options: Queue())
    monkeypatch.setattr(slurm_worker, "worker_info", lambda cls: type("Info", (), {"name": "w"})())
    options = WorkerOptions(url="sqlite://", resource_class="gpus=1,cells_per_gpu=3,cell_mem=2G")
    out = slurm_worker.SlurmWorker()(options)
    assert made["cells"] == 3 and made["cell_mib"] == 2048 and made["target"] is slurm_worker.cell_main
    assert made["threads"] >= 1 and out["started"] == 3
