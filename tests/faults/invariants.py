"""Invariants every fault scenario ends by checking, over the whole database."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select

from db.models import attempts, events, jobs, metrics
from db.session import scope
from jobs import states


def check(engine, *, expect_all: str | None = states.SUCCEEDED) -> dict[str, int]:
    """Assert the invariants; return figures for the report (jobs, attempts, reclaims...)."""
    with scope(engine, write=False) as conn:
        job_rows = conn.execute(select(jobs.c.id, jobs.c.state, jobs.c.attempts)).all()
        event_rows = conn.execute(select(events.c.job_id, events.c.from_state, events.c.to_state, events.c.attempt)
                                  .order_by(events.c.id)).all()
        dupes = conn.execute(select(metrics.c.job_id, metrics.c.name, metrics.c.step, func.count())
                             .group_by(metrics.c.job_id, metrics.c.name, metrics.c.step).having(func.count() > 1)).all()
        attempt_rows = conn.execute(select(attempts.c.job_id, attempts.c.number, attempts.c.outcome)).all()
        metric_attempts = conn.execute(select(metrics.c.job_id, metrics.c.attempt).distinct()).all()

    # 1. every job is final, or still queued
    bad = [(j.id, j.state) for j in job_rows if j.state not in (*states.FINAL, states.PENDING)]
    assert not bad, f"jobs left running: {bad[:10]}"
    if expect_all:
        assert all(j.state == expect_all for j in job_rows), {s for _, s, _ in job_rows}

    # 2. no job ever had two live leases: claims and exits from 'running' alternate,
    #    and each exit closes the attempt that was claimed.
    live: dict[int, int | None] = defaultdict(lambda: None)
    for job_id, from_state, to_state, attempt in event_rows:
        if from_state == to_state:  # a note, not a move (an attempt rewinding to a checkpoint)
            continue
        if to_state == states.RUNNING:
            assert live[job_id] is None, f"job {job_id}: attempt {attempt} claimed while {live[job_id]} was live"
            live[job_id] = attempt
        elif from_state == states.RUNNING:
            assert live[job_id] == attempt, f"job {job_id}: attempt {attempt} ended but {live[job_id]} was live"
            live[job_id] = None
    # 3. every (job, metric, step) once
    assert dupes == [], f"duplicate metric points: {dupes[:5]}"
    # 4. every metric point belongs to a recorded attempt
    known = {(a.job_id, a.number) for a in attempt_rows}
    assert set(map(tuple, metric_attempts)) <= known
    claims = sum(1 for e in event_rows if e.to_state == states.RUNNING)
    return {
        "jobs": len(job_rows),
        "attempts": len(attempt_rows),
        "reclaimed": sum(1 for a in attempt_rows if a.outcome == states.OUTCOME_LEASE_EXPIRED),
        "double_run": claims - len(attempt_rows),  # 0: every claim is one attempt row
        "lost": sum(1 for j in job_rows if j.state not in states.FINAL),
    }


#: Marker events that are confirmed writes under the lease (or the attempt's end, written after
#: its outcome was recorded), each stamped with when its write began (jobs.runs.Marker).
ACTIVITY = ("start", "beat", "metrics", "summary", "checkpoint", "end")


def check_markers(runs_dir) -> dict[str, int]:
    """The double-run check the database cannot make (a zombie writes no events): from each
    attempt's marker file (jobs.runs.Marker, written outside the database), attempt k's last
    confirmed write must have begun before attempt k+1 started. Overlapping live attempts fail."""
    from jobs import runs

    markers = runs.read_markers(runs_dir)
    assert markers, f"no attempt markers under {runs_dir}"
    overlaps = []
    for run, lines in markers.items():
        spans: dict[int, list[float]] = {}
        for line in lines:
            if line["event"] in ACTIVITY:
                span = spans.setdefault(line["attempt"], [line["t"], line["t"]])
                span[0], span[1] = min(span[0], line["t"]), max(span[1], line["t"])
        ordered = sorted(spans.items())
        for (a, (_, a_last)), (b, (b_start, _)) in zip(ordered, ordered[1:]):
            if a_last >= b_start:
                overlaps.append(f"{run.name}: attempt {a} still wrote {a_last - b_start:.3f}s after attempt {b} started")
    assert not overlaps, f"double runs: {overlaps[:5]}"
    return {"runs": len(markers), "attempts": sum(len({l['attempt'] for l in ls}) for ls in markers.values())}


def check_resumable_curves(engine, steps: int) -> None:
    """For jobs run by tests.support.runners.resumable (spec i = job id - 1): resumed or
    not, each curve must be exactly the uninterrupted one, i + s/1000 for s = 1..steps."""
    with scope(engine, write=False) as conn:
        rows = conn.execute(select(metrics.c.job_id, metrics.c.value).where(metrics.c.name == "value")
                            .order_by(metrics.c.job_id, metrics.c.step)).all()
    curves: dict[int, list[float]] = defaultdict(list)
    for job_id, value in rows:
        curves[job_id].append(value)
    wrong = [j for j, c in curves.items() if c != [(j - 1) + s / 1000 for s in range(1, steps + 1)]]
    assert not wrong, f"curves differ from an uninterrupted run for jobs {wrong[:10]}"
