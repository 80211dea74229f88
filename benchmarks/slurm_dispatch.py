"""Slurm dispatch: `gridlab launch` next to plain `sbatch` of the same work, same run.

The work: N experiments of ``--work-s`` seconds each (tests.support.runners:counting,
one step). gridlab submits ``--workers`` pull-workers (one job array) that claim the N
jobs from a SQLite database; plain sbatch submits one array of N tasks, each a Python
process that does the same sleep (the usual one-experiment-per-job script). Measured:

* launch -> first experiment running (gridlab: first attempt's start in the database;
  sbatch: first task's start stamp);
* experiments started per minute: N / (last start - launch) * 60;
* launch -> all done.

    python -m benchmarks.slurm_dispatch [--jobs 40] [--workers 2] [--work-s 0.5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _squeue_empty(job: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i"], capture_output=True, text=True)
    return out.returncode == 0 and not out.stdout.strip()


def _wait(job: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not _squeue_empty(job):
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job])
            raise SystemExit(f"job {job} did not finish in {timeout_s:.0f} s")
        time.sleep(0.2)


def bench_gridlab(tmp: Path, n: int, workers: int, work_s: float, partition: str | None) -> dict[str, float]:
    from sqlalchemy import func, select

    from db import engine as db_engine
    from db import schema
    from db.models import attempts
    from db.session import scope
    from jobs import operator, reports, workers as worker_jobs
    from jobs.queue import Queue
    from tests.support.grids import make_jobs

    url = f"sqlite:///{tmp / 'gridlab.db'}"
    eng = db_engine.create(url)
    schema.upgrade(eng)
    queue = Queue(eng)
    operator.enqueue(queue.engine, "bench", make_jobs(n, experiment="count", steps=1, delay=work_s, every=1))
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRIDLAB_DB": url}
    cmd = [sys.executable, "-m", "harness.cli", "launch", "--workers", str(workers), "--runner",
           "tests.support.runners:counting", "--runs-dir", str(tmp / "runs"), "--time", "10"]
    if partition:
        cmd += ["--partition", partition]
    t0 = time.time()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp)
    submitted = time.time()
    if r.returncode != 0:
        raise SystemExit(f"gridlab launch failed: {r.stderr.strip()}")
    (base,) = {w.external_id.split("_")[0] for w in worker_jobs.dispatched(queue.engine)}
    _wait(base, 600)
    done = time.time()
    with scope(eng, write=False) as conn:
        first, last = conn.execute(select(func.min(attempts.c.started_at), func.max(attempts.c.started_at))).one()
        count = conn.execute(select(func.count()).select_from(attempts)).scalar_one()
    assert count == n and reports.counts(queue.engine)["succeeded"] == n, (count, reports.counts(queue.engine))
    eng.dispose()
    return {"submit_s": submitted - t0, "first_s": first - t0, "rate": n / (last - t0) * 60, "total_s": done - t0}


TASK = """import os, sys, time
open(os.path.join(sys.argv[1], "start-" + os.environ["SLURM_ARRAY_TASK_ID"]), "w").write(repr(time.time()))
time.sleep(float(sys.argv[2]))
"""


def bench_sbatch(tmp: Path, n: int, work_s: float, partition: str | None) -> dict[str, float]:
    stamps = tmp / "stamps"
    stamps.mkdir()
    (tmp / "task.py").write_text(TASK)
    script = tmp / "plain.sh"
    script.write_text("\n".join([
        "#!/bin/bash", f"#SBATCH --array=0-{n - 1}", "#SBATCH --cpus-per-task=1", "#SBATCH --time=10",
        f"#SBATCH --output={tmp}/plain-%A_%a.out", *([f"#SBATCH --partition={partition}"] if partition else []),
        f"srun --unbuffered {sys.executable} {tmp / 'task.py'} {stamps} {work_s}", "",
    ]))
    t0 = time.time()
    out = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, check=True)
    submitted = time.time()
    _wait(out.stdout.strip().split(";")[0], 600)
    done = time.time()
    starts = sorted(float(p.read_text()) for p in stamps.iterdir())
    assert len(starts) == n, len(starts)
    return {"submit_s": submitted - t0, "first_s": starts[0] - t0, "rate": n / (starts[-1] - t0) * 60, "total_s": done - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work-s", type=float, default=0.5)
    ap.add_argument("--partition", default=None)
    args = ap.parse_args()
    cpus = subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True, text=True).stdout.strip()
    print(f"Slurm dispatch: {args.jobs} experiments of {args.work_s} s; gridlab {args.workers} workers; "
          f"node CPUs (alloc/idle/other/total) {cpus}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="gridlab-bench-", dir=os.environ.get("GRIDLAB_BENCH_DIR")) as tmp:
        for name, fn in (("gridlab launch", lambda d: bench_gridlab(d, args.jobs, args.workers, args.work_s, args.partition)),
                         ("plain sbatch array", lambda d: bench_sbatch(d, args.jobs, args.work_s, args.partition))):
            d = Path(tmp) / name.split()[0]
            d.mkdir()
            rows.append((name, fn(d)))
    print(f"{'':20} {'submit':>8} {'-> first running':>17} {'started/min':>12} {'-> all done':>12}")
    for name, m in rows:
        print(f"{name:20} {m['submit_s']:7.2f}s {m['first_s']:16.2f}s {m['rate']:12.1f} {m['total_s']:11.2f}s")


if __name__ == "__main__":
    main()
