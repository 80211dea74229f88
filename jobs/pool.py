"""Local worker processes: ``gridlab work --workers N``.

Each process builds its own engine (connections are never shared across a fork),
runs a :class:`jobs.worker.Worker` until the queue is empty, and exits.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class PoolOptions:
    url: str
    runner: str = "harness.experiments:run"
    runs_dir: str = "runs"
    heartbeat_s: float = 10.0
    lease_grace: float = 3.0  # a lease lasts this many heartbeat intervals
    poll_s: float = 0.5
    threads_per_worker: int | None = None
    log_level: int = logging.WARNING
    max_jobs: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: claim only jobs of this resource class (jobs.resources); None: any job
    resource_class: str | None = None


def worker_main(options: PoolOptions, index: int = 0) -> int:
    """Entry point of one worker process. Returns its exit code."""
    os.environ.update(options.env)
    # Libraries' own progress bars (lm-eval, datasets) would tear the parent's progress display.
    os.environ.setdefault("TQDM_DISABLE", "1")
    if options.threads_per_worker:
        os.environ.setdefault("OMP_NUM_THREADS", str(options.threads_per_worker))
    logging.basicConfig(level=options.log_level, format=f"[worker {index}] %(levelname)s %(message)s")

    from db import engine as db_engine
    from jobs.queue import Queue, WorkerInfo
    from jobs.worker import Worker, resolve_runner

    engine = db_engine.create(options.url)
    queue = Queue(engine, lease_s=options.heartbeat_s * options.lease_grace)
    worker = Worker(
        queue,
        resolve_runner(options.runner),
        info=WorkerInfo.here(resource_class=options.resource_class),
        runs_dir=Path(options.runs_dir),
        heartbeat_s=options.heartbeat_s,
        poll_s=options.poll_s,
        capture_output=True,
    )
    worker.install_signal_handlers()
    try:
        worker.run(max_jobs=options.max_jobs)
    finally:
        engine.dispose()
    return 0


def _child(options: PoolOptions, index: int) -> None:
    raise SystemExit(worker_main(options, index))


def start(options: PoolOptions, n: int) -> list[mp.process.BaseProcess]:
    """Start ``n`` worker processes (spawned, so no inherited connections or threads)."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_child, args=(options, i), name=f"gridlab-worker-{i}") for i in range(n)]
    for p in procs:
        p.start()
    return procs
