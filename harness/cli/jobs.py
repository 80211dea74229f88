"""Commands about jobs: one job's story (``show``, ``logs``), one job in the foreground
(``run``), and a selection of jobs back in the queue or out of it (``retry``, ``cancel``).

- ``logs`` prints what an attempt printed (its ``output.log``: stdout, stderr and Python
  logging, :mod:`jobs.runs`) from any machine that sees the runs folder; ``--follow`` keeps
  printing while the attempt runs.
- ``run`` claims one runnable job and runs it in this process, in this terminal (for a
  debugger or a print), with the same lease, heartbeat, fencing and metrics as a worker.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from db import provenance
from db.errors import GridlabError
from db.session import scope
from harness import experiments, inputs, report, terminal
from harness.cli import options
from jobs import operator, reports, runs, states
from jobs.worker import Worker

console = terminal.console
#: A missing database, as the commands that read one grid's runs put it.
GRID_DATABASE = "point --db at the grid's database"


def _job(queue, job_id: int):
    job = reports.job(queue.engine, job_id)
    if job is None:
        raise GridlabError(f"no job with id {job_id}", "see `gridlab status` for what is queued")
    return job


def _actor() -> str:
    return f"cli:{os.getenv('USER', 'user')}"


@click.command()
@click.argument("job_id", type=inputs.JOB_ID)
@click.option("--diff", "what", flag_value="diff", help="Print only the uncommitted changes (git diff) the job ran with.")
@click.option("--freeze", "what", flag_value="freeze", help="Print only the packages installed where it ran (name==version).")
@click.option("--grid-file", "what", flag_value="grid-file", help="Print only the grid file text that created the job.")
@click.option("--attempt", default=None, type=inputs.JOB_ID, help="With --diff or --freeze: that attempt (default: the newest).")
@options.db_option
def show(job_id: int, what: str | None, attempt: int | None, db_url: str | None) -> None:
    """One job: its resolved spec, provenance (grid file version; per attempt the code,
    environment and machine), attempts and event log."""
    queue = options.open_queue(db_url)
    job = _job(queue, job_id)
    if what is not None:
        with scope(queue.engine, write=False) as conn:
            text = {"diff": provenance.code_diff, "freeze": provenance.freeze,
                    "grid-file": lambda c, j, _a: provenance.grid_text(c, j)}[what](conn, job_id, attempt)
        if text is None:
            raise GridlabError(f"job {job_id} has no recorded {what.replace('-', ' ')}"
                               + (" (its code had no git)" if what == "diff" else ""),
                               "it ran (or was enqueued) before gridlab recorded provenance, or has not run yet")
        click.echo(text, nl=not text.endswith("\n") and bool(text))
        return
    console.print(f"[bold]job {job_id}[/] state={job.state} attempts={job.attempts}/{job.max_attempts} "
                  f"factors={escape(json.dumps(job.factors))}")
    console.print(f"spec: {json.dumps(job.spec, sort_keys=True)}", markup=False, highlight=False)
    if job.checkpoint_path:
        console.print(f"checkpoint: step {job.checkpoint_step}, {job.checkpoint_path}", markup=False, highlight=False)
    with scope(queue.engine, write=False) as conn:
        for line in report.provenance_lines(provenance.job_provenance(conn, job_id)):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    events = reports.events(queue.engine, job_id)
    attempts = Table(title="Attempts (curve: continued from the step shown, or fresh)", title_justify="left")
    for col in ("#", "worker", "slurm job", "curve", "outcome", "error"):
        attempts.add_column(col)
    for a in reports.attempts(queue.engine, job_id):
        curve = "fresh" if a.resumed_from_step is None else f"from {a.resumed_from_step}"
        error = (a.error or "").strip().splitlines()[-1][:70] if a.error else ""
        if a.error_type:
            kind = a.error_type.rsplit(".", 1)[-1]
            error = error if error.startswith(kind) else f"{kind}: {error}"
        attempts.add_row(str(a.number), escape(a.worker), escape(a.slurm_job_id or ""), curve, a.outcome or states.RUNNING,
                         escape(error))
    console.print(attempts)
    log = Table(title="Events", title_justify="left")
    for col in ("at", "from", "to", "attempt", "actor", "reason"):
        log.add_column(col)
    for e in events:
        log.add_row(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.at)), e.from_state or "", e.to_state,
                    str(e.attempt or ""), escape(e.actor), escape((e.reason or "")[:80]))
    console.print(log)


@click.command()
@click.argument("job_id", type=inputs.JOB_ID)
@click.option("--attempt", "-a", "number", default=None, type=click.IntRange(1), help="Which attempt (default: the newest).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing while the attempt runs.")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False), help="The runs folder the workers used.")
@options.db_option
def logs(job_id: int, number: int | None, follow: bool, runs_dir: str, db_url: str | None) -> None:
    """Print what one attempt of a job printed: stdout, stderr and its log."""
    queue = options.open_queue(db_url, missing_fix=GRID_DATABASE)
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
        now = reports.job(queue.engine, job_id)
        return now.state == states.RUNNING and now.attempts == number

    for chunk in runs.follow(path, running if follow else None):
        sys.stdout.write(chunk)
        sys.stdout.flush()


@click.command("run")
@click.argument("job_id", type=inputs.JOB_ID)
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False), help="Where jobs keep checkpoints.")
@click.option("--heartbeat", default=10.0, show_default=True, type=click.FloatRange(0.1, 3600), help="Seconds between lease heartbeats (a lease lasts 3 of them).")
@options.db_option
def run(job_id: int, runs_dir: str, heartbeat: float, db_url: str | None) -> None:
    """Run one pending job here, in the foreground (for a debugger): same lease, fencing and metrics as a worker."""
    queue = options.open_queue(db_url, lease_s=heartbeat * 3, missing_fix=GRID_DATABASE)
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
    after = reports.job(queue.engine, job_id)
    console.print(f"job {job_id}: {after.state} (attempt {after.attempts})", markup=False, highlight=False)


@click.command()
@options.selection_options
@click.option("--state", "in_states", multiple=True, type=click.Choice(states.RETRYABLE), help="Only jobs in this state (default: all of failed, diverged, cancelled).")
@click.option("--attempts", default=1, show_default=True, type=click.IntRange(1, 1_000_000), help="Extra attempts to grant.")
@click.option("--fresh", is_flag=True, help="Forget the jobs' checkpoints: start over, the new run's points replacing the old curve "
              "(default: resume from the recorded checkpoint, the curve cut back to its step).")
@options.db_option
def retry(job_ids, grid, where, in_states, attempts, fresh, db_url) -> None:
    """Put failed, diverged or cancelled jobs back in the queue.

    A retried job resumes from the checkpoint the database recorded for it, and its curve is
    cut back to that checkpoint's step, so the curve never mixes two runs; with --fresh (after
    fixing a bug, say) it starts over and its old points are replaced."""
    selected = options.selection(job_ids, grid, where)
    queue = options.open_queue(db_url)
    done = operator.retry(queue.engine, **selected, in_states=in_states or states.RETRYABLE, extra_attempts=attempts,
                          fresh=fresh, actor=_actor())
    console.print(f"Requeued {len(done)} job(s)" + (", to start fresh." if fresh and done else ".")
                  + ("" if done else " (none matched in a retryable state, or their upstream jobs cannot succeed)"))


@click.command()
@options.selection_options
@options.db_option
def cancel(job_ids, grid, where, db_url) -> None:
    """Cancel pending and running jobs (running ones stop at their next heartbeat)."""
    selected = options.selection(job_ids, grid, where)
    queue = options.open_queue(db_url)
    done = operator.cancel(queue.engine, **selected, actor=_actor())
    console.print(f"Cancelled {len(done)} job(s)." + ("" if done else " (none matched in a pending or running state)"))
