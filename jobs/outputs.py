"""What jobs produce besides figures: generated answers and judges' verdicts.

Writes are fenced like every write made under a lease (:func:`jobs.queries.fence`): each
batch first checks, in the same transaction, that the writer's lease is still the job's
current one. A row whose key is already stored (a retried attempt re-writing an answer, a
judge resuming) is kept as it was, never replaced: a job's outputs are fixed once written,
so a verdict on them stays valid. The statements are the queue's (:mod:`jobs.queries`:
``insert_generations``, ``insert_judgments``) and the reads the shared views'
(:mod:`db.views`), which hand back frozen records. Experiments reach all of this through
their job context (:class:`jobs.context.JobContext`), never through the engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.engine import Engine

from db import views
from db.session import scope
from db.views import (  # noqa: F401  (the records of jobs' outputs, named here for their writers)
    ArmJob,
    ArmTiming,
    Generation,
    JudgeRecord,
    Judgment,
    StoredGeneration,
    StoredJudgment,
)
from jobs import queries
from jobs.records import Lease

# --- writing ----------------------------------------------------------------------


def write_generations(engine: Engine, lease: Lease, rows: Sequence[Generation]) -> int:
    """Store ``rows`` for the lease's job; returns how many were new. Raises LeaseLost
    (and writes nothing) if the lease is no longer held."""
    if not rows:
        return 0
    values = [
        {"job_id": lease.job_id, "attempt": lease.attempt, "prompt_set": r.prompt_set,
         "question_id": str(r.question_id), "category": r.category, "turn": int(r.turn), "prompt": r.prompt,
         "output": r.output, "new_tokens": int(r.new_tokens), "latency_s": float(r.latency_s),
         "decoding": dict(r.decoding)}
        for r in rows
    ]
    with scope(engine) as conn:
        queries.fence(conn, lease, f"{len(rows)} generations")
        return queries.insert_generations(conn, values)


def write_judgments(engine: Engine, lease: Lease, rows: Sequence[Judgment]) -> int:
    """Store a judge job's verdicts; returns how many were new. Fenced like
    :func:`write_generations`."""
    if not rows:
        return 0
    for r in rows:
        if r.winner not in views.WINNERS:
            raise ValueError(f"winner must be 'a', 'b' or 'tie', got {r.winner!r}")
    values = [
        {"job_id": lease.job_id, "arm_a": r.arm_a, "arm_b": r.arm_b, "judge": r.judge, "prompt_set": r.prompt_set,
         "question_id": str(r.question_id), "turn": int(r.turn), "winner": r.winner, "logit": float(r.logit)}
        for r in rows
    ]
    with scope(engine) as conn:
        queries.fence(conn, lease, f"{len(rows)} judgments")
        return queries.insert_judgments(conn, values)


# --- reading (each one read-only transaction over db.views) ----------------------------


def generations_of(engine: Engine, job_id: int, *, prompt_set: str | None = None) -> list[StoredGeneration]:
    """A job's answers, in (prompt set, question, turn) order."""
    with scope(engine, write=False) as conn:
        return views.generations_of(conn, job_id, prompt_set=prompt_set)


def prompt_sets_of(engine: Engine, job_id: int) -> dict[str, int]:
    """Prompt set -> number of answers the job stored for it."""
    with scope(engine, write=False) as conn:
        return views.prompt_sets_of(conn, job_id)


def judgments_of(engine: Engine, judge_job_id: int) -> list[StoredJudgment]:
    """A judge job's verdicts, in (prompt set, question, turn) order."""
    with scope(engine, write=False) as conn:
        return views.judgments_of(conn, judge_job_id)


def judged_keys(engine: Engine, judge_job_id: int) -> set[tuple[str, str, int]]:
    """(prompt set, question id, turn) already judged by this judge job."""
    with scope(engine, write=False) as conn:
        return views.judged_keys(conn, judge_job_id)


def arm_jobs(engine: Engine, grid_id: int, spec_hashes: Iterable[str]) -> dict[str, ArmJob]:
    """Jobs of grid ``grid_id`` by spec hash (those that exist)."""
    with scope(engine, write=False) as conn:
        return views.arm_jobs(conn, grid_id, spec_hashes)


def grid_judgments(engine: Engine, grid: str, *, experiment: str = "judge") -> list[JudgeRecord]:
    """Every judge job of ``grid`` (by experiment name) with its stored verdicts."""
    with scope(engine, write=False) as conn:
        return views.grid_judgments(conn, grid, experiment=experiment)


def grid_outputs(engine: Engine, grid: str) -> list[ArmTiming]:
    """Per job and prompt set of ``grid``: answers, tokens and latency stored, and the
    job's summaries (where timing totals and perplexities are kept)."""
    with scope(engine, write=False) as conn:
        return views.grid_outputs(conn, grid)


def grid_names_with_outputs(engine: Engine) -> list[str]:
    """Grids that have any stored answer."""
    with scope(engine, write=False) as conn:
        return views.grid_names_with_outputs(conn)
