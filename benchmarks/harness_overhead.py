"""Harness overhead: one sft cell run by a gridlab worker vs a bare script, same everything else.

Both sides train the same model on the same data for the same steps with the same
TrainingArguments (evaluation and checkpoint saves included), each in a fresh process with one
torch thread. The bare side is what a researcher would write: the same set-up steps and a plain
``transformers.Trainer``, no database, no callback, no sealing. The worker side is
``jobs.pool.worker_main`` claiming the cell from a SQLite queue and running the ``sft``
experiment (metrics to the database every step, sealed checkpoints, evaluation probes).
Pairs run interleaved; the figures are medians.

    PYTHONPATH=. python -m benchmarks.harness_overhead [--steps 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"model": "tiny-gpt2", "peft": "full", "strategy": "full", "norm": "layernorm", "batch_size": 8,
        "max_length": 128, "synthetic_records": 2000, "validation_share": 0.02, "lr": 1e-3, "seed": 0,
        # the bare script does no post-training evaluation, so the worker does none either
        "eval_prompts": "", "eval_lm_tasks": "", "eval_references": 0}


def bare(spec: dict, out_dir: str) -> float:
    """The bare script; returns Trainer.train's seconds (its ``train_runtime``)."""
    import transformers

    from harness.experiments import sft
    from harness.params import defaults
    from harness.training import recipe

    class NoJob:  # what set-up reads from a job context
        run_dir = out_dir
        attempt_dir = Path(out_dir)
        attempt = 1
        resume_from = None
        resume_step = None
        world_size = 1
        is_main = True

        @staticmethod
        def log_attention(step, phase, rows):  # the bare script keeps no attention log
            pass

    r = recipe.SFTRecipe({**defaults(sft.PARAMS), **spec}, NoJob())
    r.setup()  # the recipe's own set-up; its TrainingArguments are what the plain Trainer below reuses
    trainer = transformers.Trainer(model=r.model, args=r.trainer.args, train_dataset=r.train_dataset,
                                   eval_dataset=r.eval_dataset, data_collator=r.collator, processing_class=r.tokenizer)
    trainer.remove_callback(transformers.PrinterCallback)
    # Trainer's own train_runtime, the figure the worker side stores as train_runtime_s
    return trainer.train().metrics["train_runtime"]


def _run(code: str, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def bench_env(threads: int = 1) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore", "PYTHONPATH": path}


def run_bare(spec: dict, work: Path, tag: str, env: dict[str, str]) -> dict[str, float]:
    """The bare script in a fresh process: its wall time and Trainer.train's seconds."""
    threads = env.get("OMP_NUM_THREADS", "1")
    result_file = work / f"bare-{tag}.json"
    code = (
        f"import json, torch; torch.set_num_threads({int(threads)})\n"
        "from benchmarks.harness_overhead import bare\n"
        f"t = bare({spec!r}, {str(work / f'bare-{tag}')!r})\n"
        f"open({str(result_file)!r}, 'w').write(json.dumps(t))\n"
    )
    wall = _run(code, env)
    return {"wall": wall, "train": json.loads(result_file.read_text())}


def run_worker(spec: dict, work: Path, tag: str, env: dict[str, str]) -> dict:
    """One cell claimed from a fresh SQLite queue and run by ``jobs.pool.worker_main`` in a
    fresh process: its wall time, the job's summaries and its per-step metrics."""
    from db import engine as db_engine
    from db import schema
    from db.session import scope
    from harness.enqueue import new_jobs
    from harness.grid import parse
    from jobs import operator, queries, reports
    from jobs.queue import Queue

    url = f"sqlite:///{work / f'bench-{tag}.db'}"
    engine = db_engine.create(url)
    schema.upgrade(engine)
    fixed = {k: v for k, v in spec.items() if k != "seed"}
    grid = parse(json.dumps({"name": "overhead", "experiment": "sft", "fixed": fixed, "axes": {"seed": [spec.get("seed", 0)]}}))
    queue = Queue(engine, lease_s=30)
    operator.enqueue(queue.engine, grid.name, new_jobs(grid))
    code = (
        "from jobs.pool import worker_main\nfrom jobs.worker import WorkerOptions\n"
        f"raise SystemExit(worker_main(WorkerOptions(url={url!r}, runs_dir={str(work / f'runs-{tag}')!r},"
        f" threads_per_worker={int(env.get('OMP_NUM_THREADS', '1'))}, max_jobs=1)))\n"
    )
    wall = _run(code, env)
    (job,) = reports.jobs(queue.engine)
    with scope(engine, write=False) as conn:
        summary = queries.job_summaries(conn, job.id)
        metrics: dict[str, list[tuple[int, float]]] = {}
        for name, step, value, _attempt in queries.job_metrics(conn, job.id):
            metrics.setdefault(name, []).append((step, value))
    errors = [a.error for a in reports.attempts(queue.engine, job.id)]
    engine.dispose()
    if job.state != "succeeded":
        raise RuntimeError(f"the benchmark cell ended {job.state}: {errors}")
    return {"wall": wall, "train": summary["train_runtime_s"], "summary": summary, "metrics": metrics}


def one_pair(spec: dict, work: Path, index: int) -> dict[str, float]:
    env = bench_env(threads=1)
    bare_side = run_bare(spec, work, str(index), env)
    worker_side = run_worker(spec, work, str(index), env)
    return {"bare_wall": bare_side["wall"], "bare_train": bare_side["train"],
            "worker_wall": worker_side["wall"], "worker_train": worker_side["train"],
            "points": sum(len(v) for v in worker_side["metrics"].values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    spec = {**SPEC, "steps": args.steps, "eval_every": args.steps // 3, "checkpoint_every": args.steps // 3}
    os.environ.setdefault("GRIDLAB_CACHE", str(Path(tempfile.gettempdir()) / "gridlab-bench-cache"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # Build the tiny model once, outside the timed runs.
        from harness.models import tiny

        tiny.ensure(spec["model"])
        pairs = [one_pair(spec, work, i) for i in range(args.repeats)]
    med = {k: statistics.median(p[k] for p in pairs) for k in pairs[0]}
    print(f"cell: {json.dumps(spec)}")
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {args.repeats} interleaved pairs, medians")
    print(f"{'':14}{'process wall s':>16}{'Trainer.train s':>17}")
    print(f"{'bare script':14}{med['bare_wall']:16.2f}{med['bare_train']:17.2f}")
    print(f"{'gridlab worker':14}{med['worker_wall']:16.2f}{med['worker_train']:17.2f}")
    print(f"worker / bare: process {med['worker_wall'] / med['bare_wall']:.3f}, "
          f"training {med['worker_train'] / med['bare_train']:.3f} ({int(med['points'])} metric points written)")
    for i, p in enumerate(pairs):
        print(f"  pair {i}: bare {p['bare_wall']:.2f}/{p['bare_train']:.2f}  worker {p['worker_wall']:.2f}/{p['worker_train']:.2f}")


if __name__ == "__main__":
    main()
