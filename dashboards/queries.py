"""Every read the dashboard makes, in one place: its own statements, and the views it
shares with the CLI (:mod:`db.views`: where grids stand, running jobs, stale leases, one
job, its attempts, events, summaries, attention probes and answers; :mod:`db.costs`: the
GPU-hours spent and left) wrapped in DataFrames.

Each function takes an open connection (inside a read-only transaction from
:func:`db.session.scope` with ``write=False``), runs one statement, and returns a
pandas DataFrame (or a plain value). Statements are SQLAlchemy Core, always
parameterised, and portable between SQLite and PostgreSQL.

Curves are downsampled here, in the database: steps are cut into equal buckets and
each bucket returns one row (mean, min, max of the values in it), so a curve of a
million points reaches the page as a few hundred rows. A finished job's curves are
read from their roll-up (curve_buckets, written by the queue when the job reached a
final state: at most 1,000 rows per curve at level 0 and 250 at level 1, however long); running jobs, and
jobs finished before roll-ups existed and not rolled up, are read point by point.
Both give the same buckets: a bucket is a whole number of grains of one roll-up level
(see curve_width), so that level's buckets add up to it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
from sqlalchemy import Integer, and_, bindparam, case, func, literal, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Select

from db import costs, states, views
from db.models import (
    attempts,
    curve_buckets,
    curve_rollups,
    generations,
    grids,
    jobs,
    judgments,
    metrics,
    ROLLUP_LEVELS,
    rollup_grain,
    summaries,
)


def _frame(conn: Connection, stmt: Select, params: dict | None = None) -> pd.DataFrame:
    result = conn.execute(stmt, params or {})
    columns = list(result.keys())
    # Plain tuples: pandas probes each Row for attributes, which costs more than the query.
    return pd.DataFrame.from_records([tuple(row) for row in result], columns=columns, nrows=None)


def _rows(rows: Sequence, columns: Sequence[str]) -> pd.DataFrame:
    """A frame of ``columns`` from rows or frozen records of a :mod:`db.views` read (the
    columns stay when there are no rows)."""
    columns = list(columns)
    return pd.DataFrame.from_records([tuple(getattr(r, c) for c in columns) for r in rows], columns=columns,
                                     nrows=None)


def _ids(values: Sequence[int]) -> list[int]:
    return [int(v) for v in values]


# --- the connection ----------------------------------------------------------------


#: Settings for each new connection of the dashboard's (read-only) engine.
READER_SETTINGS = {
    # A 64 MiB page cache (the default is 2 MiB): bucketing a long curve sorts in memory.
    "sqlite": ("PRAGMA cache_size = -65536", "PRAGMA temp_store = MEMORY"),
    # JIT compilation costs up to half a second on big aggregates: more than they run.
    "postgresql": ("SET jit = off",),
}


def tune_reader(dbapi_connection, dialect: str) -> None:
    """Apply READER_SETTINGS to a new driver connection (an engine 'connect' hook)."""
    cursor = dbapi_connection.cursor()
    try:
        for statement in READER_SETTINGS.get(dialect, ()):
            cursor.execute(statement)
    finally:
        cursor.close()
    if dialect == "postgresql":
        dbapi_connection.commit()  # end the transaction SET opened; the setting stays


# --- grids and jobs -----------------------------------------------------------------


def db_now(conn: Connection) -> float:
    """Seconds since the epoch by the database's clock."""
    return views.db_now(conn)


def grid_progress(conn: Connection) -> pd.DataFrame:
    """One row per (grid, state): grid, state, jobs."""
    return _rows(views.grid_state_counts(conn), ["grid", "state", "jobs"])


def job_table(conn: Connection, *, grid: str | None = None) -> pd.DataFrame:
    """Every job (of one grid, or all): id, grid, experiment, state, attempts, times,
    factors (a dict per row)."""
    stmt = (
        select(
            jobs.c.id, grids.c.name.label("grid"), jobs.c.experiment, jobs.c.state, jobs.c.attempts,
            jobs.c.created_at, jobs.c.started_at, jobs.c.finished_at, jobs.c.factors,
        )
        .join(grids, grids.c.id == jobs.c.grid_id)
        .order_by(jobs.c.id)
    )
    if grid is not None:
        stmt = stmt.where(grids.c.name == bindparam("grid"))
    return _frame(conn, stmt, {"grid": grid})


def stale_leases(conn: Connection) -> pd.DataFrame:
    """Running jobs whose lease has expired by the database's clock: their worker died,
    hung or lost the network. Ages are seconds, by the database's clock too."""
    return _rows(views.stale_leases(conn),
                 ["id", "grid", "lease_owner", "attempts", "expired_s_ago", "last_heartbeat_s_ago"])


def running_jobs(conn: Connection, *, curve: str = "loss") -> pd.DataFrame:
    """Running jobs and how far each has got: the newest step and value of its ``curve`` (two
    index seeks per job on ``ix_metrics_curves``), the ``steps`` its spec asks for (NaN where
    the experiment has none), its worker and its heartbeat's age by the database's clock."""
    running = views.running(conn, curve=curve)
    frame = _rows(running, ["id", "grid", "factors", "worker", "attempt", "step", "value", "heartbeat_age_s",
                            "total_steps"])
    frame = frame.rename(columns={"worker": "lease_owner", "attempt": "attempts", "value": curve,
                                  "heartbeat_age_s": "heartbeat_s_ago", "total_steps": "steps"})
    frame["steps"] = pd.to_numeric(frame["steps"], errors="coerce")
    return frame


def job(conn: Connection, job_id: int) -> dict | None:
    """One job's row, with its grid's name, as a dict (None if there is no such job)."""
    row = views.job(conn, job_id)
    return dict(row._mapping) if row is not None else None


def job_attempts(conn: Connection, job_id: int) -> pd.DataFrame:
    return _rows(views.attempts_of(conn, job_id), [
        "number", "outcome", "worker", "host", "node", "slurm_job_id", "slurm_array_index", "pid",
        "started_at", "ended_at", "error"])


def job_events(conn: Connection, job_id: int) -> pd.DataFrame:
    return _rows(views.events_of(conn, job_id), ["at", "from_state", "to_state", "attempt", "actor", "reason"])


# --- GPU-hours ----------------------------------------------------------------------


def gpu_hours(conn: Connection, *, grid: str | None = None) -> dict:
    """GPU-hours of the jobs (of one grid, or all) by :func:`db.costs.gpu_hours` over
    :func:`db.views.job_device_seconds`: what ``gridlab status [--grid GRID]`` prints."""
    grid_id = None
    if grid is not None:
        grid_id = conn.execute(select(grids.c.id).where(grids.c.name == bindparam("grid")), {"grid": grid}).scalar()
        if grid_id is None:
            return costs.gpu_hours([])
    return costs.gpu_hours(views.job_device_seconds(conn, grid=grid_id))


def gpu_hours_by_grid(hours: dict) -> pd.DataFrame:
    """:func:`db.costs.grid_rows` as a frame: grid, spent, cells left, estimate left, no estimate."""
    return pd.DataFrame.from_records(costs.grid_rows(hours), columns=list(costs.GRID_COLUMNS), nrows=None)


def gpu_hours_by_factor(hours: dict) -> pd.DataFrame:
    """:func:`db.costs.factor_rows` as one long frame: factor, value, GPU-hours (factors that
    spent anything, each's values most spent first)."""
    records = [(factor, value, spent) for factor, values in costs.factor_rows(hours).items()
               for value, spent in values]
    return pd.DataFrame.from_records(records, columns=list(costs.FACTOR_COLUMNS), nrows=None)


# --- failures -----------------------------------------------------------------------


def failed_attempts(conn: Connection, *, grid: str | None = None, only_retryable: bool = True,
                    limit: int = 5000) -> pd.DataFrame:
    """Attempts that ended badly (error, divergence, lost lease, OOM, ...), newest first,
    with their job's current state and factors. ``only_retryable`` keeps jobs that are
    failed, diverged or cancelled now (those `gridlab retry` can take)."""
    stmt = (
        select(
            attempts.c.job_id, grids.c.name.label("grid"), jobs.c.state, attempts.c.number.label("attempt"),
            attempts.c.outcome, attempts.c.host, attempts.c.node, attempts.c.slurm_job_id,
            attempts.c.slurm_array_index, attempts.c.worker, attempts.c.started_at, attempts.c.ended_at,
            attempts.c.error, jobs.c.factors,
        )
        .join(jobs, jobs.c.id == attempts.c.job_id)
        .join(grids, grids.c.id == jobs.c.grid_id)
        .where(attempts.c.outcome.is_not(None), attempts.c.outcome != states.SUCCEEDED)
        .order_by(attempts.c.started_at.desc(), attempts.c.id.desc())
        .limit(limit)
    )
    if only_retryable:
        stmt = stmt.where(jobs.c.state.in_(states.RETRYABLE))
    if grid is not None:
        stmt = stmt.where(grids.c.name == bindparam("grid"))
    return _frame(conn, stmt, {"grid": grid})


def jobs_with_errors(conn: Connection, *, grid: str | None = None) -> pd.DataFrame:
    """Failed or diverged jobs and their last error, even where no attempt row says why
    (e.g. a job failed by the reaper)."""
    stmt = (
        select(jobs.c.id, grids.c.name.label("grid"), jobs.c.state, jobs.c.attempts, jobs.c.last_error, jobs.c.factors)
        .join(grids, grids.c.id == jobs.c.grid_id)
        .where(jobs.c.state.in_(states.UNSUCCESSFUL))
        .order_by(jobs.c.id)
    )
    if grid is not None:
        stmt = stmt.where(grids.c.name == bindparam("grid"))
    return _frame(conn, stmt, {"grid": grid})


# --- metrics ------------------------------------------------------------------------


def metric_names(conn: Connection, job_ids: Sequence[int]) -> list[str]:
    """The metric names the given jobs logged. A loose index scan (one index seek per
    job and name, via a recursive query) rather than a scan of every point."""
    m = metrics.alias("m")
    start = select(
        jobs.c.id.label("job_id"),
        select(func.min(m.c.name)).where(m.c.job_id == jobs.c.id).scalar_subquery().label("name"),
    ).where(jobs.c.id.in_(bindparam("ids", expanding=True)))
    names = start.cte("names", recursive=True)
    n = names.alias("n")
    following = select(
        n.c.job_id,
        select(func.min(m.c.name)).where(m.c.job_id == n.c.job_id, m.c.name > n.c.name).scalar_subquery(),
    ).where(n.c.name.is_not(None))
    names = names.union_all(following)
    stmt = select(names.c.name).where(names.c.name.is_not(None)).distinct().order_by(names.c.name)
    return list(conn.execute(stmt, {"ids": _ids(job_ids)}).scalars())


#: Dense curves are recognised by their last TAIL steps all being logged.
TAIL = 64
#: Logged points one curves() call lets the database aggregate at most (about); past
#: it, dense curves are averaged over every k-th step. Both backends aggregate about
#: 1-3 million points a second, so this keeps a chart's query well under a second.
READ_BUDGET = 200_000
CURVE_COLUMNS = ["job_id", "step", "value", "min", "max", "points", "stride"]


def step_ranges(conn: Connection, name: str, job_ids: Sequence[int]) -> pd.DataFrame:
    """Per job that logged metric ``name``: job_id, lo and hi (its first and last step)
    and tail (how many of the steps hi-TAIL+1 .. hi it logged). Read from the index ends
    and tail only: a few seeks per job, however long its curve."""
    m = metrics.alias("m")

    def end(agg):
        return (select(agg(m.c.step)).where(m.c.job_id == jobs.c.id, m.c.name == bindparam("name"))
                .scalar_subquery())

    ends = select(jobs.c.id.label("job_id"), end(func.min).label("lo"), end(func.max).label("hi")).where(
        jobs.c.id.in_(bindparam("ids", expanding=True))
    ).subquery("ends")
    tail = (
        select(func.count())
        .where(m.c.job_id == ends.c.job_id, m.c.name == bindparam("name"),
               m.c.step > ends.c.hi - bindparam("tail", type_=Integer), m.c.step <= ends.c.hi)
        .scalar_subquery()
    )
    stmt = select(ends.c.job_id, ends.c.lo, ends.c.hi, tail.label("tail")).where(ends.c.lo.is_not(None)).order_by(
        ends.c.job_id
    )
    return _frame(conn, stmt, {"name": name, "ids": _ids(job_ids), "tail": TAIL})


def bucket_width(lo: int, hi: int, buckets: int) -> int:
    """Steps per bucket so that [lo, hi] falls into at most ``buckets`` buckets."""
    return max(1, math.ceil((hi - lo + 1) / max(1, buckets)))


#: A bucket is made of grains of the coarsest roll-up level that fits in it at least
#: this many times (rounding it up to whole grains then costs at most a quarter of the
#: buckets asked for), else of the finest level's (a thousandth of the span: a curve
#: asked for 400 buckets of a 4,497-step run gets 300).
MIN_GRAINS = 3


def curve_width(lo: int, hi: int, buckets: int, grains: Sequence[int] | None = None) -> tuple[int, int]:
    """(width, level): bucket_width rounded up to whole grains of roll-up ``level``, the
    coarsest level whose grain fits MIN_GRAINS times (else the finest). ``grains`` per
    level default to the roll-up grains of [lo, hi] (1 and 4 for a curve of up to 1,000
    steps). A rolled-up curve's buckets of that level add up to exactly these."""
    grains = [rollup_grain(lo, hi, level) for level in range(ROLLUP_LEVELS)] if grains is None else grains
    width = bucket_width(lo, hi, buckets)
    level = max((level for level, g in enumerate(grains) if width >= MIN_GRAINS * g), default=0)
    return grains[level] * math.ceil(width / grains[level]), level


def plan_buckets(ranges: pd.DataFrame, buckets: int, lo: int | None, hi: int | None,
                 read_budget: int = READ_BUDGET) -> dict[tuple[int, int, int], list[int]]:
    """Jobs grouped by (bucket width, stride, first step) for their part of [lo, hi].

    The width cuts a job's range, from its first step, into at most ``buckets`` buckets
    of whole grains (see curve_width). The stride is 1 (every
    point) unless the selection holds more than ``read_budget`` points in the range;
    then dense curves (every step logged) are read at every stride-th step, and sparse
    ones (e.g. a validation loss every 100 steps) still in full."""
    plans = []
    for job_id, first, last, tail in ranges.itertuples(index=False):
        span_lo, span_hi = (first if lo is None else max(first, lo)), (last if hi is None else min(last, hi))
        if span_lo > span_hi:
            continue
        span = span_hi - span_lo + 1
        dense = tail >= min(TAIL, last - first + 1)
        points = span if dense else span * tail / min(TAIL, last - first + 1)
        plans.append((int(job_id), span_lo, span_hi, dense, points))
    total = sum(p[4] for p in plans)
    stride = max(1, math.ceil(total / read_budget))
    groups: dict[tuple[int, int, int], list[int]] = {}
    for job_id, span_lo, span_hi, dense, _ in plans:
        k = stride if dense else 1
        width = k * math.ceil(curve_width(span_lo, span_hi, buckets)[0] / k)  # whole strides per bucket
        groups.setdefault((width, k, span_lo), []).append(job_id)
    return groups


def rollup_ranges(conn: Connection, name: str, job_ids: Sequence[int]) -> pd.DataFrame:
    """Per job that is final and has a roll-up of metric ``name``: job_id, lo, hi (its
    first and last step) and grains (one per level, finest first). From the roll-ups'
    primary key: a row per job and level."""
    r = curve_rollups
    stmt = (
        select(r.c.job_id, r.c.level, r.c.first_step, r.c.last_step, r.c.grain)
        .join(jobs, jobs.c.id == r.c.job_id)
        .where(r.c.name == bindparam("name"), r.c.job_id.in_(bindparam("ids", expanding=True)),
               jobs.c.state.in_(states.FINAL))
        .order_by(r.c.job_id, r.c.level)
    )
    rows = conn.execute(stmt, {"name": name, "ids": _ids(job_ids)}).all()
    ranges: dict[int, tuple[int, int, list[int]]] = {}
    for job_id, _level, first, last, grain in rows:
        ranges.setdefault(job_id, (first, last, []))[2].append(grain)
    return pd.DataFrame([(j, lo, hi, tuple(g)) for j, (lo, hi, g) in ranges.items()],
                        columns=["job_id", "lo", "hi", "grains"])


def _rolled_up_curves(conn: Connection, name: str, ranges: pd.DataFrame, buckets: int) -> list[pd.DataFrame]:
    """Buckets of rolled-up curves (rows as curves() returns them): each bucket is the
    sum of ``width / grain`` consecutive roll-up buckets of one level. Jobs read at the
    same level and number of grains per bucket share one statement."""
    groups: dict[tuple[int, int], list[int]] = {}
    for job_id, first, last, grains in ranges.itertuples(index=False):
        width, level = curve_width(first, last, buckets, grains)
        groups.setdefault((level, width // grains[level]), []).append(int(job_id))
    b = curve_buckets
    stmt = (
        select(
            b.c.job_id,
            func.max(b.c.last_step).label("step"),
            (func.sum(b.c.value_sum) / func.nullif(func.sum(b.c.value_count), 0)).label("value"),
            func.min(b.c.value_min).label("min"),
            func.max(b.c.value_max).label("max"),
            func.sum(b.c.points).label("points"),
        )
        .where(b.c.name == bindparam("name"), b.c.job_id.in_(bindparam("ids", expanding=True)),
               b.c.level == bindparam("level"))
        .group_by(b.c.job_id, b.c.bucket // bindparam("grains", type_=Integer))
    )
    return [_frame(conn, stmt, {"name": name, "ids": members, "level": level, "grains": grains}).assign(stride=1)
            for (level, grains), members in groups.items()]


def curves(conn: Connection, name: str, job_ids: Sequence[int], *, buckets: int = 400,
           lo: int | None = None, hi: int | None = None, read_budget: int = READ_BUDGET,
           rollups: bool = True) -> pd.DataFrame:
    """Metric ``name`` of the jobs, downsampled in the database: each job's steps in
    [lo, hi] are cut into at most ``buckets`` equal buckets (of whole grains, see
    curve_width), and each bucket comes back as one row: job_id, step (the bucket's last
    step), value (mean), min, max, points (how many were aggregated), stride (1: every
    point; k: every k-th step, see plan_buckets).

    A bucket of width 1 holds one point, so short curves come back exact. Finished
    jobs' whole curves are read from their roll-ups (unless ``rollups`` is False), the
    rest point by point; jobs with the same width, stride and first step share one
    statement. Only the points read point by point count against ``read_budget``."""
    ids = _ids(job_ids)
    frames = []
    if rollups and lo is None and hi is None and ids:
        rolled = rollup_ranges(conn, name, ids)
        frames.extend(_rolled_up_curves(conn, name, rolled, buckets))
        done = set(rolled["job_id"].tolist())
        ids = [i for i in ids if i not in done]
    live = plan_buckets(step_ranges(conn, name, ids), buckets, lo, hi, read_budget) if ids else {}
    for (width, stride, first), members in live.items():
        offset = metrics.c.step - bindparam("first", type_=Integer)
        bucket = offset // bindparam("width", type_=Integer)  # integer division on both backends
        stmt = (
            select(
                metrics.c.job_id,
                func.max(metrics.c.step).label("step"),
                func.avg(metrics.c.value).label("value"),
                func.min(metrics.c.value).label("min"),
                func.max(metrics.c.value).label("max"),
                func.count().label("points"),
            )
            .where(metrics.c.name == bindparam("name"), metrics.c.job_id.in_(bindparam("ids", expanding=True)))
            .group_by(metrics.c.job_id, bucket)
        )
        if lo is not None:
            stmt = stmt.where(metrics.c.step >= bindparam("lo"))
        if hi is not None:
            stmt = stmt.where(metrics.c.step <= bindparam("hi"))
        if stride > 1:
            stmt = stmt.where(offset % bindparam("stride", type_=Integer) == 0)
        frame = _frame(conn, stmt, {"ids": members, "name": name, "width": width, "first": first, "lo": lo, "hi": hi,
                                    "stride": stride})
        frames.append(frame.assign(stride=stride))
    if not frames:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return out.sort_values(["job_id", "step"], ignore_index=True)


def sampled_means(conn: Connection, name: str, job_ids: Sequence[int], *, samples: int = 200) -> pd.DataFrame:
    """Mean of metric ``name`` per job over about ``samples`` evenly spaced steps
    (job_id, mean, points). For steady figures such as throughput a sample is as good as
    every point, and it aggregates a few hundred points per job however long the run."""
    ranges = step_ranges(conn, name, job_ids)
    by_width: dict[int, list[int]] = {}
    for job_id, first, last, _ in ranges.itertuples(index=False):
        by_width.setdefault(bucket_width(first, last, samples), []).append(int(job_id))
    frames = []
    for width, members in by_width.items():
        stmt = (
            select(metrics.c.job_id, func.avg(metrics.c.value).label("mean"), func.count().label("points"))
            .where(
                metrics.c.name == bindparam("name"),
                metrics.c.job_id.in_(bindparam("ids", expanding=True)),
                metrics.c.step % bindparam("width", type_=Integer) == 0,
            )
            .group_by(metrics.c.job_id)
        )
        frames.append(_frame(conn, stmt, {"ids": members, "name": name, "width": width}))
    if not frames:
        return pd.DataFrame(columns=["job_id", "mean", "points"])
    return pd.concat(frames, ignore_index=True).sort_values("job_id", ignore_index=True)


def last_values(conn: Connection, name: str, job_ids: Sequence[int]) -> pd.DataFrame:
    """The last logged value of metric ``name`` per job: job_id, step, value."""
    m = metrics.alias("m")
    last = (select(func.max(m.c.step)).where(m.c.job_id == jobs.c.id, m.c.name == bindparam("name"))
            .scalar_subquery())
    ends = select(jobs.c.id.label("job_id"), last.label("hi")).where(
        jobs.c.id.in_(bindparam("ids", expanding=True))
    ).subquery("ends")
    stmt = (
        select(metrics.c.job_id, metrics.c.step, metrics.c.value)
        .select_from(ends)
        .join(metrics, and_(metrics.c.job_id == ends.c.job_id, metrics.c.name == bindparam("name"),
                            metrics.c.step == ends.c.hi))
        .order_by(metrics.c.job_id)
    )
    return _frame(conn, stmt, {"ids": _ids(job_ids), "name": name})


# --- summaries ----------------------------------------------------------------------


def summary_names(conn: Connection) -> list[str]:
    return list(conn.execute(select(summaries.c.name).distinct().order_by(summaries.c.name)).scalars())


def summary_values(conn: Connection, name: str, *, grid: str | None = None) -> pd.DataFrame:
    """Final figure ``name`` of every job that has one: job_id, grid, state, value, factors."""
    stmt = (
        select(summaries.c.job_id, grids.c.name.label("grid"), jobs.c.state, summaries.c.value, jobs.c.factors)
        .join(jobs, jobs.c.id == summaries.c.job_id)
        .join(grids, grids.c.id == jobs.c.grid_id)
        .where(summaries.c.name == bindparam("name"))
        .order_by(summaries.c.job_id)
    )
    if grid is not None:
        stmt = stmt.where(grids.c.name == bindparam("grid"))
    return _frame(conn, stmt, {"name": name, "grid": grid})


def job_summaries(conn: Connection, job_id: int) -> pd.DataFrame:
    return _rows(views.summaries_of(conn, job_id), ["name", "value", "attempt"])


# --- generations and judgments ------------------------------------------------------


def judgment_counts(conn: Connection, *, judge: str | None = None) -> pd.DataFrame:
    """Per (judge, prompt set, arm a, arm b, question, turn) the judge's verdict, counted
    as a/b/tie (one row per prompt: the bootstrap resamples prompts)."""
    stmt = (
        select(
            judgments.c.judge, judgments.c.prompt_set, judgments.c.arm_a, judgments.c.arm_b,
            judgments.c.question_id, judgments.c.turn, judgments.c.winner, judgments.c.logit,
        )
        .order_by(judgments.c.arm_a, judgments.c.arm_b, judgments.c.id)
    )
    if judge is not None:
        stmt = stmt.where(judgments.c.judge == bindparam("judge"))
    return _frame(conn, stmt, {"judge": judge})


def judges(conn: Connection) -> list[str]:
    return list(conn.execute(select(judgments.c.judge).distinct().order_by(judgments.c.judge)).scalars())


def pair_outputs(conn: Connection, arm_a: int, arm_b: int, *, judge: str | None = None,
                 prompt_set: str | None = None) -> pd.DataFrame:
    """Both arms' answers per prompt, side by side, with the verdicts on them (of one
    judge, or of each): prompt_set, question_id, turn, category, prompt, output_a,
    output_b, judge, winner, logit. Winner and logit read from arm a's side."""
    ga = generations.alias("ga")
    gb = generations.alias("gb")
    j = judgments
    verdict = and_(
        j.c.prompt_set == ga.c.prompt_set, j.c.question_id == ga.c.question_id, j.c.turn == ga.c.turn,
        or_(and_(j.c.arm_a == ga.c.job_id, j.c.arm_b == gb.c.job_id),
            and_(j.c.arm_a == gb.c.job_id, j.c.arm_b == ga.c.job_id)),
    )
    if judge is not None:
        verdict = and_(verdict, j.c.judge == bindparam("judge"))
    # A verdict recorded the other way round (b, a) is turned to read from a's side.
    winner = case(
        (j.c.arm_a == ga.c.job_id, j.c.winner),
        (j.c.winner == "a", literal("b")),
        (j.c.winner == "b", literal("a")),
        else_=j.c.winner,
    )
    stmt = (
        select(
            ga.c.prompt_set, ga.c.question_id, ga.c.turn, ga.c.category, ga.c.prompt,
            ga.c.output.label("output_a"), gb.c.output.label("output_b"),
            j.c.judge, winner.label("winner"),
            case((j.c.arm_a == ga.c.job_id, j.c.logit), else_=-j.c.logit).label("logit"),
        )
        .select_from(ga)
        .join(gb, and_(gb.c.prompt_set == ga.c.prompt_set, gb.c.question_id == ga.c.question_id,
                       gb.c.turn == ga.c.turn, gb.c.job_id == bindparam("arm_b")))
        .outerjoin(j, verdict)
        .where(ga.c.job_id == bindparam("arm_a"))
        .order_by(ga.c.prompt_set, ga.c.question_id, ga.c.turn)
    )
    if prompt_set is not None:
        stmt = stmt.where(ga.c.prompt_set == bindparam("prompt_set"))
    return _frame(conn, stmt, {"arm_a": int(arm_a), "arm_b": int(arm_b), "judge": judge, "prompt_set": prompt_set})


def generation_timing(conn: Connection) -> pd.DataFrame:
    """Inference timing per job: job_id, answers, new_tokens, latency_s (total),
    mean_latency_s, max_latency_s."""
    stmt = (
        select(
            generations.c.job_id,
            func.count().label("answers"),
            func.sum(generations.c.new_tokens).label("new_tokens"),
            func.sum(generations.c.latency_s).label("latency_s"),
            func.avg(generations.c.latency_s).label("mean_latency_s"),
            func.max(generations.c.latency_s).label("max_latency_s"),
        )
        .group_by(generations.c.job_id)
        .order_by(generations.c.job_id)
    )
    return _frame(conn, stmt)


def job_generations(conn: Connection, job_id: int, *, limit: int = 2000) -> pd.DataFrame:
    return _rows(views.generations_of(conn, job_id, limit=limit), [
        "prompt_set", "question_id", "turn", "category", "prompt", "output", "new_tokens", "latency_s", "decoding"])


# --- a job's attention probes ---------------------------------------------------------

#: One row per (step, layer, head) of a job's attention probes.
ATTENTION_COLUMNS = ["step", "layer", "head", "entropy_norm", "entropy", "nan"]


def _per_head(rows: Sequence[views.AttentionRow]) -> pd.DataFrame:
    """Attention rows cut into one row per head: step, layer (``L0``, ``enc.L0``), head
    (``H0``...), normalised entropy, entropy (nats) and NaN count; not finite: NaN."""
    records = [(r.step, r.label, f"H{h}", _nan(norm), _nan(ent), n)
               for r in rows for h, (norm, ent, n) in enumerate(zip(r.entropy_norm, r.entropy, r.nan))]
    return pd.DataFrame.from_records(records, columns=ATTENTION_COLUMNS, nrows=None)


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def attention_phases(conn: Connection, job_id: int) -> dict[str, int]:
    """Phase -> the last step the job probed in it (train, eval, diverged; those it has)."""
    return views.attention_phases(conn, job_id)


def attention_last_step(conn: Connection, job_id: int, *, phase: str = "train") -> pd.DataFrame:
    """The job's probes at its last step in ``phase``, one row per (layer, head), layers in
    (stack, layer) order: the layer x head heatmap's cells."""
    return _per_head(views.attention_at_last_step(conn, job_id, phase=phase))


def attention_layer(conn: Connection, job_id: int, layer: int, *, stack: str = "",
                    phase: str = "train") -> pd.DataFrame:
    """One layer's probes over the steps, one row per (step, head)."""
    return _per_head(views.attention_of_layer(conn, job_id, layer, stack=stack, phase=phase))


# --- comparing runs and factor effects ----------------------------------------------


def job_specs(conn: Connection, job_ids: Sequence[int]) -> pd.DataFrame:
    """The given jobs' resolved specs and factors: id, grid, state, spec, factors."""
    stmt = (
        select(jobs.c.id, grids.c.name.label("grid"), jobs.c.state, jobs.c.spec, jobs.c.factors)
        .join(grids, grids.c.id == jobs.c.grid_id)
        .where(jobs.c.id.in_(bindparam("ids", expanding=True)))
        .order_by(jobs.c.id)
    )
    return _frame(conn, stmt, {"ids": _ids(job_ids)})


def summaries_of(conn: Connection, job_ids: Sequence[int]) -> pd.DataFrame:
    """Every final figure of the given jobs: job_id, name, value (on the summaries'
    primary key, job_id first)."""
    stmt = (
        select(summaries.c.job_id, summaries.c.name, summaries.c.value)
        .where(summaries.c.job_id.in_(bindparam("ids", expanding=True)))
        .order_by(summaries.c.job_id, summaries.c.name)
    )
    return _frame(conn, stmt, {"ids": _ids(job_ids)})
