"""How long a worker's heartbeat thread can be kept from running while its first job sets up.

    python -m benchmarks.heartbeat_stalls [--hogs 0 6] [--limit 1.0]

A worker's heartbeat is a thread of the worker process: while the main thread holds the GIL in
one long C call, no heartbeat is sent, and a stall longer than the lease loses the job. For each
``--hogs`` count, this starts that many CPU-bound processes at nice 0 and one worker process at
nice 5 (as ``make test`` runs its workers) that runs one tiny SFT cell (16 LoRA steps of
tiny-gpt2 on synthetic records, a fresh SQLite database). Beside the worker's own threads a probe
thread wakes every 50 ms and re-arms ``faulthandler.dump_traceback_later(limit)``; a stall longer
than ``--limit`` makes faulthandler's C thread (which needs no GIL) dump every thread's stack.
Printed: the worker's wall time, the longest gap between the probe's wake-ups, how many gaps
exceeded 0.5 s and ``--limit``, and for each dumped stall the main thread's innermost frame.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

GRID = """
name: stalls
experiment: sft
fixed: {model: tiny-gpt2, norm: dyt, peft: lora, strategy: selective, steps: 16, batch_size: 4,
        max_length: 48, synthetic_records: 48, validation_share: 0.1, lr: 3.0e-3, eval_every: 8,
        checkpoint_every: 4, seed: 7, eval_prompts: '', eval_lm_tasks: '', eval_references: 0}
axes: {dataset: [synthetic]}
"""

# The worker process: the probe thread first, then a worker that runs the one cell and exits.
CHILD = r"""
import faulthandler, json, sys, threading, time
limit, folder = float(sys.argv[1]), sys.argv[2]
dumps = open(f"{folder}/stacks.txt", "w")
gaps = []

def probe():
    last = time.monotonic()
    while True:
        faulthandler.dump_traceback_later(limit, repeat=False, file=dumps)
        time.sleep(0.05)
        now = time.monotonic()
        gaps.append(now - last - 0.05)
        last = now

threading.Thread(target=probe, daemon=True).start()
from db import engine as db_engine, schema
from harness.enqueue import new_jobs
from harness.grid import parse
from jobs import operator
from jobs.pool import worker_main
from jobs.worker import WorkerOptions

url = f"sqlite:///{folder}/bench.db"
engine = db_engine.create(url)
schema.upgrade(engine)
operator.enqueue(engine, "stalls", new_jobs(parse(open(f"{folder}/grid.yaml").read())))
t0 = time.monotonic()
rc = worker_main(WorkerOptions(url=url, runs_dir=f"{folder}/runs", heartbeat_s=2.0, poll_s=0.1,
                               threads_per_worker=1, max_jobs=1))
faulthandler.cancel_dump_traceback_later()
print(json.dumps({"rc": rc, "wall_s": time.monotonic() - t0, "gaps": gaps}))
"""


def _where(stacks: str) -> list[str]:
    """The main thread's innermost frame outside importlib, for each dump in ``stacks``."""
    found = []
    for dump in stacks.split("Timeout (")[1:]:
        for thread in dump.split("\n\n"):
            if "worker_main" not in thread:
                continue
            frames = [line.strip() for line in thread.splitlines() if line.strip().startswith("File")]
            frames = [f for f in frames if "<frozen importlib" not in f]
            if frames:
                path, _, rest = frames[0].removeprefix('File "').partition('", ')
                found.append(f"{'/'.join(Path(path).parts[-3:])} {rest}")
    return found


def measure(hogs: int, limit: float) -> dict:
    hog_procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs)]
    try:
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "grid.yaml").write_text(GRID)
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}
            out = subprocess.run(["nice", "-n", "5", sys.executable, "-c", CHILD, str(limit), folder], cwd=REPO,
                                 env=env, capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result["where"] = _where(Path(folder, "stacks.txt").read_text())
    finally:
        for p in hog_procs:
            p.kill()
            p.wait()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hogs", type=int, nargs="+", default=[0, 6],
                        help="CPU-bound processes beside the worker, one measurement each (default: 0 6)")
    parser.add_argument("--limit", type=float, default=1.0,
                        help="a stall longer than this many seconds dumps the stacks (default: 1.0)")
    args = parser.parse_args(argv)
    print(f"{'hogs':>4}  {'wall s':>7}  {'longest stall s':>15}  {'> 0.5 s':>7}  {'> limit':>7}  where (> limit)")
    for hogs in args.hogs:
        r = measure(hogs, args.limit)
        gaps = r["gaps"]
        over = sum(g > args.limit for g in gaps)
        print(f"{hogs:>4}  {r['wall_s']:>7.1f}  {max(gaps):>15.2f}  {sum(g > 0.5 for g in gaps):>7}  {over:>7}  "
              f"{'; '.join(r['where']) or '-'}", flush=True)


if __name__ == "__main__":
    main()
