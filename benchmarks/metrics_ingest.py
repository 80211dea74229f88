"""Metric ingestion through the metrics API (MetricsWriter: batched, fenced), per backend,
beside a raw COPY of the same rows on PostgreSQL.

    python -m benchmarks.metrics_ingest [--points 500000] [--batch 5000] [--repeat 3]

One job logs ``points`` values (5 metric names per step), the way a training loop
does; the figure is points per second until the last batch is committed. On PostgreSQL
the same rows are also written by a bare ``COPY metrics ... FROM STDIN`` per batch (one
transaction each, into the same table with the same unique index, for a job of its own):
the ceiling the fenced, exactly-once path is measured against. The runs alternate, and the
ratio ``api/raw`` is taken within each repeat, since this machine is noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from benchmarks.common import backends, database

NAMES = ["loss", "grad_norm", "learning_rate", "token_accuracy", "step_time_s"]


def _api(eng, job_id: int, lease, steps: int, batch: int) -> tuple[float, int]:
    from jobs.metrics import MetricsWriter

    writer = MetricsWriter(eng, lease, flush_every=batch, flush_interval_s=1e9)
    t0 = time.perf_counter()
    for step in range(steps):
        writer.log(step, {n: step * 0.001 for n in NAMES}, wall_time=1.0)
    writer.flush()
    return time.perf_counter() - t0, writer.written


def _raw_copy(url: str, job_id: int, steps: int, batch: int) -> tuple[float, int]:
    """The same rows, built the same way, by a bare COPY per batch: no fence, no batch number."""
    import psycopg

    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    written = 0
    with psycopg.connect(conninfo) as conn:
        t0 = time.perf_counter()
        buffer: list[tuple] = []

        def flush() -> None:
            nonlocal written
            with conn.cursor() as cur, cur.copy(
                    "COPY metrics (job_id, attempt, name, step, value, wall_time) FROM STDIN") as copy:
                for r in buffer:
                    copy.write_row(r)
            conn.commit()
            written += len(buffer)
            buffer.clear()

        for step in range(steps):
            for n in NAMES:
                buffer.append((job_id, 1, n, step, step * 0.001, 1.0))
            if len(buffer) >= batch:
                flush()
        if buffer:
            flush()
        return time.perf_counter() - t0, written


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=500_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    from db import engine as db_engine
    from jobs import operator
    from jobs.queue import Queue, WorkerInfo
    from tests.support.grids import make_jobs

    steps = args.points // len(NAMES)
    rows = []
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'backend':<11}{'path':<8}{'points':>9}{'batch':>7}{'seconds':>9}{'points/s':>11}{'api/raw':>9}")
    for backend in backends():
        ratios = []
        for _ in range(args.repeat):
            with database(backend) as url:
                eng = db_engine.create(url)
                queue = Queue(eng)
                operator.enqueue(queue.engine, "m", make_jobs(2))
                claimed = queue.claim(WorkerInfo.here())
                elapsed, written = _api(eng, claimed.job.id, claimed.lease, steps, args.batch)
                assert written == steps * len(NAMES)
                api_rate = written / elapsed
                rows.append({"backend": backend, "path": "api", "points": written, "batch": args.batch,
                             "seconds": elapsed, "rate": api_rate})
                line = f"{backend:<11}{'api':<8}{written:>9}{args.batch:>7}{elapsed:>9.2f}{api_rate:>11,.0f}"
                if backend == "postgresql":
                    raw_s, raw_n = _raw_copy(url, 2, steps, args.batch)
                    raw_rate = raw_n / raw_s
                    ratios.append(api_rate / raw_rate)
                    rows.append({"backend": backend, "path": "raw", "points": raw_n, "batch": args.batch,
                                 "seconds": raw_s, "rate": raw_rate})
                    print(line, flush=True)
                    line = (f"{backend:<11}{'raw':<8}{raw_n:>9}{args.batch:>7}{raw_s:>9.2f}{raw_rate:>11,.0f}"
                            f"{ratios[-1]:>9.2f}")
                print(line, flush=True)
                eng.dispose()
        if ratios:
            print(f"{backend}: api/raw median {statistics.median(ratios):.2f} over {len(ratios)} runs "
                  f"({', '.join(f'{r:.2f}' for r in ratios)})")
    return rows


if __name__ == "__main__":
    main()
