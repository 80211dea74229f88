"""What an experiment sees while it runs: its job, its lease, its folders and the metrics API."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jobs import checkpoints, outputs, runs
from jobs.errors import LeaseLost
from jobs.metrics import MetricsWriter, retry_through_outage
from jobs.queue import Queue
from jobs.records import JobRecord, Lease

log = logging.getLogger(__name__)


class JobContext:
    """Handed to the experiment function: ``run(ctx)``.

    - ``ctx.spec``: the resolved spec (every setting of this grid cell);
    - ``ctx.log(step, {"loss": ...})`` / ``ctx.summary({...})``: figures to the database;
    - ``ctx.log_attention(step, phase, rows)``: one attention probe's rows (one per layer, the
      head values as lists) to the database's ``attention_rows``, buffered and fenced with the
      metrics (:meth:`jobs.metrics.MetricsWriter.log_attention`): stored before any checkpoint
      is sealed, cut back with the curve when a later attempt resumes;
    - ``ctx.run_dir``: the cell's run folder (:mod:`jobs.runs`), shared by its attempts;
    - ``ctx.attempt_dir``: this attempt's own folder: write checkpoints here (Trainer's
      ``output_dir``), never straight into the run folder;
    - ``ctx.resume_from`` / ``ctx.resume_step``: the sealed checkpoint the database recorded
      for the job, verified as this run's (:func:`jobs.checkpoints.verify`), and its step; None
      for a fresh start. The job's stored curve has already been cut back to that step;
    - ``ctx.checkpoint(path, step)``: make the directory ``path`` (written by this attempt)
      the job's checkpoint at ``step``: metrics logged so far are stored, the lease is checked,
      the directory sealed, moved into the run's ``checkpoints/`` under this attempt's own
      name and recorded on the job, and older ones pruned (:mod:`jobs.checkpoints`). In that
      order, any recorded checkpoint has all its metrics in the database, and an attempt that
      lost its lease can neither record, nor overwrite, nor prune a checkpoint;
    - ``ctx.store_generations(answers)`` / ``ctx.store_judgments(verdicts)``: what the job
      produces besides figures (:mod:`jobs.outputs`), fenced by the lease; ``ctx.arm_jobs``,
      ``ctx.generations_of``, ``ctx.judgments_of`` and ``ctx.judged_keys`` read them back.
      An experiment stores and reads through these, never through the engine;
    - ``ctx.should_stop()``: True when the worker must stop (signal, preemption, time
      limit, or the lease was lost): save a checkpoint and raise ``jobs.errors.Interrupted``;
    - ``ctx.rank`` / ``ctx.world_size`` / ``ctx.is_main``: 0, 1 and True here; a job that runs
      as N ranks (:mod:`jobs.ranks`) gives each rank a :class:`jobs.rank.RankContext`, where
      only rank 0 writes.
    """

    rank: int = 0
    world_size: int = 1

    def __init__(self, queue: Queue, job: JobRecord, lease: Lease, run_dir: Path, *,
                 metrics: MetricsWriter, stop: threading.Event, lost: threading.Event,
                 identity: checkpoints.Identity | None = None, marker: runs.Marker | None = None,
                 resume: tuple[Path, int] | None = None) -> None:
        self.queue = queue
        self.job = job
        self.lease = lease
        self.run_dir = Path(run_dir)
        self.metrics = metrics
        self.identity = identity or checkpoints.Identity(database_id="", job_id=job.id, spec_hash=job.spec_hash)
        self.marker = marker
        self._resume = resume
        self._stop = stop
        self._lost = lost
        self.stop_reason: str = "worker stopping"
        self.stop_outcome: str = "stopped"

    @property
    def spec(self) -> dict[str, Any]:
        return self.job.spec

    @property
    def attempt(self) -> int:
        return self.lease.attempt

    @property
    def attempt_dir(self) -> Path:
        return runs.attempt_dir(self.run_dir, self.lease.attempt)

    @property
    def resume_from(self) -> Path | None:
        return self._resume[0] if self._resume else None

    @property
    def resume_step(self) -> int | None:
        return self._resume[1] if self._resume else None

    def log(self, step: int, values: Mapping[str, float]) -> None:
        self.metrics.log(step, values)

    def log_attention(self, step: int, phase: str, rows: Iterable[Mapping[str, Any]]) -> None:
        self.metrics.log_attention(step, phase, rows)

    def summary(self, values: Mapping[str, float]) -> None:
        self.metrics.flush(wait=True)
        self.metrics.summary(values)

    def checkpoint(self, path: str | Path, step: int) -> Path:
        """Seal the directory ``path`` as the job's checkpoint at ``step`` (see the class)."""
        path, step = Path(path), int(step)
        self.metrics.flush(wait=True)
        self.metrics.fence()  # even with no metrics to flush: no lease, no checkpoint
        checkpoints.seal(path, step=step, attempt=self.attempt, identity=self.identity)
        self.metrics.fence()
        final = checkpoints.adopt(path, self.run_dir, step=step, attempt=self.attempt)
        began = time.time()
        try:
            retry_through_outage(lambda: self.queue.set_checkpoint(self.lease, str(final), step),
                                 what=f"job {self.lease.job_id} checkpoint record")
        except LeaseLost:
            self._lost.set()
            shutil.rmtree(final, ignore_errors=True)  # ours alone (the attempt's own name): not recorded, not kept
            raise
        if self.marker is not None:
            self.marker.note("checkpoint", t=began, step=step)
        self.metrics.fence()
        checkpoints.prune(self.run_dir, keep=final, keep_step=step, attempt=self.attempt)
        return final

    # --- answers and verdicts (jobs.outputs) ---------------------------------------------

    def store_generations(self, answers: Sequence[outputs.Generation]) -> int:
        """Store this job's answers (fenced; an answer already stored is kept): how many were new."""
        return outputs.write_generations(self.queue.engine, self.lease, answers)

    def store_judgments(self, verdicts: Sequence[outputs.Judgment]) -> int:
        """Store this judge job's verdicts (fenced; a verdict already stored is kept): how many were new."""
        return outputs.write_judgments(self.queue.engine, self.lease, verdicts)

    def arm_jobs(self, spec_hashes: Iterable[str]) -> dict[str, outputs.ArmJob]:
        """Jobs of this job's grid by spec hash (those that exist)."""
        return outputs.arm_jobs(self.queue.engine, self.job.grid_id, spec_hashes)

    def generations_of(self, job_id: int | None = None, *,
                       prompt_set: str | None = None) -> list[outputs.StoredGeneration]:
        """The answers job ``job_id`` (this one, by default) stored."""
        return outputs.generations_of(self.queue.engine, self.job.id if job_id is None else job_id,
                                      prompt_set=prompt_set)

    def judgments_of(self, job_id: int | None = None) -> list[outputs.StoredJudgment]:
        """The verdicts judge job ``job_id`` (this one, by default) stored."""
        return outputs.judgments_of(self.queue.engine, self.job.id if job_id is None else job_id)

    def judged_keys(self) -> set[tuple[str, str, int]]:
        """(prompt set, question id, turn) this judge job has already judged."""
        return outputs.judged_keys(self.queue.engine, self.job.id)

    def should_stop(self) -> bool:
        return self._stop.is_set() or self._lost.is_set()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def lease_lost(self) -> bool:
        return self._lost.is_set()
