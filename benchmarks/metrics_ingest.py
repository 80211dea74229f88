"""Metric ingestion through the metrics API (MetricsWriter: batched, fenced), per backend.

    python -m benchmarks.metrics_ingest [--points 500000] [--batch 5000]

One job logs ``points`` values (5 metric names per step), the way a training loop
does; the figure is points per second until the last batch is committed.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import backends, database


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=500_000)
    ap.add_argument("--batch", type=int, default=5000)
    args = ap.parse_args(argv)

    from db import engine as db_engine
    from jobs.metrics import MetricsWriter
    from jobs.queue import Queue, WorkerInfo
    from tests.support.grids import make_jobs

    names = ["loss", "grad_norm", "learning_rate", "token_accuracy", "step_time_s"]
    steps = args.points // len(names)
    rows = []
    print(f"{'backend':<11}{'points':>9}{'batch':>7}{'seconds':>9}{'points/s':>11}")
    for backend in backends():
        with database(backend) as url:
            eng = db_engine.create(url)
            queue = Queue(eng)
            queue.enqueue("m", make_jobs(1))
            claimed = queue.claim(WorkerInfo.here())
            writer = MetricsWriter(eng, claimed.lease, flush_every=args.batch, flush_interval_s=1e9)
            t0 = time.perf_counter()
            for step in range(steps):
                writer.log(step, {n: step * 0.001 for n in names}, wall_time=1.0)
            writer.flush()
            elapsed = time.perf_counter() - t0
            eng.dispose()
        assert writer.written == steps * len(names)
        rate = writer.written / elapsed
        rows.append({"backend": backend, "points": writer.written, "batch": args.batch, "seconds": elapsed, "rate": rate})
        print(f"{backend:<11}{writer.written:>9}{args.batch:>7}{elapsed:>9.2f}{rate:>11,.0f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
