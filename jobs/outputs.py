"""What jobs produce besides figures: generated answers and judges' verdicts.

Writes are fenced like :mod:`jobs.metrics`: each batch first checks, in the same
transaction, that the writer's lease is still the job's current one. A row whose key
is already stored (a retried attempt re-writing an answer, a judge resuming) is kept
as it was, never replaced: a job's outputs are fixed once written, so a verdict on
them stays valid. Reads hand back frozen records. Every statement on the
``generations`` and ``judgments`` tables lives here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from db import clock
from db.models import generations, grids, jobs, judgments, summaries
from db.session import scope
from jobs import queries
from jobs.errors import LeaseLost
from jobs.records import Lease


@dataclass(frozen=True)
class Generation:
    """One answer: ``turn`` counts from 1; ``latency_s`` is the wall time of the batch
    the prompt was generated in."""

    prompt_set: str
    question_id: str
    category: str | None
    turn: int
    prompt: str
    output: str
    new_tokens: int
    latency_s: float
    decoding: dict[str, Any]


@dataclass(frozen=True)
class StoredGeneration(Generation):
    job_id: int = 0
    attempt: int = 0


@dataclass(frozen=True)
class Judgment:
    """A verdict on arm a's and arm b's answers to one prompt and turn; ``logit`` > 0
    prefers a."""

    arm_a: int
    arm_b: int
    judge: str
    prompt_set: str
    question_id: str
    turn: int
    winner: str  # "a", "b" or "tie"
    logit: float


@dataclass(frozen=True)
class StoredJudgment(Judgment):
    job_id: int = 0


@dataclass(frozen=True)
class ArmJob:
    """A job of a grid, found by spec hash."""

    id: int
    spec_hash: str
    state: str
    factors: dict[str, Any]


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
        _fence(conn, lease, f"{len(rows)} generations")
        stmt = (
            _insert(conn, generations)
            .values(created_at=clock.now())
            .on_conflict_do_nothing(index_elements=["job_id", "prompt_set", "question_id", "turn"])
            .returning(generations.c.id)
        )
        return len(conn.execute(stmt, values).all())


def write_judgments(engine: Engine, lease: Lease, rows: Sequence[Judgment]) -> int:
    """Store a judge job's verdicts; returns how many were new. Fenced like
    :func:`write_generations`."""
    if not rows:
        return 0
    for r in rows:
        if r.winner not in ("a", "b", "tie"):
            raise ValueError(f"winner must be 'a', 'b' or 'tie', got {r.winner!r}")
    values = [
        {"job_id": lease.job_id, "arm_a": r.arm_a, "arm_b": r.arm_b, "judge": r.judge, "prompt_set": r.prompt_set,
         "question_id": str(r.question_id), "turn": int(r.turn), "winner": r.winner, "logit": float(r.logit)}
        for r in rows
    ]
    with scope(engine) as conn:
        _fence(conn, lease, f"{len(rows)} judgments")
        stmt = (
            _insert(conn, judgments)
            .values(created_at=clock.now())
            .on_conflict_do_nothing(index_elements=["job_id", "prompt_set", "question_id", "turn"])
            .returning(judgments.c.id)
        )
        return len(conn.execute(stmt, values).all())


def _fence(conn: Connection, lease: Lease, what: str) -> None:
    if not queries.holds_lease(conn, job_id=lease.job_id, owner=lease.owner, attempt=lease.attempt):
        raise LeaseLost(f"job {lease.job_id}: lease lost, {what} refused")


def _insert(conn: Connection, table):
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


# --- reading ----------------------------------------------------------------------


def generations_of(engine: Engine, job_id: int, *, prompt_set: str | None = None) -> list[StoredGeneration]:
    """A job's answers, in (prompt set, question, turn) order."""
    stmt = select(generations).where(generations.c.job_id == job_id)
    if prompt_set is not None:
        stmt = stmt.where(generations.c.prompt_set == prompt_set)
    stmt = stmt.order_by(generations.c.prompt_set, generations.c.question_id, generations.c.turn)
    with scope(engine, write=False) as conn:
        return [_generation(r) for r in conn.execute(stmt)]


def prompt_sets_of(engine: Engine, job_id: int) -> dict[str, int]:
    """Prompt set -> number of answers the job stored for it."""
    stmt = (
        select(generations.c.prompt_set, func.count())
        .where(generations.c.job_id == job_id)
        .group_by(generations.c.prompt_set)
    )
    with scope(engine, write=False) as conn:
        return {name: n for name, n in conn.execute(stmt)}


def judgments_of(engine: Engine, judge_job_id: int) -> list[StoredJudgment]:
    """A judge job's verdicts, in (prompt set, question, turn) order."""
    stmt = (
        select(judgments)
        .where(judgments.c.job_id == judge_job_id)
        .order_by(judgments.c.prompt_set, judgments.c.question_id, judgments.c.turn)
    )
    with scope(engine, write=False) as conn:
        return [_judgment(r) for r in conn.execute(stmt)]


def judged_keys(engine: Engine, judge_job_id: int) -> set[tuple[str, str, int]]:
    """(prompt set, question id, turn) already judged by this judge job."""
    stmt = select(judgments.c.prompt_set, judgments.c.question_id, judgments.c.turn).where(
        judgments.c.job_id == judge_job_id
    )
    with scope(engine, write=False) as conn:
        return {(p, q, t) for p, q, t in conn.execute(stmt)}


def arm_jobs(engine: Engine, grid_id: int, spec_hashes: Iterable[str]) -> dict[str, ArmJob]:
    """Jobs of grid ``grid_id`` by spec hash (those that exist)."""
    stmt = select(jobs.c.id, jobs.c.spec_hash, jobs.c.state, jobs.c.factors).where(
        jobs.c.grid_id == grid_id, jobs.c.spec_hash.in_(list(spec_hashes))
    )
    with scope(engine, write=False) as conn:
        return {r.spec_hash: ArmJob(r.id, r.spec_hash, r.state, r.factors) for r in conn.execute(stmt)}


@dataclass(frozen=True)
class JudgeRecord:
    """One judge job of a grid with its verdicts."""

    job_id: int
    state: str
    spec: dict[str, Any]
    factors: dict[str, Any]
    judgments: tuple[StoredJudgment, ...]


def grid_judgments(engine: Engine, grid: str, *, experiment: str = "judge") -> list[JudgeRecord]:
    """Every judge job of ``grid`` (by experiment name) with its stored verdicts."""
    with scope(engine, write=False) as conn:
        grid_id = queries.grid_id(conn, grid)
        if grid_id is None:
            return []
        judge_jobs = list(conn.execute(
            select(jobs.c.id, jobs.c.state, jobs.c.spec, jobs.c.factors)
            .where(jobs.c.grid_id == grid_id, jobs.c.experiment == experiment)
            .order_by(jobs.c.id)
        ))
        rows = list(conn.execute(
            select(judgments)
            .where(judgments.c.job_id.in_([j.id for j in judge_jobs]))
            .order_by(judgments.c.job_id, judgments.c.prompt_set, judgments.c.question_id, judgments.c.turn)
        )) if judge_jobs else []
    by_job: dict[int, list[StoredJudgment]] = {}
    for r in rows:
        by_job.setdefault(r.job_id, []).append(_judgment(r))
    return [JudgeRecord(j.id, j.state, j.spec, j.factors, tuple(by_job.get(j.id, ()))) for j in judge_jobs]


@dataclass(frozen=True)
class ArmTiming:
    """One job's generation timing for one prompt set, as stored."""

    job_id: int
    factors: dict[str, Any]
    prompt_set: str
    answers: int
    new_tokens: int
    latency_s: float  # sum over answers of their batch's wall time
    summaries: dict[str, float]


def grid_outputs(engine: Engine, grid: str) -> list[ArmTiming]:
    """Per job and prompt set of ``grid``: answers, tokens and latency stored, and the
    job's summaries (where timing totals and perplexities are kept)."""
    with scope(engine, write=False) as conn:
        grid_id = queries.grid_id(conn, grid)
        if grid_id is None:
            return []
        rows = _grid_output_rows(conn, grid_id)
        ids = sorted({r[0] for r in rows})
        figures: dict[int, dict[str, float]] = {}
        if ids:
            for job_id, name, value in conn.execute(
                select(summaries.c.job_id, summaries.c.name, summaries.c.value).where(summaries.c.job_id.in_(ids))
            ):
                figures.setdefault(job_id, {})[name] = value
    return [
        ArmTiming(job_id, factors, prompt_set, int(n), int(tokens or 0), float(latency or 0.0), figures.get(job_id, {}))
        for job_id, factors, prompt_set, n, tokens, latency in rows
    ]


def _grid_output_rows(conn: Connection, grid_id: int) -> list[tuple]:
    # Aggregate per job first (JSON columns cannot be grouped on PostgreSQL), then
    # attach each job's factors.
    per_job = (
        select(generations.c.job_id, generations.c.prompt_set, func.count().label("n"),
               func.sum(generations.c.new_tokens).label("tokens"), func.sum(generations.c.latency_s).label("latency"))
        .join(jobs, jobs.c.id == generations.c.job_id)
        .where(jobs.c.grid_id == grid_id)
        .group_by(generations.c.job_id, generations.c.prompt_set)
        .subquery()
    )
    stmt = (
        select(per_job.c.job_id, jobs.c.factors, per_job.c.prompt_set, per_job.c.n, per_job.c.tokens, per_job.c.latency)
        .join(jobs, jobs.c.id == per_job.c.job_id)
        .order_by(per_job.c.job_id, per_job.c.prompt_set)
    )
    return [tuple(r) for r in conn.execute(stmt)]


def grid_names_with_outputs(engine: Engine) -> list[str]:
    """Grids that have any stored answer."""
    stmt = (
        select(grids.c.name)
        .where(grids.c.id.in_(select(jobs.c.grid_id).join(generations, generations.c.job_id == jobs.c.id)))
        .order_by(grids.c.id)
    )
    with scope(engine, write=False) as conn:
        return list(conn.execute(stmt).scalars())


def _generation(r) -> StoredGeneration:
    return StoredGeneration(
        prompt_set=r.prompt_set, question_id=r.question_id, category=r.category, turn=r.turn, prompt=r.prompt,
        output=r.output, new_tokens=r.new_tokens, latency_s=r.latency_s, decoding=r.decoding,
        job_id=r.job_id, attempt=r.attempt,
    )


def _judgment(r) -> StoredJudgment:
    return StoredJudgment(
        arm_a=r.arm_a, arm_b=r.arm_b, judge=r.judge, prompt_set=r.prompt_set, question_id=r.question_id,
        turn=r.turn, winner=r.winner, logit=r.logit, job_id=r.job_id,
    )
