"""Reads the CLI and the dashboard share: where jobs stand, one job, its attempts and
events, final figures, each job's device-seconds, its attention probes, and the answers
and verdicts jobs stored.

Both the queue's reports (:mod:`jobs.reports`, behind ``gridlab status``, ``show``,
``results``, ``compare``) and the dashboard (:mod:`dashboards.queries`, which wraps these
in DataFrames) read through this module, so they show the same thing. Each function takes
an open connection (a read-only transaction from :func:`db.session.scope`), runs one
statement (or one small fixed group), and hands back frozen records or immutable rows.
Statements are SQLAlchemy Core, parameterised and portable between SQLite and PostgreSQL.
The writes these tables get are the queue's (:mod:`jobs.queries`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal_column, select
from sqlalchemy.engine import Connection, Row

from db import clock, states
from db.models import (ATTENTION_PHASES, attempts, attention_rows, events, generations, grids, jobs, judgments,
                       metrics, summaries)

# --- where jobs stand ------------------------------------------------------------------


def db_now(conn: Connection) -> float:
    """Seconds since the epoch by the database's clock."""
    return conn.execute(select(clock.now())).scalar_one()



def lease_held():
    """``state = 'running'`` with the state written into the SQL, not bound, so that
    SQLite's planner searches ``ix_jobs_lease`` (state, lease expiry) for stale leases."""
    return jobs.c.state == literal_column(f"'{states.RUNNING}'")


def state_counts(conn: Connection, *, grid: int | None = None) -> dict[str, int]:
    """State -> jobs (of grid id ``grid``, or all); states without jobs are left out."""
    stmt = select(jobs.c.state, func.count()).group_by(jobs.c.state)
    if grid is not None:
        stmt = stmt.where(jobs.c.grid_id == grid)
    return {state: n for state, n in conn.execute(stmt)}


def grid_state_counts(conn: Connection) -> list[Row]:
    """One row per (grid, state) that has jobs: grid, state, jobs; grids in creation order."""
    stmt = (
        select(grids.c.name.label("grid"), jobs.c.state, func.count().label("jobs"))
        .join(jobs, jobs.c.grid_id == grids.c.id)
        .group_by(grids.c.id, grids.c.name, jobs.c.state)
        .order_by(grids.c.id, jobs.c.state)
    )
    return list(conn.execute(stmt))


@dataclass(frozen=True)
class RunningJob:
    """A running job and how far it has got: the newest step of its training curve."""

    id: int
    grid: str
    factors: dict[str, Any]
    attempt: int
    worker: str | None
    step: int | None  # None until the first point of the curve is stored
    total_steps: int | None  # the spec's ``steps``, where the experiment has one
    value: float | None  # the curve's newest value (the loss)
    heartbeat_age_s: float | None


def running(conn: Connection, *, grid: int | None = None, curve: str = "loss") -> list[RunningJob]:
    """Each running job (of grid id ``grid``) with the newest step and value of its ``curve``
    and the seconds since its last heartbeat (by the database's clock): two index seeks per
    running job, on ``ix_metrics_curves``, however long its curve."""
    newest = (select(metrics.c.step, metrics.c.value)
              .where(metrics.c.job_id == jobs.c.id, metrics.c.name == curve)
              .order_by(metrics.c.step.desc()).limit(1))
    stmt = (
        select(jobs.c.id, grids.c.name.label("grid"), jobs.c.factors, jobs.c.spec, jobs.c.attempts, jobs.c.lease_owner,
               (clock.now() - jobs.c.heartbeat_at).label("heartbeat_age_s"),
               newest.with_only_columns(metrics.c.step).scalar_subquery().label("step"),
               newest.with_only_columns(metrics.c.value).scalar_subquery().label("value"))
        .join(grids, grids.c.id == jobs.c.grid_id)
        .where(jobs.c.state == states.RUNNING)
        .order_by(jobs.c.id)
    )
    if grid is not None:
        stmt = stmt.where(jobs.c.grid_id == grid)
    return [RunningJob(id=r.id, grid=r.grid, factors=r.factors, attempt=r.attempts, worker=r.lease_owner,
                       step=r.step, total_steps=_steps(r.spec), value=r.value, heartbeat_age_s=r.heartbeat_age_s)
            for r in conn.execute(stmt)]


def stale_leases(conn: Connection) -> list[Row]:
    """Running jobs whose lease has expired by the database's clock (their worker died, hung
    or lost the network), the longest expired first: id, grid, lease_owner, attempts,
    expired_s_ago, last_heartbeat_s_ago (seconds, by the database's clock too)."""
    now = clock.now()
    stmt = (
        select(
            jobs.c.id, grids.c.name.label("grid"), jobs.c.lease_owner, jobs.c.attempts,
            (now - jobs.c.lease_expires_at).label("expired_s_ago"),
            (now - jobs.c.heartbeat_at).label("last_heartbeat_s_ago"),
        )
        .join(grids, grids.c.id == jobs.c.grid_id)
        .where(lease_held(), jobs.c.lease_expires_at < now)
        .order_by(jobs.c.lease_expires_at)
    )
    return list(conn.execute(stmt))


def stale_count(conn: Connection) -> int:
    """How many running jobs have an expired lease (see :func:`stale_leases`)."""
    stmt = select(func.count()).where(lease_held(), jobs.c.lease_expires_at < clock.now())
    return conn.execute(stmt).scalar_one()


def job_device_seconds(conn: Connection, *, grid: int | None = None) -> list[Row]:
    """Per job (of grid id ``grid``), by id: id, grid (its name), factors, spec, state,
    resource_class and seconds, the device-seconds of its attempts (wall time x devices,
    written as each ends; 0.0 for a job with none): what :mod:`db.costs` turns into GPU-hours."""
    spent = (select(attempts.c.job_id, func.sum(attempts.c.device_seconds).label("seconds"))
             .group_by(attempts.c.job_id).subquery())
    stmt = (select(jobs.c.id, grids.c.name.label("grid"), jobs.c.factors, jobs.c.spec, jobs.c.state,
                   jobs.c.resource_class, func.coalesce(spent.c.seconds, 0.0).label("seconds"))
            .join(grids, grids.c.id == jobs.c.grid_id).outerjoin(spent, spent.c.job_id == jobs.c.id)
            .order_by(jobs.c.id))
    if grid is not None:
        stmt = stmt.where(jobs.c.grid_id == grid)
    return list(conn.execute(stmt))


# --- one job -----------------------------------------------------------------------------


def job(conn: Connection, job_id: int) -> Row | None:
    """One job's row (every column of ``jobs``) with its grid's name as ``grid``, or None."""
    stmt = select(jobs, grids.c.name.label("grid")).join(grids, grids.c.id == jobs.c.grid_id).where(
        jobs.c.id == int(job_id))
    return conn.execute(stmt).first()


def attempts_of(conn: Connection, job_id: int) -> list[Row]:
    """The job's attempts (every column of ``attempts``), first to last."""
    return list(conn.execute(select(attempts).where(attempts.c.job_id == int(job_id)).order_by(attempts.c.number)))


def events_of(conn: Connection, job_id: int) -> list[Row]:
    """The job's events (every column of ``events``), oldest first."""
    return list(conn.execute(select(events).where(events.c.job_id == int(job_id)).order_by(events.c.id)))


def summaries_of(conn: Connection, job_id: int) -> list[Row]:
    """The job's final figures: name, value, attempt, by name."""
    stmt = (select(summaries.c.name, summaries.c.value, summaries.c.attempt)
            .where(summaries.c.job_id == int(job_id)).order_by(summaries.c.name))
    return list(conn.execute(stmt))


def summaries_table(conn: Connection, *, grid: int | None = None) -> list[Row]:
    """Every final figure (of grid id ``grid``) with its job: id, experiment, factors, state,
    name, value."""
    stmt = select(jobs.c.id, jobs.c.experiment, jobs.c.factors, jobs.c.state, summaries.c.name,
                  summaries.c.value).join(
        summaries, summaries.c.job_id == jobs.c.id
    )
    if grid is not None:
        stmt = stmt.where(jobs.c.grid_id == grid)
    return list(conn.execute(stmt.order_by(jobs.c.id)))


# --- a job's attention probes -------------------------------------------------------------


@dataclass(frozen=True)
class AttentionRow:
    """One attention layer's probe at one step of a job: per head, the mean entropy (nats),
    the same over its maximum (1 is uniform attention) and the NaN values counted in the
    attention matrix; a value that was not finite is None."""

    job_id: int
    attempt: int
    step: int
    phase: str  # "train", "eval" or "diverged" (db.models.ATTENTION_PHASES)
    stack: str  # "" for a decoder-only model, "enc"/"dec" for an encoder-decoder
    layer: int
    entropy: tuple[float | None, ...]
    entropy_norm: tuple[float | None, ...]
    nan: tuple[int, ...]
    max_entropy: float | None

    @property
    def label(self) -> str:
        """The layer as its metrics name it: ``L0``, ``enc.L0``."""
        return f"{self.stack + '.' if self.stack else ''}L{self.layer}"


def attention_phases(conn: Connection, job_id: int) -> dict[str, int]:
    """Phase -> the last step the job probed in it, for the phases it has rows of, in
    ATTENTION_PHASES order (train, eval, diverged)."""
    stmt = (select(attention_rows.c.phase, func.max(attention_rows.c.step))
            .where(attention_rows.c.job_id == int(job_id)).group_by(attention_rows.c.phase))
    last = dict(conn.execute(stmt).all())
    return {phase: last[phase] for phase in ATTENTION_PHASES if phase in last}


def attention_at_last_step(conn: Connection, job_id: int, *, phase: str = "train") -> list[AttentionRow]:
    """The job's rows at the last step it probed in ``phase``, one per layer by (stack, layer):
    the layer x head picture the paper draws. Empty if it has none."""
    r = attention_rows
    last = (select(func.max(r.c.step)).where(r.c.job_id == int(job_id), r.c.phase == phase)).scalar_subquery()
    stmt = (select(r).where(r.c.job_id == int(job_id), r.c.phase == phase, r.c.step == last)
            .order_by(r.c.stack, r.c.layer))
    return [_attention(row) for row in conn.execute(stmt)]


def grid_attention_at_last_step(conn: Connection, grid_id: int) -> list[AttentionRow]:
    """For every job of the grid and each phase it probed in, its rows at the last step of that
    phase (one per (stack, layer)), by job, phase, stack and layer: the grid's heatmaps in one read."""
    r = attention_rows
    last = (select(r.c.job_id, r.c.phase, func.max(r.c.step).label("step"))
            .join(jobs, jobs.c.id == r.c.job_id).where(jobs.c.grid_id == int(grid_id))
            .group_by(r.c.job_id, r.c.phase).subquery())
    stmt = (select(r).join(last, (r.c.job_id == last.c.job_id) & (r.c.phase == last.c.phase) & (r.c.step == last.c.step))
            .order_by(r.c.job_id, r.c.phase, r.c.stack, r.c.layer))
    return [_attention(row) for row in conn.execute(stmt)]


def attention_of_layer(conn: Connection, job_id: int, layer: int, *, stack: str = "",
                       phase: str = "train") -> list[AttentionRow]:
    """One layer's rows over the steps the job probed in ``phase``, first step first."""
    r = attention_rows
    stmt = (select(r).where(r.c.job_id == int(job_id), r.c.phase == phase, r.c.stack == stack,
                            r.c.layer == int(layer)).order_by(r.c.step))
    return [_attention(row) for row in conn.execute(stmt)]


# --- generated answers and judges' verdicts ------------------------------------------------


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


#: What a judgment's ``winner`` may be.
WINNERS = ("a", "b", "tie")


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


@dataclass(frozen=True)
class JudgeRecord:
    """One judge job of a grid with its verdicts."""

    job_id: int
    state: str
    spec: dict[str, Any]
    factors: dict[str, Any]
    judgments: tuple[StoredJudgment, ...]


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


def generations_of(conn: Connection, job_id: int, *, prompt_set: str | None = None,
                   limit: int | None = None) -> list[StoredGeneration]:
    """A job's answers, in (prompt set, question, turn) order (the first ``limit``, if given)."""
    stmt = select(generations).where(generations.c.job_id == int(job_id))
    if prompt_set is not None:
        stmt = stmt.where(generations.c.prompt_set == prompt_set)
    stmt = stmt.order_by(generations.c.prompt_set, generations.c.question_id, generations.c.turn)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_generation(r) for r in conn.execute(stmt)]


def prompt_sets_of(conn: Connection, job_id: int) -> dict[str, int]:
    """Prompt set -> number of answers the job stored for it."""
    stmt = (
        select(generations.c.prompt_set, func.count())
        .where(generations.c.job_id == int(job_id))
        .group_by(generations.c.prompt_set)
    )
    return {name: n for name, n in conn.execute(stmt)}


def judgments_of(conn: Connection, judge_job_id: int) -> list[StoredJudgment]:
    """A judge job's verdicts, in (prompt set, question, turn) order."""
    stmt = (
        select(judgments)
        .where(judgments.c.job_id == int(judge_job_id))
        .order_by(judgments.c.prompt_set, judgments.c.question_id, judgments.c.turn)
    )
    return [_judgment(r) for r in conn.execute(stmt)]


def judged_keys(conn: Connection, judge_job_id: int) -> set[tuple[str, str, int]]:
    """(prompt set, question id, turn) already judged by this judge job."""
    stmt = select(judgments.c.prompt_set, judgments.c.question_id, judgments.c.turn).where(
        judgments.c.job_id == int(judge_job_id)
    )
    return {(p, q, t) for p, q, t in conn.execute(stmt)}


def arm_jobs(conn: Connection, grid_id: int, spec_hashes: Iterable[str]) -> dict[str, ArmJob]:
    """Jobs of grid ``grid_id`` by spec hash (those that exist)."""
    stmt = select(jobs.c.id, jobs.c.spec_hash, jobs.c.state, jobs.c.factors).where(
        jobs.c.grid_id == grid_id, jobs.c.spec_hash.in_(list(spec_hashes))
    )
    return {r.spec_hash: ArmJob(r.id, r.spec_hash, r.state, r.factors) for r in conn.execute(stmt)}


def grid_judgments(conn: Connection, grid: str, *, experiment: str = "judge") -> list[JudgeRecord]:
    """Every judge job of grid ``grid`` (by name; by experiment name) with its stored verdicts."""
    grid_id = conn.execute(select(grids.c.id).where(grids.c.name == grid)).scalar()
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


def grid_outputs(conn: Connection, grid: str) -> list[ArmTiming]:
    """Per job and prompt set of grid ``grid`` (by name): answers, tokens and latency stored,
    and the job's summaries (where timing totals and perplexities are kept)."""
    grid_id = conn.execute(select(grids.c.id).where(grids.c.name == grid)).scalar()
    if grid_id is None:
        return []
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
    rows = [tuple(r) for r in conn.execute(
        select(per_job.c.job_id, jobs.c.factors, per_job.c.prompt_set, per_job.c.n, per_job.c.tokens, per_job.c.latency)
        .join(jobs, jobs.c.id == per_job.c.job_id)
        .order_by(per_job.c.job_id, per_job.c.prompt_set)
    )]
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


def grid_names_with_outputs(conn: Connection) -> list[str]:
    """Grids that have any stored answer."""
    stmt = (
        select(grids.c.name)
        .where(grids.c.id.in_(select(jobs.c.grid_id).join(generations, generations.c.job_id == jobs.c.id)))
        .order_by(grids.c.id)
    )
    return list(conn.execute(stmt).scalars())


# --- a whole grid, for reports and exports (gridlab report, gridlab export) ---------------


def grid_jobs(conn: Connection, grid_id: int) -> list[Row]:
    """Every job of grid ``grid_id``: id, experiment, state, spec_hash, factors, spec, attempts,
    started_at, finished_at; by id."""
    stmt = (select(jobs.c.id, jobs.c.experiment, jobs.c.state, jobs.c.spec_hash, jobs.c.factors, jobs.c.spec,
                   jobs.c.attempts, jobs.c.started_at, jobs.c.finished_at)
            .where(jobs.c.grid_id == grid_id).order_by(jobs.c.id))
    return list(conn.execute(stmt))


def grid_metric_names(conn: Connection, grid_id: int) -> list[str]:
    """The names of the curves the jobs of grid ``grid_id`` logged, sorted."""
    stmt = (select(metrics.c.name).distinct()
            .where(metrics.c.job_id.in_(select(jobs.c.id).where(jobs.c.grid_id == grid_id)))
            .order_by(metrics.c.name))
    return list(conn.execute(stmt).scalars())


def grid_curves(conn: Connection, grid_id: int, names: Iterable[str] | None = None) -> list[Row]:
    """Every point of the curves (named ``names``, else all) of grid ``grid_id``'s jobs:
    job_id, name, step, value (None is NaN), by job, name and step."""
    stmt = (select(metrics.c.job_id, metrics.c.name, metrics.c.step, metrics.c.value)
            .join(jobs, jobs.c.id == metrics.c.job_id)
            .where(jobs.c.grid_id == grid_id)
            .order_by(metrics.c.job_id, metrics.c.name, metrics.c.step))
    if names is not None:
        stmt = stmt.where(metrics.c.name.in_(list(names)))
    return list(conn.execute(stmt))


def grid_generations(conn: Connection, grid_id: int) -> list[StoredGeneration]:
    """Every answer the jobs of grid ``grid_id`` stored, by job, prompt set, question and turn."""
    stmt = (select(generations).join(jobs, jobs.c.id == generations.c.job_id).where(jobs.c.grid_id == grid_id)
            .order_by(generations.c.job_id, generations.c.prompt_set, generations.c.question_id, generations.c.turn))
    return [_generation(r) for r in conn.execute(stmt)]


def arm_judgments(conn: Connection, grid_id: int) -> list[StoredJudgment]:
    """Every verdict on answers of grid ``grid_id``'s jobs (whichever grid the judge job is in),
    by judge job, prompt set, question and turn."""
    stmt = (select(judgments).join(jobs, jobs.c.id == judgments.c.arm_a).where(jobs.c.grid_id == grid_id)
            .order_by(judgments.c.job_id, judgments.c.prompt_set, judgments.c.question_id, judgments.c.turn))
    return [_judgment(r) for r in conn.execute(stmt)]


def _steps(spec: Any) -> int | None:
    value = spec.get("steps") if isinstance(spec, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _generation(r) -> StoredGeneration:
    return StoredGeneration(
        prompt_set=r.prompt_set, question_id=r.question_id, category=r.category, turn=r.turn, prompt=r.prompt,
        output=r.output, new_tokens=r.new_tokens, latency_s=r.latency_s, decoding=r.decoding,
        job_id=r.job_id, attempt=r.attempt,
    )


def _attention(r) -> AttentionRow:
    return AttentionRow(job_id=r.job_id, attempt=r.attempt, step=r.step, phase=r.phase, stack=r.stack,
                        layer=r.layer, entropy=tuple(r.entropy), entropy_norm=tuple(r.entropy_norm),
                        nan=tuple(r.nan), max_entropy=r.max_entropy)


def _judgment(r) -> StoredJudgment:
    return StoredJudgment(
        arm_a=r.arm_a, arm_b=r.arm_b, judge=r.judge, prompt_set=r.prompt_set, question_id=r.question_id,
        turn=r.turn, winner=r.winner, logit=r.logit, job_id=r.job_id,
    )
