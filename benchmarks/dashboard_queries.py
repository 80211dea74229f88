"""Dashboard queries on a big database: every page's queries, timed, on each backend.

Builds a synthetic grid of 500 jobs with 10,000,000 metric points (499 runs of 4,500
steps x 4 curves plus validation points, and one run with a 1,000,000-step loss curve),
with generations, judgments and failed attempts, then runs the statements each
dashboard page runs with its default choices, and prints seconds per page per backend.

    python -m benchmarks.dashboard_queries [--points 10000000] [--repeat 3] [--backend sqlite] [--keep]
    python -m benchmarks.dashboard_queries --reuse URL [--reuse URL]   # time databases kept earlier

Target: every page under 1 s. Loading is bulk (executemany on SQLite, COPY on
PostgreSQL) and takes a few minutes; it is not what is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from benchmarks.common import backends, database

FACTORS = {
    "dataset": ["alpaca", "dolly", "oasst", "gsm8k", "sharegpt"],
    "model": ["tiny-gpt2", "tiny-llama"],
    "norm": ["dyt", "layernorm"],
    "lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
    "seed": [0, 1, 2, 3, 4],
}
N_JOBS = 500
CURVES = ("loss", "grad_norm", "lr", "tokens_per_s")
LONG_RUN_POINTS = 1_000_000
VAL_EVERY = 100
QUESTIONS = 80
TURNS = 2


def cells() -> list[dict]:
    out: list[dict] = []
    for d in FACTORS["dataset"]:
        for m in FACTORS["model"]:
            for n in FACTORS["norm"]:
                for lr in FACTORS["lr"]:
                    for s in FACTORS["seed"]:
                        out.append({"dataset": d, "model": m, "norm": n, "lr": lr, "seed": s})
    return out[:N_JOBS]


def state_of(i: int) -> str:
    """Mostly finished, with every state represented."""
    if i % 50 == 7:
        return "failed"
    if i % 50 == 13:
        return "diverged"
    if i % 50 == 21:
        return "running"
    if i % 50 == 33:
        return "cancelled"
    if i >= N_JOBS - 20:
        return "pending"
    return "succeeded"


# --- building the database ----------------------------------------------------------


def build(url: str, total_points: int) -> dict:
    """Fill the (migrated, empty) database at ``url``. Returns what the timings need."""
    from sqlalchemy import insert, update

    from db import engine as db_engine
    from db.models import attempts, generations, judgments, jobs, summaries
    from jobs import operator
    from jobs.operator import NewJob

    eng = db_engine.create(url)
    grid_cells = cells()
    new = [NewJob(spec_hash=f"{i:064x}", spec={**c, "steps": 4500}, factors=c, experiment="bench")
           for i, c in enumerate(grid_cells)]
    operator.enqueue(eng, "bench", new)
    with eng.begin() as conn:
        ids = [r.id for r in conn.execute(jobs.select().order_by(jobs.c.id))]
    now = time.time()
    t0 = now - 86_400
    long_points = min(LONG_RUN_POINTS, total_points // 10)
    per_run = (total_points - long_points) // (len(ids) - 1)
    steps = max(1, int(per_run // (len(CURVES) + 1 / VAL_EVERY)))
    long_job = ids[0]
    started = [j for i, j in enumerate(ids) if state_of(i) != "pending"]
    with eng.begin() as conn:
        for i, job_id in enumerate(ids):
            state = state_of(i)
            values: dict = {"state": state}
            if state != "pending":
                values.update(attempts=1, started_at=t0 + i, updated_at=t0 + i + 3600)
            if state in ("succeeded", "failed", "diverged", "cancelled"):
                values["finished_at"] = t0 + i + 3600
            if state == "running":
                values.update(lease_owner=f"node{i % 8}:{1000 + i}", lease_expires_at=now - 600 if i % 100 == 21 else now + 600,
                              heartbeat_at=now - 700 if i % 100 == 21 else now - 5)
            if state in ("failed", "diverged"):
                values["last_error"] = "RuntimeError: CUDA out of memory" if state == "failed" else "loss=nan at step 812"
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
        conn.execute(insert(attempts), [
            {"job_id": j, "number": 1, "worker": f"node{j % 8}:{1000 + j}", "host": f"node{j % 8}", "pid": 1000 + j,
             "slurm_job_id": f"{5000 + j // 100}_{j % 100}", "slurm_array_index": j % 100, "node": f"node{j % 8}",
             "started_at": t0 + j, "ended_at": None if state_of(ids.index(j)) == "running" else t0 + j + 3600,
             "outcome": _outcome(state_of(ids.index(j))),
             "error": ("Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory"
                       if state_of(ids.index(j)) == "failed" else
                       "loss=nan at step 812" if state_of(ids.index(j)) == "diverged" else None)}
            for j in started
        ])
        done = [j for i, j in enumerate(ids) if state_of(i) == "succeeded"]
        rng = np.random.default_rng(0)
        conn.execute(insert(summaries), [
            {"job_id": j, "name": name, "value": float(v), "attempt": 1}
            for j in done
            for name, v in (("val_loss", 1.5 + rng.normal(0, 0.05)), ("val_perplexity", 4.5 + rng.normal(0, 0.2)),
                            ("train_loss", 1.4 + rng.normal(0, 0.05)))
        ])
        arms = done[:100]
        conn.execute(insert(generations), [
            {"job_id": j, "attempt": 1, "prompt_set": "mt-bench", "question_id": f"q{q:03d}", "category": "writing",
             "turn": t, "prompt": f"Question {q}, turn {t}: write something.", "output": f"Answer of job {j} to {q}/{t}. " * 8,
             "new_tokens": 64 + (q * 7 + j) % 200, "latency_s": 0.5 + ((q * 13 + j) % 50) / 25, "decoding": {"temperature": 0.0},
             "created_at": now}
            for j in arms for q in range(QUESTIONS) for t in (1, 2)
        ])
        judge_jobs = done[100:150]
        conn.execute(insert(judgments), [
            {"job_id": jj, "arm_a": arms[2 * k], "arm_b": arms[2 * k + 1], "judge": "pairrm", "prompt_set": "mt-bench",
             "question_id": f"q{q:03d}", "turn": t, "winner": "abt"[(q + t + k) % 3].replace("t", "tie"),
             "logit": float(rng.normal()), "created_at": now}
            for k, jj in enumerate(judge_jobs) for q in range(QUESTIONS) for t in (1, 2)
        ])
    eng.dispose()
    points = _load_metrics(url, ids, long_job, steps, t0, long_points)
    _roll_up(url, [j for i, j in enumerate(ids) if state_of(i) in ("succeeded", "failed", "diverged", "cancelled")])
    _analyze(url)
    return {"ids": ids, "long_job": long_job, "arms": (arms[0], arms[1]), "points": points}


def _outcome(state: str) -> str | None:
    return {"succeeded": "succeeded", "failed": "error", "diverged": "diverged", "cancelled": "cancelled"}.get(state)


def _metric_rows(ids: list[int], long_job: int, steps: int, t0: float, long_points: int) -> Iterator[tuple[list, int]]:
    """Rows (job_id, attempt, name, step, value, wall_time), a job at a time, as columns."""
    rng = np.random.default_rng(1)
    for job_id in ids:
        if job_id == long_job:
            s = np.arange(1, long_points + 1)
            yield [("loss", s, 1.2 + 3 * np.exp(-s / (long_points / 20)) + rng.normal(0, 0.05, long_points))], job_id
            continue
        s = np.arange(1, steps + 1)
        tau = 300 + (job_id % 17) * 40
        cols = [
            ("loss", s, 1.3 + 3 * np.exp(-s / tau) + rng.normal(0, 0.05, steps)),
            ("grad_norm", s, 0.5 + np.exp(-s / tau) + np.abs(rng.normal(0, 0.1, steps))),
            ("lr", s, 1e-3 * np.minimum(1.0, s / 200) * (0.5 + 0.5 * np.cos(np.pi * s / steps))),
            ("tokens_per_s", s, 20_000 + (job_id % 5) * 2_000 + rng.normal(0, 300, steps)),
        ]
        v = np.arange(VAL_EVERY, steps + 1, VAL_EVERY)
        cols.append(("val_loss", v, 1.4 + 3 * np.exp(-v / tau) + rng.normal(0, 0.02, len(v))))
        yield cols, job_id


def _load_metrics(url: str, ids: list[int], long_job: int, steps: int, t0: float, long_points: int) -> int:
    from db import engine as db_engine

    resolved = db_engine.resolve_url(url)
    total = 0
    if resolved.get_backend_name() == "sqlite":
        import sqlite3

        conn = sqlite3.connect(resolved.database, isolation_level=None)
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-1000000")
        conn.execute("BEGIN")
        sql = "INSERT INTO metrics (job_id, attempt, name, step, value, wall_time) VALUES (?, ?, ?, ?, ?, ?)"
        for cols, job_id in _metric_rows(ids, long_job, steps, t0, long_points):
            for name, s, v in cols:
                conn.executemany(sql, zip([job_id] * len(s), [1] * len(s), [name] * len(s), s.tolist(), v.tolist(),
                                          (t0 + s * 0.1).tolist()))
                total += len(s)
        conn.execute("COMMIT")
        conn.close()
        return total
    import psycopg

    conninfo = resolved.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        with cur.copy("COPY metrics (job_id, attempt, name, step, value, wall_time) FROM STDIN") as copy:
            for cols, job_id in _metric_rows(ids, long_job, steps, t0, long_points):
                buf = io.StringIO()
                for name, s, v in cols:
                    w = t0 + s * 0.1
                    buf.write("".join(f"{job_id}\t1\t{name}\t{a}\t{b!r}\t{c!r}\n" for a, b, c in zip(s.tolist(), v.tolist(), w.tolist())))
                    total += len(s)
                copy.write(buf.getvalue())
    return total


def _roll_up(url: str, final: list[int]) -> None:
    """The curve roll-ups the queue writes as each job reaches a final state (here all
    at once, since the jobs were made final by hand above)."""
    from db import engine as db_engine
    from jobs import queries

    eng = db_engine.create(url)
    t = time.perf_counter()
    with eng.begin() as conn:
        for start in range(0, len(final), 50):
            queries.write_curve_rollups(conn, final[start:start + 50])
    print(f"  rolled up {len(final)} finished jobs' curves in {time.perf_counter() - t:.1f} s", flush=True)
    eng.dispose()


def _analyze(url: str) -> None:
    """Fresh planner statistics (and PostgreSQL's visibility map), as autovacuum would
    have them on a database that grew over days."""
    from db import engine as db_engine

    resolved = db_engine.resolve_url(url)
    if resolved.get_backend_name() == "sqlite":
        import sqlite3

        conn = sqlite3.connect(resolved.database)
        conn.execute("ANALYZE")
        conn.close()
        return
    import psycopg

    conninfo = resolved.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


# --- the pages' queries ---------------------------------------------------------------


@contextlib.contextmanager
def kept_database(backend: str) -> Iterator[str]:
    """Like benchmarks.common.database, but the database outlives the run (for --reuse)."""
    from benchmarks.common import PG_ADMIN, _migrate
    from db import engine as db_engine
    from db import schema

    name = f"gridlab_dashboard_bench_{uuid.uuid4().hex[:8]}"
    if backend == "sqlite":
        url = f"sqlite:///{Path(tempfile.gettempdir()) / (name + '.db')}"
    else:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    _migrate(url, db_engine, schema)
    yield url


def describe(url: str) -> dict:
    """What the timings need, read back from a database ``build`` filled earlier."""
    from sqlalchemy import func, select

    from db import engine as db_engine
    from db.models import generations, jobs, metrics

    eng = db_engine.create(url, readonly=True)
    with eng.connect() as conn:
        ids = list(conn.execute(select(jobs.c.id).order_by(jobs.c.id)).scalars())
        arms = list(conn.execute(select(generations.c.job_id).distinct().order_by(generations.c.job_id).limit(2)).scalars())
        points = conn.execute(select(func.count()).select_from(metrics)).scalar_one()
    eng.dispose()
    return {"ids": ids, "long_job": ids[0], "arms": tuple(arms), "points": points}


def page_queries(info: dict) -> dict[str, Callable]:
    """Page -> a function running the statements that page runs with its defaults."""
    from dashboards import queries as q
    from dashboards.curves import buckets_per_run

    ids = info["ids"]
    overlay = buckets_per_run(len(ids), 400)  # the page's default resolution, cut for 500 runs
    long_job = info["long_job"]
    arm_a, arm_b = info["arms"]

    def overview(conn):
        q.grid_progress(conn)
        q.job_table(conn)
        q.stale_leases(conn)
        q.running_jobs(conn)
        q.db_now(conn)

    def curves(conn):
        names = q.metric_names(conn, ids)
        assert "loss" in names, names
        q.curves(conn, "loss", ids, buckets=overlay)  # every run's loss, overlaid

    def curves_point_by_point(conn):
        q.metric_names(conn, ids)
        q.curves(conn, "loss", ids, buckets=overlay, rollups=False)  # as before roll-ups: every index entry

    def curves_half(conn):
        # 250 runs: 80 buckets each, too fine for the coarse roll-up level; the most rows
        # a page of this database reads from roll-ups (about 1,000 per curve)
        q.curves(conn, "loss", ids[:250], buckets=buckets_per_run(250, 400))

    def curves_long_run(conn):
        q.curves(conn, "loss", [long_job])  # one curve of 1,000,000 points

    def curves_long_run_point_by_point(conn):
        q.curves(conn, "loss", [long_job], rollups=False)

    def results(conn):
        q.summary_names(conn)
        q.job_table(conn)
        q.summary_values(conn, "val_loss")

    def comparisons(conn):
        q.judges(conn)
        q.judgment_counts(conn)
        q.job_table(conn)
        q.pair_outputs(conn, arm_a, arm_b)

    def win_rates(conn):
        # what the Comparisons page computes from its verdicts: 50 pairs' bootstraps
        from dashboards.comparisons import win_rates as rates

        rates(q.judgment_counts(conn))

    def effects(conn):
        # the Factor effects page on val_loss: its reads, then the statistics over 500 jobs
        from db import stats

        q.job_table(conn)
        q.summary_names(conn)
        q.metric_names(conn, ids)
        values = q.summary_values(conn, "val_loss")
        rows = list(zip(values["factors"], values["value"]))
        stats.factor_effects(rows, bounds=stats.quantity_range("val_loss"))
        stats.interaction(rows, "norm", "dataset", stats.quantity_range("val_loss"))

    def compare(picked: list[int]):
        def run(conn):
            q.job_table(conn)
            q.metric_names(conn, picked)
            q.summaries_of(conn, picked)
            q.job_specs(conn, picked)
            for name in ("loss", "val_loss"):
                q.curves(conn, name, picked, buckets=buckets_per_run(len(picked), 400))
        return run

    def timing(conn):
        q.job_table(conn)
        q.generation_timing(conn)
        q.sampled_means(conn, "tokens_per_s", ids)
        q.sampled_means(conn, "step_time_s", ids)

    def failures(conn):
        q.failed_attempts(conn)
        q.jobs_with_errors(conn)

    def run_detail(conn):
        job_id = long_job
        q.job(conn, job_id)
        q.job_attempts(conn, job_id)
        q.job_events(conn, job_id)
        q.job_summaries(conn, job_id)
        for name in q.metric_names(conn, [job_id]):
            q.curves(conn, name, [job_id])
        q.job_generations(conn, arm_a)

    def run_detail_typical(conn):
        job_id = ids[len(ids) // 2]
        q.job(conn, job_id)
        q.job_attempts(conn, job_id)
        q.job_events(conn, job_id)
        q.job_summaries(conn, job_id)
        for name in q.metric_names(conn, [job_id]):
            q.curves(conn, name, [job_id])
        q.job_generations(conn, job_id)

    return {
        "overview": overview,
        "curves (500 runs' loss)": curves,
        "  same, point by point": curves_point_by_point,
        "curves (250 runs' loss)": curves_half,
        "curves (1M-point run)": curves_long_run,
        "  same, point by point ": curves_long_run_point_by_point,
        "results": results,
        "comparisons": comparisons,
        "  and its win rates (50 pairs x 160 prompts)": win_rates,
        "factor effects (500 jobs' val_loss)": effects,
        "compare 2 runs": compare(ids[100:102]),
        "compare 2 cells (5 seeds each)": compare(ids[100:110]),
        "timing": timing,
        "failures": failures,
        "run detail (1M-point run)": run_detail,
        "run detail (4,500-step run)": run_detail_typical,
    }


def time_pages(url: str, info: dict, repeat: int) -> dict[str, float]:
    """Best of ``repeat`` wall-clock seconds per page, through the dashboard's read-only engine."""
    from dashboards import database
    from db.session import scope

    eng = database.open_readonly(url)
    out: dict[str, float] = {}
    for page, run in page_queries(info).items():
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            with scope(eng, write=False) as conn:
                run(conn)
            best = min(best, time.perf_counter() - t)
        out[page] = best
    eng.dispose()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000_000, help="metric points in all")
    parser.add_argument("--repeat", type=int, default=3, help="runs per page; the best is reported")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], action="append",
                        help="only this backend (repeatable; default: every reachable one)")
    parser.add_argument("--reuse", metavar="URL", action="append", default=[],
                        help="time a database an earlier run built (with --keep) instead of building one (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the databases built (their URLs are printed)")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}

    def run(backend: str, url: str, info: dict) -> None:
        results[backend] = time_pages(url, info, args.repeat)
        for page, seconds in results[backend].items():
            print(f"  {backend}: {page}: {seconds:.3f} s", flush=True)

    for url in args.reuse:
        from db import engine as db_engine

        backend = db_engine.resolve_url(url).get_backend_name()
        info = describe(url)
        print(f"{backend}: reusing {db_engine.redact(url)}: {len(info['ids'])} jobs, {info['points']:,} metric points")
        run(backend, url, info)
    for backend in ([] if args.reuse else args.backend or backends()):
        with (kept_database(backend) if args.keep else database(backend)) as url:
            t = time.perf_counter()
            info = build(url, args.points)
            print(f"{backend}: built {len(info['ids'])} jobs, {info['points']:,} metric points "
                  f"in {time.perf_counter() - t:.0f} s" + (f" (kept: {url})" if args.keep else ""), flush=True)
            run(backend, url, info)
    names = list(next(iter(results.values())))
    cols = list(results)
    width = max(len(n) for n in names)
    print()
    print(f"{'page':<{width}}  " + "  ".join(f"{c + ' (s)':>14}" for c in cols))
    for n in names:
        print(f"{n:<{width}}  " + "  ".join(f"{results[c][n]:>14.3f}" for c in cols))
    slow = [(c, n) for c in cols for n in names if results[c][n] >= 1.0]
    print()
    print("every page under 1 s" if not slow else "over 1 s: " + ", ".join(f"{n} on {c}" for c, n in slow))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
