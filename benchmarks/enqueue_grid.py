"""Enqueue a 100,000-cell grid on each backend, then enqueue it again (adds 0 rows).

    python -m benchmarks.enqueue_grid [--cells 100000]

Times the whole path a user's `gridlab enqueue` takes: parse and validate the YAML,
expand and hash every cell, insert the new jobs and their events in one transaction.
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks.common import backends, database


def grid_text(cells: int) -> str:
    seeds = 1000
    lrs = max(1, cells // seeds)
    lr_values = ", ".join(f"{(i + 1) * 1e-5:.6g}" for i in range(lrs))
    return (
        "name: big\nexperiment: tiny_lm\nfixed: {steps: 10}\naxes:\n"
        f"  seed: [{', '.join(str(i) for i in range(seeds))}]\n"
        f"  lr: [{lr_values}]\n"
    )


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=100_000)
    args = ap.parse_args(argv)

    from db import engine as db_engine
    from harness import enqueue, grid
    from jobs import operator
    from jobs.queue import Queue

    text = grid_text(args.cells)
    rows = []
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'backend':<11}{'cells':>8}{'parse s':>9}{'expand s':>10}{'insert s':>10}{'total s':>9}{'again s':>9}{'again new':>10}")
    for backend in backends():
        with database(backend) as url:
            eng = db_engine.create(url)
            queue = Queue(eng)
            t0 = time.perf_counter()
            g = grid.parse(text, "big.yaml")
            t1 = time.perf_counter()
            jobs = enqueue.new_jobs(g)
            t2 = time.perf_counter()
            first = operator.enqueue(queue.engine, g.name, jobs, source_text=text)
            t3 = time.perf_counter()
            second = enqueue.enqueue(queue, grid.parse(text, "big.yaml"))
            t4 = time.perf_counter()
            eng.dispose()
        assert first.new == len(jobs) == args.cells and second.new == 0
        row = {"backend": backend, "cells": len(jobs), "parse": t1 - t0, "expand": t2 - t1, "insert": t3 - t2,
               "total": t3 - t0, "again": t4 - t3, "again_new": second.new}
        rows.append(row)
        print(f"{backend:<11}{row['cells']:>8}{row['parse']:>9.2f}{row['expand']:>10.2f}{row['insert']:>10.2f}"
              f"{row['total']:>9.2f}{row['again']:>9.2f}{row['again_new']:>10}", flush=True)
    return rows


if __name__ == "__main__":
    main()
