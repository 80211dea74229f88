"""Queue lifecycle throughput: claim + heartbeat + complete, through gridlab's API and
in raw SQL (DBAPI, no SQLAlchemy) in the same run, with 1, 4 and 16 processes.

    python -m benchmarks.queue_lifecycle [--jobs 2000] [--procs 1 4 16]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time

from benchmarks.common import backends, database


def _seed(url: str, n: int) -> None:
    from db import engine as db_engine
    from jobs import operator
    from jobs.queue import Queue
    from tests.support.grids import make_jobs

    eng = db_engine.create(url)
    operator.enqueue(eng, "bench", make_jobs(n))
    eng.dispose()


def _api_worker(url: str, barrier) -> int:
    from db import engine as db_engine
    from jobs.queue import Queue, WorkerInfo

    eng = db_engine.create(url)
    queue = Queue(eng, lease_s=30)
    me = WorkerInfo.here()
    barrier.wait()
    done = 0
    while (c := queue.claim(me)) is not None:
        queue.heartbeat(c.lease)
        queue.complete(c.lease)
        done += 1
    eng.dispose()
    return done


SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
PG_NOW = "extract(epoch from clock_timestamp())::double precision"


def _raw_worker(url: str, barrier) -> int:
    """The same statements and transactions as the API, written by hand."""
    import os
    import socket

    owner = f"{socket.gethostname()}:{os.getpid()}"
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=60, isolation_level=None)
        conn.execute("PRAGMA synchronous=NORMAL")
        now, ph, skip, begin = SQLITE_NOW, "?", "", "BEGIN IMMEDIATE"

        def tx(stmts):
            conn.execute(begin)
            out = None
            for sql, args in stmts:
                cur = conn.execute(sql, args)
                if out is None:
                    out = cur.fetchone() if "RETURNING" in sql else cur.rowcount
                    if out is None:
                        break
            conn.execute("COMMIT")
            return out
    else:
        import psycopg

        conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        now, ph, skip = PG_NOW, "%s", " FOR UPDATE SKIP LOCKED"

        def tx(stmts):
            out = None
            with conn.transaction():
                for sql, args in stmts:
                    cur = conn.execute(sql, args)
                    if out is None:
                        out = cur.fetchone() if "RETURNING" in sql else cur.rowcount
                        if out is None:
                            break
            return out

    # The API's claim, written by hand: runnable (not backing off, no unmet dependency),
    # most urgent first, returning what a worker needs to run the job.
    claim = (
        f"UPDATE jobs SET state='running', lease_owner={ph}, lease_expires_at={now} + 30, heartbeat_at={now}, "
        f"attempts=attempts+1, not_before=NULL, started_at=coalesce(started_at, {now}), updated_at={now} "
        f"WHERE id = (SELECT id FROM jobs WHERE state='pending' AND (not_before IS NULL OR not_before <= {now}) "
        "AND NOT EXISTS (SELECT 1 FROM job_dependencies d JOIN jobs u ON u.id = d.depends_on "
        "WHERE d.job_id = jobs.id AND u.state != 'succeeded') "
        f"ORDER BY priority DESC, id LIMIT 1{skip}) "
        "RETURNING id, attempts, updated_at, grid_id, spec_hash, spec, factors, experiment, state, priority, "
        "max_attempts, checkpoint_path"
    )
    held = f"id={ph} AND state='running' AND lease_owner={ph} AND attempts={ph}"
    barrier.wait()
    done = 0
    while True:
        if url.startswith("sqlite"):
            conn.execute(begin)
            row = conn.execute(claim, (owner,)).fetchone()
        else:
            t = conn.transaction()
            t.__enter__()
            row = conn.execute(claim, (owner,)).fetchone()
        if row is None:
            conn.execute("COMMIT") if url.startswith("sqlite") else t.__exit__(None, None, None)
            break
        job_id, attempt, started = row[:3]
        spec = row[5] if isinstance(row[5], dict) else json.loads(row[5])  # the worker needs the spec
        assert spec is not None
        conn.execute(f"INSERT INTO attempts (job_id, number, worker, host, pid, started_at) VALUES ({ph},{ph},{ph},{ph},{ph},{ph})",
                     (job_id, attempt, owner, "h", 0, started))
        conn.execute(f"INSERT INTO events (job_id, at, from_state, to_state, attempt, actor, reason) VALUES ({ph},{now},'pending','running',{ph},{ph},'claimed')",
                     (job_id, attempt, owner))
        conn.execute("COMMIT") if url.startswith("sqlite") else t.__exit__(None, None, None)
        tx([(f"UPDATE jobs SET heartbeat_at={now}, lease_expires_at={now} + 30 WHERE {held}", (job_id, owner, attempt))])
        tx([
            (f"UPDATE jobs SET state='succeeded', lease_owner=NULL, lease_expires_at=NULL, updated_at={now}, last_error=NULL, finished_at={now} WHERE {held}", (job_id, owner, attempt)),
            (f"UPDATE attempts SET ended_at={now}, outcome='succeeded', error=NULL WHERE job_id={ph} AND number={ph} AND ended_at IS NULL", (job_id, attempt)),
            (f"INSERT INTO events (job_id, at, from_state, to_state, attempt, actor, reason) VALUES ({ph},{now},'running','succeeded',{ph},{ph},'succeeded')", (job_id, attempt, owner)),
        ])
        done += 1
    conn.close()
    return done


def _child(target, url: str, barrier, results) -> None:
    results.put(target(url, barrier))


def _run(target, url: str, procs: int) -> float:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(procs + 1)
    results = ctx.Queue()
    workers = [ctx.Process(target=_child, args=(target, url, barrier, results)) for _ in range(procs)]
    for w in workers:
        w.start()
    barrier.wait(timeout=120)  # every process imported and connected: start the clock
    t0 = time.perf_counter()
    total = sum(results.get(timeout=600) for _ in workers)
    elapsed = time.perf_counter() - t0
    for w in workers:
        w.join()
    return total / elapsed


def measure(backend: str, procs: int, jobs: int) -> tuple[float, float]:
    rates = []
    for target in (_api_worker, _raw_worker):
        with database(backend) as url:
            _seed(url, jobs)
            rates.append(_run(target, url, procs))
    return rates[0], rates[1]


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 4, 16])
    args = ap.parse_args(argv)
    rows = []
    print(f"{'backend':<11}{'procs':>6}{'api jobs/s':>12}{'raw jobs/s':>12}{'api/raw':>9}")
    for backend in backends():
        for procs in args.procs:
            api, raw = measure(backend, procs, args.jobs)
            rows.append({"backend": backend, "procs": procs, "api": api, "raw": raw, "ratio": api / raw})
            print(f"{backend:<11}{procs:>6}{api:>12.0f}{raw:>12.0f}{api / raw:>9.2f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
