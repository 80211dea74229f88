"""The worker as a Slurm job: one array task runs :class:`jobs.worker.Worker` until the
queue is empty, and hands its job back when Slurm wants the node.

Signals (see slurm/cluster/NOTES.md for what was measured):

* ``USR2``, sent ``signal_delay_s`` before the time limit (``--signal``): submitit calls
  :meth:`SlurmWorker.checkpoint`, which asks the running experiment to stop, waits for
  it to checkpoint and hand the job back (:meth:`jobs.queue.Queue.release`, outcome
  ``timeout``), and returns a fresh worker for submitit to requeue.
* ``SIGTERM``, from ``scontrol requeue``, preemption, ``scancel`` or the time limit
  itself: submitit ignores it, so an unhandled SIGTERM would lose the work since the
  last periodic checkpoint. Here it stops the experiment the same way and hands the job
  back; the outcome says why (asked of ``scontrol`` for this job and node only):
  ``node_fail`` when the node is set down, ``preempted`` when Slurm is requeueing the
  job, ``timeout`` at the time limit, ``cancelled`` otherwise. Slurm
  requeues the job itself where it should; the process then exits without a result.

The experiment runs in a thread so that the main thread, where Python delivers
signals, is free to wait for it.

A worker of a class with ``cells_per_gpu: K`` (jobs.resources) shares its GPU: it claims
nothing itself, and runs up to K cells at once as child processes through
:class:`jobs.pool.DeviceShare` (the code ``gridlab work --cells-per-device`` runs), each a
:func:`cell_main` with its own lease, heartbeat and output. On ``USR2`` or ``SIGTERM`` it starts
no more cells and forwards the signal to the running ones; each takes it as a single worker
does (the same outcome, asked of ``scontrol`` by the cell itself: Slurm signals every process of
the job, so a cell may hear it twice and acts on the first), checkpoints and hands its job back,
and the worker waits for them before it exits or is requeued.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import submitit

from db.engine import redact as db_redact
from db.errors import GridlabError
from jobs import pool, resources, states
from jobs.worker import WorkerOptions
from slurm import durations

log = logging.getLogger(__name__)

_NAME = re.compile(r"^slurm:(?P<job>\d+(?:_\d+)?)\.(?P<restart>\d+)@")


class DatabaseUnreachableFromNode(GridlabError):
    """A worker on a compute node cannot open the database the launcher used."""


def worker_name(job_id: str, restart: int, node: str, pid: int) -> str:
    """The lease owner of a Slurm worker: which job, which start of it, where."""
    return f"slurm:{job_id}.{restart}@{node}:{pid}"


def parse_worker_name(name: str) -> tuple[str, int] | None:
    """(slurm job id, restart count) of a name from :func:`worker_name`, else None."""
    m = _NAME.match(name)
    return (m.group("job"), int(m.group("restart"))) if m else None


def slurm_job_id() -> str | None:
    """This process's job id as sacct shows it: ``12_3`` for an array task, else ``12``."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def worker_info(resource_class: str | None = None, cells_sharing: int = 1):
    """Where this worker runs, with the Slurm job, array index and node when in Slurm (and
    the cells its device is shared between)."""
    from jobs import provenance
    from jobs.queue import WorkerInfo

    host, pid = socket.gethostname(), os.getpid()
    job = slurm_job_id()
    if job is None:
        return WorkerInfo(name=f"local:{host}:{pid}", host=host, pid=pid, resource_class=resource_class,
                          cells_sharing=cells_sharing, provenance=provenance.current())
    node = os.environ.get("SLURMD_NODENAME") or host.split(".")[0]
    restart = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    index = os.environ.get("SLURM_ARRAY_TASK_ID")
    return WorkerInfo(name=worker_name(job, restart, node, pid), host=host, pid=pid, slurm_job_id=job,
                      slurm_array_index=int(index) if index else None, node=node, resource_class=resource_class,
                      cells_sharing=cells_sharing, provenance=provenance.current())


def open_queue(options: WorkerOptions):
    """The queue, or a one-line error naming this node when the database is out of reach."""
    from db import database
    from db.errors import DatabaseUnavailable, NoDatabase, SchemaMismatch
    from jobs.queue import Queue

    try:
        engine = database.open_engine(options.url)
    except (DatabaseUnavailable, SchemaMismatch) as exc:
        node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
        what = (f"cannot use database {db_redact(options.url)}: no such file on this node"
                if isinstance(exc, NoDatabase) else exc.what)
        raise DatabaseUnreachableFromNode(
            f"worker on node {node}: {what}",
            "give a database every compute node can reach (PostgreSQL on a host the nodes see, "
            "or SQLite on a shared filesystem), e.g. `gridlab launch --db postgresql://USER@DBHOST/gridlab`",
        ) from None
    return Queue(engine, lease_s=options.lease_s)


class SlurmWorker(submitit.helpers.Checkpointable):
    """The callable submitit runs in each array task: ``SlurmWorker()(options)``."""

    def __init__(self) -> None:
        self._worker = None
        self._options: WorkerOptions | None = None
        self._thread: threading.Thread | None = None
        self._share: pool.SharedDevice | None = None
        self._error: BaseException | None = None
        self._signalled = False

    def __call__(self, options: WorkerOptions) -> dict[str, Any]:
        from slurm import secrets

        os.environ.update(options.env)
        if options.threads_per_worker:
            os.environ.setdefault("OMP_NUM_THREADS", str(options.threads_per_worker))
        options = secrets.load(options)
        logging.basicConfig(level=options.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)
        self._options = options
        info = worker_info(options.resource_class)
        queue = open_queue(options)
        resource_class = resources.from_name(options.resource_class or resources.DEFAULT)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        if resource_class.cells() > 1:
            return self._share_device(queue, options, resource_class, info.name)
        self._worker = options.worker(queue, info)
        log.info("worker %s started (db %s)", info.name, db_redact(queue.engine.url))
        self._thread = threading.Thread(target=self._run, name="gridlab-worker", daemon=True)
        self._thread.start()
        while self._thread.is_alive():
            self._thread.join(0.5)  # short waits: the main thread must stay free for signals
        queue.engine.dispose()
        if self._signalled:
            # Slurm is taking the node back (requeue, preemption, cancel): no result file,
            # so submitit does not take this start for the job's end.
            log.info("worker %s stopped on signal; exiting", info.name)
            sys.exit(-1)
        if self._error is not None:
            raise self._error
        stats = self._worker.stats
        log.info("worker %s done: %s", info.name, stats)
        return {"worker": info.name, **stats.__dict__}

    def _run(self) -> None:
        try:
            self._worker.run(max_jobs=self._options.max_jobs)
        except BaseException as exc:  # re-raised in the main thread
            self._error = exc

    def _share_device(self, queue, options: WorkerOptions, resource_class: resources.Resources,
                      name: str) -> dict[str, Any]:
        """Run up to the class's ``cells_per_gpu`` cells at once in child processes
        (:func:`cell_main`) until the class's queue is done, or a signal stops it (see the module)."""
        cells = resource_class.cells()
        if options.threads_per_worker is None:  # the task's CPUs, split between its cells
            options = replace(options, threads_per_worker=max(1, len(os.sched_getaffinity(0)) // cells))
        log.info("worker %s shares its device between up to %d cells (db %s)", name, cells, db_redact(queue.engine.url))
        self._share = pool.SharedDevice(queue, options, cells, resource_class.cell_mib(), target=cell_main)
        self._thread = self._share
        while self._share.is_alive():
            self._share.join(0.5)  # short waits: the main thread must stay free for signals
        queue.engine.dispose()
        if self._signalled:
            log.info("worker %s stopped on signal; exiting", name)
            sys.exit(-1)
        if self._share.exitcode:
            raise RuntimeError(f"worker {name}: sharing the device failed (see its log)")
        report = self._share.report
        log.info("worker %s done: %s", name, report)
        return {"worker": name, **report.__dict__}

    def _stop_and_wait(self, reason: str, outcome: str, wait_s: float, signum: int = signal.SIGTERM) -> None:
        if self._share is not None:
            pids = self._share.share.forward(signum)
            self._share.terminate()
            log.warning("%s: forwarded to the %d running cell(s) %s; each checkpoints and hands its job back",
                        reason, len(pids), pids)
            self._share.join(wait_s)
            if self._share.is_alive():
                log.error("cells still running after %.0f s; their leases will expire and they resume from "
                          "their last checkpoints", wait_s)
            return
        if self._worker is None or self._thread is None:
            return
        log.warning("%s: asking the running experiment to checkpoint and hand its job back (%s)", reason, outcome)
        self._worker.request_stop(reason, outcome)
        self._thread.join(wait_s)
        if self._thread.is_alive():
            log.error("the experiment did not stop within %.0f s; its lease will expire and it resumes "
                      "from its last checkpoint", wait_s)

    def _on_sigterm(self, signum, _frame) -> None:
        self._signalled = True
        outcome = why_terminated()
        self._stop_and_wait(f"Slurm sent SIGTERM ({outcome})", outcome, wait_s=60.0)

    def checkpoint(self, options: WorkerOptions) -> submitit.helpers.DelayedSubmission:
        """submitit's USR2 hook (time limit near, or a preemption signal)."""
        outcome = usr2_outcome()
        self._stop_and_wait(f"Slurm sent USR2 ({outcome})", outcome, wait_s=max(5.0, _time_left_s() - 5.0),
                            signum=signal.SIGUSR2)
        return submitit.helpers.DelayedSubmission(SlurmWorker(), options)


def cell_main(options: WorkerOptions, index: int) -> None:
    """One cell of a Slurm worker that shares its device (a child process started through
    :class:`jobs.pool.DeviceShare`): a worker for one job, named for this Slurm job, that takes
    ``USR2`` and ``SIGTERM`` as a single Slurm worker does: it asks its experiment to checkpoint
    and hand the job back, with the outcome Slurm's reason gives (the first signal decides; the
    same one forwarded by the parent changes nothing)."""
    os.environ.update(options.env)
    if options.threads_per_worker:
        os.environ.setdefault("OMP_NUM_THREADS", str(options.threads_per_worker))
    os.environ.setdefault("TQDM_DISABLE", "1")
    worker = None
    heard: list[str] = []

    def on_signal(signum, _frame) -> None:
        if heard:
            return
        name = signal.Signals(signum).name
        heard.append(name)
        outcome = why_terminated() if signum == signal.SIGTERM else usr2_outcome()
        log.warning("cell %d: Slurm sent %s (%s); checkpointing and handing the job back", index, name, outcome)
        if worker is not None:
            worker.request_stop(f"Slurm sent {name} ({outcome})", outcome)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGUSR2, on_signal)
    logging.basicConfig(level=options.log_level, format=f"%(asctime)s [cell {index}] %(name)s %(levelname)s %(message)s",
                        force=True)
    queue = open_queue(options)
    try:
        worker = options.worker(queue, worker_info(options.resource_class, options.cells_sharing))
        if heard:  # signalled while starting: claim nothing
            return
        worker.run(max_jobs=options.max_jobs)
    finally:
        queue.engine.dispose()


def usr2_outcome() -> str:
    """USR2: the time limit is near (``timeout``), else a preemption that warns first."""
    return states.OUTCOME_TIMEOUT if _near_time_limit() else states.OUTCOME_PREEMPTED


# --- asking Slurm why: one scontrol call for this job only ------------------------------


def _scontrol_show(kind: str, name: str | None) -> dict[str, str]:
    if not name:
        return {}
    try:
        out = subprocess.run(["scontrol", "show", kind, "-o", name], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return dict(part.split("=", 1) for part in out.split() if "=" in part)


def _job_fields() -> dict[str, str]:
    return _scontrol_show("job", os.environ.get("SLURM_JOB_ID"))


def _node_down() -> bool:
    state = _scontrol_show("node", os.environ.get("SLURMD_NODENAME")).get("State", "")
    return any(flag in state for flag in ("DOWN", "DRAIN", "FAIL", "NOT_RESPONDING"))


def _time_left_s(fields: dict[str, str] | None = None) -> float:
    """Seconds until this job's time limit, from scontrol's RunTime and TimeLimit (an hour
    when either is missing or has no figure, e.g. UNLIMITED)."""
    fields = _job_fields() if fields is None else fields
    run, limit = durations.seconds_or_none(fields.get("RunTime")), durations.seconds_or_none(fields.get("TimeLimit"))
    return 3600.0 if run is None or limit is None else max(0.0, float(limit - run))


def _near_time_limit() -> bool:
    # Slurm checks signal times about every 30 s, so USR2 may come that much early.
    delay = float(os.environ.get("GRIDLAB_SIGNAL_DELAY_S", "90"))
    return _time_left_s() <= delay + 60


def why_terminated() -> str:
    """SIGTERM: node going down, requeue/preemption (Slurm counted a restart), time
    limit, or cancel."""
    if _node_down():
        return states.OUTCOME_NODE_FAIL
    fields = _job_fields()
    mine = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    try:
        restarts = int(fields.get("Restarts", mine))
    except ValueError:
        restarts = mine
    if restarts > mine:
        return states.OUTCOME_PREEMPTED
    if fields and _time_left_s(fields) <= 5:
        return states.OUTCOME_TIMEOUT
    return states.OUTCOME_CANCELLED
