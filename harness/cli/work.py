"""``gridlab work``: local worker processes (:mod:`jobs.pool`) drain the queue while a bar
per running job shows its training steps."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import Progress

from db.errors import GridlabError
from db.states import TERMINAL_STYLE
from harness import inputs, report, terminal
from harness.cli import options
from jobs import pool, reports, states
from jobs.worker import WorkerOptions

console = terminal.console


@click.command()
@click.option("--workers", "-w", default=1, show_default=True, type=click.IntRange(1, 256), help="Worker processes.")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False), help="Where jobs keep checkpoints.")
@click.option("--heartbeat", default=10.0, show_default=True, type=inputs.Seconds(0.1), help="Seconds between lease heartbeats (a lease lasts 3 of them).")
@click.option("--max-jobs", default=None, type=click.IntRange(1, inputs.INT64_MAX), help="Each worker stops after this many jobs.")
@click.option("-v", "--verbose", is_flag=True, help="Log every claim and outcome.")
@click.option("--cells-per-device", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Run up to this many cells at once on this machine's one device, each in a process of its own, "
                   "while its free memory fits another (instead of --workers).")
@click.option("--cell-mem", default=None, type=click.FloatRange(1, 10**7), metavar="MIB",
              help="With --cells-per-device: the memory one cell needs (default: the largest peak of finished cells).")
@options.db_option
def work(workers: int, runs_dir: str, heartbeat: float, max_jobs: int | None, verbose: bool, cells_per_device: int,
         cell_mem: float | None, db_url: str | None) -> None:
    """Run local worker processes that claim and run jobs until the queue is empty."""
    queue = options.open_queue(db_url, create=True)
    pool_options = WorkerOptions(
        url=queue.engine.url.render_as_string(hide_password=False),
        runs_dir=str(Path(runs_dir).resolve()),
        heartbeat_s=heartbeat,
        threads_per_worker=max(1, (os.cpu_count() or 1) // workers),
        log_level=logging.INFO if verbose else logging.WARNING,
        max_jobs=max_jobs,
    )
    start_counts = reports.counts(queue.engine)
    todo = start_counts[states.PENDING] + start_counts[states.RUNNING]
    if todo == 0:
        console.print("Nothing to run: no pending jobs. Enqueue a grid first (`gridlab enqueue GRID.yaml`).")
        return
    done_before = sum(start_counts[s] for s in states.FINAL)
    if cells_per_device > 1:
        procs = [pool.SharedDevice(queue, pool_options, cells_per_device, cell_mem)]
        console.print(f"Sharing the device between up to {cells_per_device} cells for {todo} job(s).")
    else:
        procs = pool.start(pool_options, workers)
        console.print(f"Started {workers} worker(s) for {todo} job(s).")
    try:
        _watch(queue, procs, todo, done_before)
    except KeyboardInterrupt:
        pool.stop(procs)
        raise GridlabError("interrupted: workers handed their jobs back to the queue", "run `gridlab work` again to continue")
    failed_workers = [p for p in procs if p.exitcode not in (0, None)]
    console.print(f"Workers finished: {_counts_line(reports.counts(queue.engine))}")
    if failed_workers:
        raise GridlabError(f"{len(failed_workers)} worker process(es) exited with an error", "run with -v to see why")


def _watch(queue, procs: list, todo: int, done_before: int) -> None:
    """The queue's bar and one bar per running job, redrawn every half second while any worker lives."""
    with terminal.progress() as progress:
        task = progress.add_task("running", total=todo)
        job_bars: dict[int, int] = {}  # one bar per running job: its training steps
        while any(p.is_alive() for p in procs):
            counts = reports.counts(queue.engine)
            done = sum(counts[s] for s in states.FINAL) - done_before
            progress.update(task, completed=min(done, todo), description=_counts_line(counts))
            _update_job_bars(progress, job_bars, reports.running(queue.engine))
            time.sleep(0.5)
        _update_job_bars(progress, job_bars, [])
        counts = reports.counts(queue.engine)
        progress.update(task, completed=min(sum(counts[s] for s in states.FINAL) - done_before, todo),
                        description=_counts_line(counts))


def _update_job_bars(progress: Progress, bars: dict[int, int], running: list) -> None:
    """Show each running job's training progress under the queue's bar; drop finished ones."""
    now = {j.id: j for j in running}
    for job_id in [i for i in bars if i not in now]:
        progress.remove_task(bars.pop(job_id))
    for job_id, job in now.items():
        text = f"  job {job_id} {escape(report.cell_label(job.factors, 40))}: {report.progress_text(job)}"
        if job.value is not None:
            text += f" loss {job.value:.4g}"
        if job_id not in bars:
            bars[job_id] = progress.add_task(text, total=job.total_steps)
        progress.update(bars[job_id], description=text, completed=job.step or 0, total=job.total_steps)


def _counts_line(counts: dict[str, int]) -> str:
    return "  ".join(f"[{TERMINAL_STYLE[s]}]{s} {counts[s]}[/]" for s in states.ALL if counts.get(s))
