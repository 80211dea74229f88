"""What provenance costs: its capture at each worker start, the claim that stores it, and
the snapshot `gridlab launch` pins.

    python -m benchmarks.provenance_capture [--starts 10] [--jobs 500]

1. Capture in a fresh process (what a worker pays once, at start): from this checkout
   (git: rev-parse, status, and, when dirty, a diff in a throwaway index), and from a
   pinned snapshot (its manifest, no git), split into code, environment and machine.
2. Claims: jobs/s of claim -> complete for a worker with provenance and one without, on
   each backend (the first claim of a queue stores the rows; later ones reuse its id).
3. Making a snapshot of this checkout, and reusing it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import backends, database

PROBE = """
import json, time
t0 = time.perf_counter()
from jobs import provenance as p
t1 = time.perf_counter()
root = p.code_root() if {root!r} is None else __import__("pathlib").Path({root!r})
code = p.capture_code(root); t2 = time.perf_counter()
env = p.capture_environment(); t3 = time.perf_counter()
machine = p.capture_machine(); t4 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "code": t2 - t1, "environment": t3 - t2, "machine": t4 - t3, "total": t4 - t0}}))
"""


def capture_in_fresh_processes(starts: int, root: str | None, pythonpath: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for _ in range(starts):
        r = subprocess.run([sys.executable, "-c", PROBE.format(root=root)], capture_output=True, text=True, check=True,
                           env={"PYTHONPATH": pythonpath, "PATH": "/usr/bin:/bin"})
        for k, v in json.loads(r.stdout).items():
            out.setdefault(k, []).append(v * 1000)
    return out


def first_claim_ms(url: str, with_provenance: bool) -> float:
    """A fresh queue's first claim: with provenance, it stores the code, environment,
    machine and provenance rows (the diff and freeze texts included)."""
    from db import engine as db_engine
    from jobs import operator, provenance, reports
    from jobs.queue import Queue, WorkerInfo
    from tests.support.grids import make_jobs

    eng = db_engine.create(url)
    queue = Queue(eng)
    operator.enqueue(queue.engine, "first", make_jobs(1, first=True))
    worker = WorkerInfo(name="first", host="h", pid=1, provenance=provenance.current() if with_provenance else None)
    reports.unfinished(queue.engine)  # the connection is open before the clock starts
    t = time.perf_counter()
    claimed = queue.claim(worker)
    ms = (time.perf_counter() - t) * 1000
    queue.complete(claimed.lease)
    eng.dispose()
    return ms


def claims(url: str, n: int, with_provenance: bool) -> float:
    from db import engine as db_engine
    from jobs import operator, provenance
    from jobs.queue import Queue, WorkerInfo
    from tests.support.grids import make_jobs

    eng = db_engine.create(url)
    queue = Queue(eng)
    operator.enqueue(queue.engine, "bench", make_jobs(n))
    worker = WorkerInfo(name="bench", host="h", pid=1, provenance=provenance.current() if with_provenance else None)
    t = time.perf_counter()
    while (claimed := queue.claim(worker)) is not None:
        queue.complete(claimed.lease)
    rate = n / (time.perf_counter() - t)
    eng.dispose()
    return rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=500)
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]

    from slurm import snapshot

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        snap = snapshot.make(Path(tmp) / "runs", root=repo)
        made = time.perf_counter() - t
        t = time.perf_counter()
        again = snapshot.make(Path(tmp) / "runs", root=repo)
        reused = time.perf_counter() - t
        assert again.reused
        print(f"snapshot of this checkout ({snap.code.files} files): made in {made * 1000:.0f} ms, "
              f"reused in {reused * 1000:.0f} ms")
        print(f"\ncapture in a fresh process, ms (median [min-max] of {args.starts} starts)")
        print("| from | import | code | environment | machine | total |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, root, path in (("checkout (git)", None, str(repo)), ("pinned snapshot", str(snap.path), str(snap.path))):
            runs = capture_in_fresh_processes(args.starts, root, path)
            cells = [f"{statistics.median(v):.0f} [{min(v):.0f}-{max(v):.0f}]" for v in
                     (runs["import"], runs["code"], runs["environment"], runs["machine"], runs["total"])]
            print(f"| {label} | " + " | ".join(cells) + " |")

    print(f"\nclaim -> complete, {args.jobs} jobs, one process, jobs/s (best of 2, interleaved); "
          "a fresh queue's first claim, ms (median of 5)")
    print("| backend | without provenance | with provenance | ratio | first claim without | first claim with |")
    print("|---|---:|---:|---:|---:|---:|")
    for backend in backends():
        rates: dict[bool, list[float]] = {}
        firsts: dict[bool, list[float]] = {}
        for with_p in (False, True, False, True):  # interleaved: the machine's drift hits both
            with database(backend) as url:
                rates.setdefault(with_p, []).append(claims(url, args.jobs, with_p))
        for with_p in (False, True) * 5:
            with database(backend) as url:
                firsts.setdefault(with_p, []).append(first_claim_ms(url, with_p))
        without, with_ = max(rates[False]), max(rates[True])
        print(f"| {backend} | {without:,.0f} | {with_:,.0f} | {with_ / without:.2f} | "
              f"{statistics.median(firsts[False]):.1f} | {statistics.median(firsts[True]):.1f} |")


if __name__ == "__main__":
    main()
