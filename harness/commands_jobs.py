"""``gridlab logs JOB`` and ``gridlab run JOB``: one cell's story, and one cell in the foreground.

- ``logs`` prints what an attempt printed (its ``output.log``: stdout, stderr and Python
  logging, :mod:`jobs.runs`) from any machine that sees the runs folder; ``--follow`` keeps
  printing while the attempt runs.
- ``run`` claims one runnable job and runs it in this process, in this terminal (for a
  debugger or a print), with the same lease, heartbeat, fencing and metrics as a worker.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from db import engine as db_engine
from db import schema
from db.errors import GridlabError
from harness import terminal
from jobs import runs, states

console = terminal.console
DB_HELP = "Database URL: sqlite:///PATH or postgresql://USER@HOST/DB (default: $GRIDLAB_DB, else sqlite:///gridlab.db)."
RUNS_HELP = "The runs folder the workers used."


def _queue(db_url: str | None, *, lease_s: float = 30.0):
    from jobs.queue import Queue

    url = db_engine.resolve_url(db_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database).exists():
        raise GridlabError(f"no database at {url.database}", "point --db at the grid's database")
    engine = db_engine.create(url)
    schema.ensure(engine, migrate_empty=False)
    return Queue(engine, lease_s=lease_s)


def _job(queue, job_id: int):
    job = queue.job(job_id)
    if job is None:
        raise GridlabError(f"no job with id {job_id}", "see `gridlab status` for what is queued")
    return job


@click.command()
@click.argument("job_id", type=click.IntRange(1, 2**63 - 1))
@click.option("--attempt", "-a", "number", default=None, type=click.IntRange(1), help="Which attempt (default: the newest).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing while the attempt runs.")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False), help=RUNS_HELP)
@click.option("--db", "db_url", envvar="GRIDLAB_DB", default=None, metavar="URL", help=DB_HELP)
def logs(job_id: int, number: int | None, follow: bool, runs_dir: str, db_url: str | None) -> None:
    """Print what one attempt of a job printed: stdout, stderr and its log."""
    queue = _queue(db_url)
    job = _job(queue, job_id)
    if job.attempts == 0:
        raise GridlabError(f"job {job_id} has not started yet (state {job.state})", "run `gridlab work` first")
    number = number or job.attempts
    if number > job.attempts:
        raise GridlabError(f"job {job_id} has {job.attempts} attempt(s), not {number}", f"pass --attempt 1..{job.attempts}")
    run = runs.path_for(Path(runs_dir), database_id=queue.database_id(), grid=queue.grid_name(job.grid_id),
                        job_id=job_id, spec_hash=job.spec_hash)
    path = run / "attempts" / f"a{number}" / runs.OUTPUT
    if not path.is_file():
        raise GridlabError(f"no output of job {job_id} attempt {number} at {path}",
                           "pass the --runs-dir its workers used (gridlab work/launch --runs-dir)")

    def running() -> bool:
        now = queue.job(job_id)
        return now.state == states.RUNNING and now.attempts == number

    for chunk in runs.follow(path, running if follow else None):
        sys.stdout.write(chunk)
        sys.stdout.flush()


@click.command("run")
@click.argument("job_id", type=click.IntRange(1, 2**63 - 1))
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False), help="Where jobs keep checkpoints.")
@click.option("--heartbeat", default=10.0, show_default=True, type=click.FloatRange(0.1, 3600), help="Seconds between lease heartbeats (a lease lasts 3 of them).")
@click.option("--db", "db_url", envvar="GRIDLAB_DB", default=None, metavar="URL", help=DB_HELP)
def run(job_id: int, runs_dir: str, heartbeat: float, db_url: str | None) -> None:
    """Run one pending job here, in the foreground (for a debugger): same lease, fencing and metrics as a worker."""
    from harness import experiments
    from jobs.worker import Worker

    queue = _queue(db_url, lease_s=heartbeat * 3)
    job = _job(queue, job_id)
    if job.state != states.PENDING:
        fix = (f"`gridlab retry {job_id}` puts it back in the queue" if job.state in states.RETRYABLE
               else "wait for it, or cancel it first" if job.state == states.RUNNING else "nothing to run")
        raise GridlabError(f"job {job_id} is {job.state}, not pending", fix)
    worker = Worker(queue, experiments.run, runs_dir=Path(runs_dir).resolve(), heartbeat_s=heartbeat, capture_output=False)
    worker.install_signal_handlers()  # Ctrl-C: checkpoint and hand the job back
    if worker.run_job(job_id) is None:
        raise GridlabError(f"job {job_id} is pending but not runnable now (its dependencies or its retry backoff)",
                           "see `gridlab show JOB`")
    after = queue.job(job_id)
    console.print(f"job {job_id}: {after.state} (attempt {after.attempts})", markup=False, highlight=False)
