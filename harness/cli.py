"""The ``gridlab`` command line.

Every command takes ``--db URL`` (or ``GRIDLAB_DB``; default ``sqlite:///gridlab.db``).
A mistake of the user's (a bad grid file, an unreachable database, ...) prints one
line, ``gridlab: error: <what>; <how to fix>``, and exits with code 2.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from db import engine as db_engine
from db import schema
from db.errors import GridlabError
from harness import commands_dashboard, commands_eval, commands_jobs, commands_slurm, inputs, report, terminal
from jobs import states

console, err_console = terminal.console, terminal.err_console

DB_HELP = "Database URL: sqlite:///PATH or postgresql://USER@HOST/DB (default: $GRIDLAB_DB, else sqlite:///gridlab.db)."


def db_option(f):
    return click.option("--db", "db_url", envvar="GRIDLAB_DB", default=None, metavar="URL", type=inputs.TEXT, help=DB_HELP)(f)


def _open_queue(db_url: str | None, *, create: bool, lease_s: float = 30.0):
    from jobs.queue import Queue

    url = db_engine.resolve_url(db_url)
    if not create and url.get_backend_name() == "sqlite" and not Path(url.database).exists():
        raise GridlabError(
            f"no database at {url.database}",
            "run `gridlab enqueue GRID.yaml` first, or point --db at an existing database",
        )
    engine = db_engine.create(url)
    schema.ensure(engine, migrate_empty=create)
    return Queue(engine, lease_s=lease_s)


def _parse_where(pairs: tuple[str, ...]) -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for pair in pairs:
        inputs.check_text(pair, "--where")
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise GridlabError(f"--where {pair!r} is not KEY=VALUE", "write it like --where norm=dyt")
        inputs.check_number(value, f"--where {key}")
        where.setdefault(key, []).append(value)
    return where


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gridlab")
def cli() -> None:
    """gridlab: run ablation grids of LM post-training experiments, locally or on Slurm.

    \b
    Typical session:
      gridlab enqueue grids/demo.yaml     # grid file -> job records
      gridlab work --workers 2            # local workers drain the queue
      gridlab status                      # where the grid stands
      gridlab results                     # final figures per cell
      gridlab params sft                  # what a grid file may set for an experiment
    """


@cli.command()
@click.argument("grid_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate and count new and existing cells; write nothing.")
@click.option("--yes", is_flag=True, help=f"Allow grids of more than {1_000_000:,} cells.")
@db_option
def enqueue(grid_file: Path, dry_run: bool, yes: bool, db_url: str | None) -> None:
    """Expand GRID_FILE into jobs and add the new ones to the queue (idempotent)."""
    from harness import enqueue as enqueue_mod
    from harness import grid as grid_mod

    grid = grid_mod.load(grid_file, allow_large=yes)
    jobs = enqueue_mod.new_jobs(grid)  # every problem surfaces before the database is touched
    if dry_run:
        queue = _open_queue_for_dry_run(db_url)
        result = enqueue_mod.enqueue(queue, grid, dry_run=True) if queue else _count_only(jobs, grid)
        console.print(f"[bold]{escape(grid.name)}[/]: {result.total} cells, {result.new} new, {result.existing} already queued (dry run: nothing written)")
        return
    queue = _open_queue(db_url, create=True)
    with _progress(transient=True) as progress:
        task = progress.add_task("enqueueing", total=len(jobs))
        result = queue.enqueue(grid.name, jobs, source_path=str(grid_file), source_text=grid.source,
                               progress=lambda n: progress.advance(task, n))
    console.print(f"[bold]{escape(grid.name)}[/]: {result.total} cells, [green]{result.new} new[/], {result.existing} already queued")


def _open_queue_for_dry_run(db_url: str | None):
    url = db_engine.resolve_url(db_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database).exists():
        return None  # nothing queued yet, and a dry run creates nothing
    return _open_queue(db_url, create=False)


def _count_only(jobs, grid):
    from jobs.records import EnqueueResult

    return EnqueueResult(grid=grid.name, total=len(jobs), new=len(jobs), existing=0)


@cli.command()
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
@db_option
def work(workers: int, runs_dir: str, heartbeat: float, max_jobs: int | None, verbose: bool, cells_per_device: int,
         cell_mem: float | None, db_url: str | None) -> None:
    """Run local worker processes that claim and run jobs until the queue is empty."""
    from jobs import pool
    from jobs.worker import WorkerOptions

    queue = _open_queue(db_url, create=True)
    url = queue.engine.url.render_as_string(hide_password=False)
    options = WorkerOptions(
        url=url,
        runs_dir=str(Path(runs_dir).resolve()),
        heartbeat_s=heartbeat,
        threads_per_worker=max(1, (os.cpu_count() or 1) // workers),
        log_level=logging.INFO if verbose else logging.WARNING,
        max_jobs=max_jobs,
    )
    start_counts = queue.counts()
    todo = start_counts[states.PENDING] + start_counts[states.RUNNING]
    if todo == 0:
        console.print("Nothing to run: no pending jobs. Enqueue a grid first (`gridlab enqueue GRID.yaml`).")
        return
    done_before = sum(start_counts[s] for s in states.FINAL)
    if cells_per_device > 1:
        procs = [_SharedDevice(queue, options, cells_per_device, cell_mem)]
        console.print(f"Sharing the device between up to {cells_per_device} cells for {todo} job(s).")
    else:
        procs = pool.start(options, workers)
        console.print(f"Started {workers} worker(s) for {todo} job(s).")
    try:
        with _progress() as progress:
            task = progress.add_task("running", total=todo)
            job_bars: dict[int, int] = {}  # one bar per running job: its training steps
            while any(p.is_alive() for p in procs):
                counts = queue.counts()
                done = sum(counts[s] for s in states.FINAL) - done_before
                progress.update(task, completed=min(done, todo), description=_counts_line(counts))
                _update_job_bars(progress, job_bars, queue.running())
                time.sleep(0.5)
            _update_job_bars(progress, job_bars, [])
            counts = queue.counts()
            progress.update(task, completed=min(sum(counts[s] for s in states.FINAL) - done_before, todo),
                            description=_counts_line(counts))
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()  # SIGTERM: workers checkpoint and hand their jobs back
        for p in procs:
            p.join(timeout=60)
        raise GridlabError("interrupted: workers handed their jobs back to the queue", "run `gridlab work` again to continue")
    failed_workers = [p for p in procs if p.exitcode not in (0, None)]
    counts = queue.counts()
    console.print(f"Workers finished: {_counts_line(counts)}")
    if failed_workers:
        raise GridlabError(f"{len(failed_workers)} worker process(es) exited with an error", "run with -v to see why")


class _SharedDevice(threading.Thread):
    """``pool.share_device`` in a thread, shaped like the worker processes ``work`` watches."""

    def __init__(self, queue, options, cells: int, cell_mib: float | None) -> None:
        from jobs import pool

        super().__init__(daemon=True)
        self.exitcode: int | None = None
        self._stop_sharing = threading.Event()
        self._run = lambda: pool.share_device(queue, options, cells, cell_mib=cell_mib, stop=self._stop_sharing.is_set)
        self.start()

    def run(self) -> None:
        try:
            self._run()
            self.exitcode = 0
        except Exception:  # noqa: BLE001 - reported as a failed worker, like a process's exit code
            self.exitcode = 1

    def terminate(self) -> None:
        self._stop_sharing.set()


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
    return "  ".join(f"[{report.STATE_STYLE[s]}]{s} {counts[s]}[/]" for s in states.ALL if counts.get(s))


@cli.command()
@click.option("--grid", default=None, type=inputs.TEXT, help="Only this grid.")
@click.option("--by", multiple=True, metavar="FACTOR", type=inputs.TEXT, help="Only these factors in the per-factor tables (repeatable).")
@db_option
def status(grid: str | None, by: tuple[str, ...], db_url: str | None) -> None:
    """Counts of jobs by state, per grid and per grid factor."""
    queue = _open_queue(db_url, create=False)
    grids = [grid] if grid else queue.grids()
    if not grids:
        console.print("No grids yet. Run `gridlab enqueue GRID.yaml`.")
        return
    console.print(report.counts_table({g: queue.counts(g) for g in grids}))
    for table in report.factor_tables(queue.factor_states(grid), only=list(by) or None):
        console.print(table)
    hours = report.gpu_hours(queue.device_seconds(grid))
    if any(hours["spent"].values()):  # machines with GPUs (or cells that asked for them) only
        console.print(report.gpu_hours_table(hours))
        for table in report.gpu_hours_by_factor(hours, only=list(by) or None):
            console.print(table)
    running = queue.running(grid)
    if running:
        console.print(report.running_table(running))
    workers = commands_slurm.workers_table(queue)
    if workers is not None:
        console.print(workers)
    stale = queue.stale()
    if stale:
        console.print(f"[red]{stale} running job(s) have expired leases[/] (their workers died or hung); any worker will reclaim them.")


@cli.command()
@click.option("--grid", default=None, type=inputs.TEXT, help="Only this grid.")
@click.option("--metric", "metrics", multiple=True, type=inputs.TEXT, help="Only these summary figures (repeatable).")
@click.option("--effects", is_flag=True, help="Then each factor's effect on each figure shown (mean and 95% interval "
              "per level over the rest of the grid, as the dashboard's Factor effects page shows it).")
@db_option
def results(grid: str | None, metrics: tuple[str, ...], effects: bool, db_url: str | None) -> None:
    """Final figures (summaries) of finished jobs, one row per grid cell.

    Where the jobs ran under different code or environments, a warning says which, and
    a column gives each job's."""
    queue = _open_queue(db_url, create=False)
    rows = queue.summaries(grid)
    if not rows:
        console.print("No results yet: no job has finished.")
        return
    drift = pooled_drift(queue, {r.id for r in rows})
    console.print(report.results_table(rows, list(metrics) or None, provenance=drift.columns()))
    warn_drift(drift)
    if effects:
        for name in report.shown_metrics(rows, list(metrics) or None)[0]:
            console.print(report.effects_table(rows, name))


def pooled_drift(queue, job_ids):
    """What the jobs' attempts ran under (db.provenance.Drift)."""
    from db import provenance
    from db.session import scope

    with scope(queue.engine, write=False) as conn:
        return provenance.drift(conn, job_ids)


def warn_drift(drift) -> None:
    line = drift.warning()
    if line:
        console.print(f"warning: {line}", style="yellow", markup=False, highlight=False, soft_wrap=True)


def _selection_options(f):
    f = click.option("--where", multiple=True, metavar="FACTOR=VALUE", help="Only jobs whose factor has this value (repeatable).")(f)
    f = click.option("--grid", default=None, type=inputs.TEXT, help="Only jobs of this grid.")(f)
    return click.argument("job_ids", nargs=-1, type=inputs.JOB_ID)(f)


def _require_selection(job_ids, grid, where) -> None:
    if not job_ids and not grid and not where:
        raise GridlabError("no jobs selected", "give job ids, --grid NAME and/or --where FACTOR=VALUE")


@cli.command()
@_selection_options
@click.option("--state", "in_states", multiple=True, type=click.Choice(states.RETRYABLE), help="Only jobs in this state (default: all of failed, diverged, cancelled).")
@click.option("--attempts", default=1, show_default=True, type=click.IntRange(1, 1_000_000), help="Extra attempts to grant.")
@click.option("--fresh", is_flag=True, help="Forget the jobs' checkpoints: start over, the new run's points replacing the old curve "
              "(default: resume from the recorded checkpoint, the curve cut back to its step).")
@db_option
def retry(job_ids, grid, where, in_states, attempts, fresh, db_url) -> None:
    """Put failed, diverged or cancelled jobs back in the queue.

    A retried job resumes from the checkpoint the database recorded for it, and its curve is
    cut back to that checkpoint's step, so the curve never mixes two runs; with --fresh (after
    fixing a bug, say) it starts over and its old points are replaced."""
    _require_selection(job_ids, grid, where)
    where = _parse_where(where)
    queue = _open_queue(db_url, create=False)
    done = queue.retry(ids=job_ids or None, grid=grid, where=where, in_states=in_states or states.RETRYABLE,
                       extra_attempts=attempts, fresh=fresh, actor=f"cli:{os.getenv('USER', 'user')}")
    console.print(f"Requeued {len(done)} job(s)" + (", to start fresh." if fresh and done else ".")
                  + ("" if done else " (none matched in a retryable state, or their upstream jobs cannot succeed)"))


@cli.command()
@_selection_options
@db_option
def cancel(job_ids, grid, where, db_url) -> None:
    """Cancel pending and running jobs (running ones stop at their next heartbeat)."""
    _require_selection(job_ids, grid, where)
    where = _parse_where(where)
    queue = _open_queue(db_url, create=False)
    done = queue.cancel(ids=job_ids or None, grid=grid, where=where, actor=f"cli:{os.getenv('USER', 'user')}")
    console.print(f"Cancelled {len(done)} job(s)." + ("" if done else " (none matched in a pending or running state)"))


@cli.command()
@click.argument("job_id", type=inputs.JOB_ID)
@click.option("--diff", "what", flag_value="diff", help="Print only the uncommitted changes (git diff) the job ran with.")
@click.option("--freeze", "what", flag_value="freeze", help="Print only the packages installed where it ran (name==version).")
@click.option("--grid-file", "what", flag_value="grid-file", help="Print only the grid file text that created the job.")
@click.option("--attempt", default=None, type=inputs.JOB_ID, help="With --diff or --freeze: that attempt (default: the newest).")
@db_option
def show(job_id: int, what: str | None, attempt: int | None, db_url: str | None) -> None:
    """One job: its resolved spec, provenance (grid file version; per attempt the code,
    environment and machine), attempts and event log."""
    import json

    from rich.table import Table

    from db import provenance
    from db.session import scope

    queue = _open_queue(db_url, create=False)
    job = queue.job(job_id)
    if job is None:
        raise GridlabError(f"no job with id {job_id}", "see `gridlab status` for what is queued")
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
    events = queue.events(job_id)
    attempts = Table(title="Attempts (curve: continued from the step shown, or fresh)", title_justify="left")
    for col in ("#", "worker", "slurm job", "curve", "outcome", "error"):
        attempts.add_column(col)
    for a in queue.attempts(job_id):
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


@cli.command()
@click.argument("experiment", required=False)
def params(experiment: str | None) -> None:
    """What a grid file may set: the experiments, or one experiment's parameters."""
    from harness import experiments

    if experiment is None:
        for name in sorted(experiments.REGISTRY):
            doc = (experiments.load(name).__doc__ or "").strip().splitlines()
            console.print(f"[bold]{name}[/]  {doc[0] if doc else ''}", highlight=False)
        console.print("See one experiment's parameters with `gridlab params NAME`.")
        return
    console.print(report.params_table(experiment, experiments.load(experiment).PARAMS))


@cli.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@db_option
def db_upgrade(db_url: str | None) -> None:
    """Create the schema, or migrate it to this gridlab's version."""
    engine = db_engine.create(db_url)
    before, after = schema.upgrade(engine)
    if before == after:
        console.print(f"Database {db_engine.redact(engine.url)} is already at schema {after}.")
    else:
        console.print(f"Database {db_engine.redact(engine.url)} upgraded from {before or 'empty'} to {after}.")


@db.command("current")
@db_option
def db_current(db_url: str | None) -> None:
    """Print the database's schema revision and this gridlab's."""
    engine = db_engine.create(db_url)
    console.print(f"database: {schema.current_revision(engine) or 'empty'}; gridlab: {schema.HEAD}")


# --- commands of other areas, each in its own module -------------------------------
# (one line per module: cli.add_command(module.command))
cli.add_command(commands_slurm.launch)
cli.add_command(commands_slurm.supervise)
cli.add_command(commands_dashboard.command)
cli.add_command(commands_eval.compare)
cli.add_command(commands_jobs.logs)
cli.add_command(commands_jobs.run)


def _progress(transient: bool = False) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes become one line on stderr and exit code 2."""
    try:
        cli.main(args=argv, prog_name="gridlab", standalone_mode=False)
    except GridlabError as exc:
        err_console.print(f"gridlab: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except click.exceptions.Abort:
        err_console.print("gridlab: aborted", highlight=False)
        sys.exit(130)
    except click.UsageError as exc:
        # One line, like every other mistake: what, and where to read how.
        where = exc.ctx.command_path if exc.ctx else "gridlab"
        err_console.print(f"gridlab: error: {exc.format_message()}; see `{where} --help`",
                          markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
