"""One rank of a job that runs as N ranks: ``python -m jobs.rank LAUNCH_FILE``, started by
torchrun for the worker that holds the job's lease (:mod:`jobs.ranks`).

A rank sets up ``torch.distributed`` (gloo on CPU; NCCL on the GPU of its ``LOCAL_RANK``),
builds its :class:`RankContext`, runs the job's runner and writes how it ended
(``rank-<r>.end.json``). Only rank 0 writes to the database and seals checkpoints:

- rank 0's context is a real :class:`jobs.context.JobContext` on the worker's lease (the
  lease's owner and attempt fence every write, from any process): metrics, summaries and
  checkpoints go through it as in a one-process job;
- the other ranks' ``log``, ``log_attention`` and ``summary`` do nothing (no database connection);
- ``checkpoint(path, step)`` is collective: every rank calls it (Trainer's ``on_save`` runs on
  each), a barrier makes sure every rank's files are in ``path`` (each writes its own RNG state
  there), rank 0 seals and records it, and a second barrier holds the others until it is
  recorded; every rank then has the same answer, the sealed checkpoint's path;
- ``should_stop()`` is True once the worker asked (``stop.json``), this rank got ``SIGTERM`` or
  ``USR2`` (Slurm signals every process of a job), or rank 0's lease is gone. It is this rank's
  view only: a training loop must agree on it across ranks at a step (the sft recipe does,
  :func:`harness.training.distributed.any_rank`), so that every rank checkpoints the same step.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from jobs import checkpoints, ranks, retry, runs
from jobs.context import JobContext
from jobs.errors import Diverged, Interrupted, LeaseLost
from jobs.records import JobRecord, Lease

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 4000


class RankContext(JobContext):
    """What rank ``rank`` of ``world_size`` sees (see the module)."""

    def __init__(self, queue, job: JobRecord, lease: Lease, run_dir: Path, *, rank: int, world_size: int,
                 stop_file: Path, metrics=None, lost: threading.Event | None = None,
                 marker: runs.Marker | None = None, identity: checkpoints.Identity | None = None,
                 resume: tuple[Path, int] | None = None) -> None:
        super().__init__(queue, job, lease, run_dir, metrics=metrics, stop=threading.Event(),
                         lost=lost or threading.Event(), identity=identity, marker=marker, resume=resume)
        self.rank = rank
        self.world_size = world_size
        self._stop_file = stop_file
        self._asked = False  # the worker's stop.json read

    def log(self, step, values) -> None:
        if self.is_main:
            super().log(step, values)

    def log_attention(self, step, phase, rows) -> None:
        if self.is_main:
            super().log_attention(step, phase, rows)

    def summary(self, values) -> None:
        if self.is_main:
            super().summary(values)

    def checkpoint(self, path, step) -> Path:
        barrier()  # every rank's files are in ``path``
        final = super().checkpoint(path, step) if self.is_main else \
            self.run_dir / checkpoints.FOLDER / checkpoints.name(int(step), self.attempt)
        barrier()  # rank 0 recorded it
        return final

    def should_stop(self) -> bool:
        if not self._asked and self._stop_file.exists():
            asked = ranks.read_json(self._stop_file) or {}
            self.stop_reason = asked.get("reason", self.stop_reason)
            self.stop_outcome = asked.get("outcome", self.stop_outcome)
            self._asked = True
            self._stop.set()
        return super().should_stop()

    def signalled(self, signum: int) -> None:
        """A signal handler's part: stop at the next step the ranks agree on."""
        if not self._stop.is_set():
            self.stop_reason = f"rank {self.rank} got {signal.Signals(signum).name}"
            self._stop.set()


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _init_process_group(local_rank: int) -> None:
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl", device_id=torch.device("cuda", local_rank))
    else:
        dist.init_process_group(backend="gloo")


def _context(launch: dict, folder: Path, rank: int, world_size: int) -> RankContext:
    job = JobRecord(**launch["job"])
    lease = Lease(**launch["lease"])
    run_dir = Path(launch["run_dir"])
    resume = (Path(launch["resume"][0]), int(launch["resume"][1])) if launch["resume"] else None
    identity = checkpoints.Identity(**launch["identity"])
    queue = writer = marker = None
    lost = threading.Event()  # set by rank 0's writer when a write is refused: the rank stops
    if rank == 0:
        from db import engine as db_engine
        from jobs.metrics import MetricsWriter
        from jobs.queue import Queue

        queue = Queue(db_engine.create(os.environ[ranks.URL_ENV]))
        marker = runs.Marker(runs.attempt_dir(run_dir, lease.attempt) / runs.MARKER, attempt=lease.attempt,
                             owner=lease.owner)
        writer = MetricsWriter(queue.engine, lease, lost=lost, on_write=marker.note)
    return RankContext(queue, job, lease, run_dir, rank=rank, world_size=world_size, stop_file=folder / ranks.STOP,
                       metrics=writer, lost=lost, marker=marker, identity=identity, resume=resume)


def main(argv: list[str]) -> int:
    """One rank's life (see the module). Exit code 0 only when the runner finished."""
    ranks.die_with_parent()
    launch_file = Path(argv[0])
    folder = launch_file.parent
    launch = json.loads(launch_file.read_text(encoding="utf-8"))
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    logging.basicConfig(level=logging.WARNING, format=f"[rank {rank}] %(levelname)s %(name)s %(message)s")
    resume_step = launch["resume"][1] if launch["resume"] else None
    ranks.write_json(ranks.start_record(folder, rank), {
        "rank": rank, "pid": os.getpid(), "host": socket.gethostname(), "resume_step": resume_step,
        "slurm_job_id": _slurm_job(), "t": time.time()})
    end: dict = {"rank": rank, "pid": os.getpid()}
    ctx = None
    try:
        if world_size != launch["world_size"]:
            raise RuntimeError(f"torchrun started {world_size} ranks, the job asked for {launch['world_size']}")
        ctx = _context(launch, folder, rank, world_size)
        for signum in (signal.SIGTERM, signal.SIGUSR2):
            signal.signal(signum, lambda s, _f: ctx.signalled(s))
        _init_process_group(int(os.environ.get("LOCAL_RANK", rank)))
        from jobs.worker import resolve_runner

        resolve_runner(launch["runner"])(ctx)
        _flush(ctx, wait=True, strict=True)
        end["outcome"] = ranks.SUCCEEDED
    except LeaseLost as exc:
        end.update(outcome=ranks.LOST, error=str(exc))
    except Diverged as exc:
        _flush(ctx, wait=True)
        end.update(outcome=ranks.DIVERGED, step=exc.step, detail=str(exc))
    except Interrupted as exc:
        _flush(ctx, wait=True)
        end.update(outcome=ranks.INTERRUPTED, reason=exc.reason, stop_outcome=exc.outcome)
    except BaseException as exc:  # noqa: BLE001 - every failure is recorded with its class
        _flush(ctx, wait=False)
        failure = retry.classify(exc)
        text = "".join(traceback.format_exception(exc))
        end.update(outcome=ranks.FAILED, failure=failure.outcome, error_type=failure.error_type,
                   error=text if len(text) <= MAX_ERROR_CHARS else "...\n" + text[-MAX_ERROR_CHARS:],
                   line=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    end["t"] = time.time()
    ranks.write_json(ranks.end_record(folder, rank), end)
    if end["outcome"] == ranks.SUCCEEDED:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        if ctx is not None and ctx.queue is not None:
            ctx.queue.engine.dispose()
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)  # a peer may be stuck in a collective with us: leave without waiting on anything


def _slurm_job() -> str | None:
    """The Slurm job this rank runs in, as sacct names it (``12_3`` for an array task)."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def _flush(ctx: RankContext | None, *, wait: bool, strict: bool = False) -> None:
    """Rank 0's buffered metrics to the database before its end is written."""
    if ctx is None or ctx.metrics is None:
        return
    try:
        ctx.metrics.flush(wait=wait)
    except LeaseLost:
        if strict:
            raise
    except Exception:  # the failure being recorded is what matters
        if strict:
            raise
        log.exception("rank 0 could not flush its metrics")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
