"""Local worker processes: ``gridlab work --workers N``.

Each process builds its own engine (connections are never shared across a fork),
runs a :class:`jobs.worker.Worker` until the queue is empty, and exits. Also here: cells
sharing this machine's one device (``gridlab work --cells-per-device``, and a Slurm worker of a
class with ``cells_per_gpu``), and the wait
for the local workers ``gridlab launch --executor local`` started.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

from jobs import reports
from jobs import workers as worker_jobs
from jobs.worker import WorkerOptions


def worker_main(options: WorkerOptions, index: int = 0) -> int:
    """Entry point of one worker process. Returns its exit code."""
    os.environ.update(options.env)
    # Libraries' own progress bars (lm-eval, datasets) would tear the parent's progress display.
    os.environ.setdefault("TQDM_DISABLE", "1")
    if options.threads_per_worker:
        os.environ.setdefault("OMP_NUM_THREADS", str(options.threads_per_worker))
    logging.basicConfig(level=options.log_level, format=f"[worker {index}] %(levelname)s %(message)s")

    from db import engine as db_engine
    from jobs.queue import Queue, WorkerInfo

    engine = db_engine.create(options.url)
    queue = Queue(engine, lease_s=options.lease_s)
    worker = options.worker(queue, WorkerInfo.here(resource_class=options.resource_class,
                                                   cells_sharing=options.cells_sharing))
    worker.install_signal_handlers()
    try:
        worker.run(max_jobs=options.max_jobs)
    finally:
        engine.dispose()
    return 0


def _child(options: WorkerOptions, index: int) -> None:
    raise SystemExit(worker_main(options, index))


def start(options: WorkerOptions, n: int, *, first_index: int = 0, target=_child) -> list[mp.process.BaseProcess]:
    """Start ``n`` worker processes (spawned, so no inherited connections or threads), each
    running ``target(options, index)`` (a module-level function: :func:`worker_main`'s, or a
    Slurm worker's cell, :func:`slurm.worker.cell_main`)."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=(options, first_index + i), name=f"gridlab-worker-{first_index + i}")
             for i in range(n)]
    for p in procs:
        p.start()
    return procs


def device_free_mib() -> float:
    """Free memory of this machine's device: the first visible GPU's (torch.cuda.mem_get_info),
    or, without one, the memory the kernel says is available (MemAvailable)."""
    from jobs.queue import visible_gpus

    if visible_gpus():
        import torch

        if torch.cuda.is_available():
            free, _total = torch.cuda.mem_get_info()
            return free / 2**20
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


@dataclass
class Sharing:
    """What ``share_device`` did: cells started, and how often it held one back for memory."""

    started: int = 0
    held_for_memory: int = 0
    most_at_once: int = 0


class DeviceShare:
    """Up to ``cells`` jobs at once on this machine's one device, each in a worker process of its
    own (its own lease, heartbeat, output file and memory accounting), until nothing of
    ``options.resource_class`` is left (:meth:`run`). A cell is started only while the device's
    free memory would fit it: ``cell_mib`` if stated, else the largest peak memory of finished
    cells of the class (:func:`jobs.reports.peak_memory`). Cells started less than ``ramp_s`` ago may not
    have allocated yet, so their share is held back too. With no cell running, one is started
    whatever the estimate (a cell that cannot fit the device alone fails on its own).

    :meth:`forward` sends a signal to every cell running now, and no cell starts after a stop
    (:meth:`run`'s ``stop``) has been seen: a Slurm worker relays USR2/SIGTERM this way, so each
    cell checkpoints and hands its job back (:class:`slurm.worker.SlurmWorker`)."""

    def __init__(self, queue, options: WorkerOptions, cells: int, *, cell_mib: float | None = None,
                 free_mib=device_free_mib, ramp_s: float = 30.0, poll_s: float = 0.5, target=_child) -> None:
        self.queue, self.options, self.cells, self.cell_mib = queue, options, cells, cell_mib
        self.free_mib, self.ramp_s, self.poll_s, self.target = free_mib, ramp_s, poll_s, target
        self._alive: list[tuple[mp.process.BaseProcess, float]] = []
        self._lock = threading.Lock()  # a start and a forwarded signal never cross
        self._stopped = False

    def forward(self, signum: int, *, stop: bool = True) -> list[int]:
        """Send ``signum`` to every live cell process (and, with ``stop``, start no more);
        returns their pids."""
        with self._lock:
            self._stopped = self._stopped or stop
            pids = []
            for p, _ in self._alive:
                if p.is_alive() and p.pid is not None:
                    try:
                        os.kill(p.pid, signum)
                        pids.append(p.pid)
                    except OSError:  # it ended meanwhile
                        pass
            return pids

    def run(self, stop=None) -> Sharing:
        report = Sharing()
        index = 0
        cls = self.options.resource_class
        while not self._stopped and (stop is None or not stop()):
            with self._lock:
                self._alive = [(p, t) for p, t in self._alive if p.is_alive()]
                alive = list(self._alive)
            report.most_at_once = max(report.most_at_once, len(alive))
            if reports.unfinished(self.queue.engine, resource_class=cls) == 0 and not alive:
                break
            runnable = reports.pending(self.queue.engine, resource_class=cls)
            ramping = sum(1 for _, t in alive if time.monotonic() - t < self.ramp_s)
            if len(alive) < self.cells and runnable > ramping:
                need = (self.cell_mib if self.cell_mib is not None
                        else reports.peak_memory(self.queue.engine, resource_class=cls))
                if not alive or need is None or self.free_mib() >= need * (1 + ramping):
                    with self._lock:
                        if self._stopped:
                            break
                        (proc,) = start(replace(self.options, max_jobs=1, cells_sharing=self.cells), 1,
                                        first_index=index, target=self.target)
                        self._alive.append((proc, time.monotonic()))
                    index += 1
                    report.started += 1
                    continue
                report.held_for_memory += 1
            time.sleep(self.poll_s)
        for p, _ in list(self._alive):
            p.join()
        return report


def share_device(queue, options: WorkerOptions, cells: int, *, cell_mib: float | None = None,
                 free_mib=device_free_mib, ramp_s: float = 30.0, poll_s: float = 0.5, stop=None) -> Sharing:
    """Run :class:`DeviceShare` here until the class's queue is done (or ``stop()``)."""
    return DeviceShare(queue, options, cells, cell_mib=cell_mib, free_mib=free_mib, ramp_s=ramp_s,
                       poll_s=poll_s).run(stop)


class SharedDevice(threading.Thread):
    """A :class:`DeviceShare` run in a thread, shaped like the worker processes ``gridlab work``
    watches (``is_alive``, ``terminate``, ``join``, ``exitcode``); ``share`` is the share
    itself (its ``forward`` relays signals to the cells)."""

    def __init__(self, queue, options: WorkerOptions, cells: int, cell_mib: float | None, *, target=_child) -> None:
        super().__init__(daemon=True)
        self.exitcode: int | None = None
        self.report: Sharing | None = None
        self._stop_sharing = threading.Event()
        self.share = DeviceShare(queue, options, cells, cell_mib=cell_mib, target=target)
        self.start()

    def run(self) -> None:
        try:
            self.report = self.share.run(stop=self._stop_sharing.is_set)
            self.exitcode = 0
        except Exception:  # noqa: BLE001 - reported as a failed worker, like a process's exit code
            logging.getLogger(__name__).exception("sharing the device failed")
            self.exitcode = 1

    def terminate(self) -> None:
        self._stop_sharing.set()


def stop(procs: list) -> None:
    """SIGTERM (workers checkpoint and hand their jobs back), then wait a minute at most for each."""
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(timeout=60)


def wait_launched(queue, launched_jobs: Iterable, *, executor: str = "local") -> dict[str, str | None]:
    """Wait for worker jobs this process started (submitit's local executor: its children),
    record in the queue how each ended, and return the failed ones: job id -> the last line
    of its error (None when it printed none)."""
    seen: dict[str, tuple[str, str | None]] = {}
    for job in launched_jobs:
        try:
            job.result()
            seen[str(job.job_id)] = ("COMPLETED", None)
        except Exception as exc:  # a worker that failed: keep waiting for the others
            text = str(exc).strip()
            seen[str(job.job_id)] = ("FAILED", text.splitlines()[-1][:500] if text else None)
    worker_jobs.update(queue.engine, executor, seen)
    return {job_id: error for job_id, (state, error) in seen.items() if state == "FAILED"}
