"""``gridlab launch`` and ``gridlab supervise``: workers on Slurm (or local processes).

Submitting and recording workers is :class:`slurm.launch.Dispatcher`'s, the supervision
loop :func:`slurm.supervise.supervise`'s, the wait for local workers
:func:`jobs.pool.wait_launched`'s; these commands read the flags and print.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path

import click
from rich.markup import escape

from db.errors import GridlabError
from harness import grid as grid_mod
from harness import inputs, terminal
from harness.cli import options
from harness.cli import readiness as readiness_cli
from harness.readiness import check as readiness_check
from harness.readiness import needs as readiness_needs
from jobs import pool, reports, states
from slurm import launch as launch_mod
from slurm import secrets, settings, snapshot, sqlite_safety
from slurm import supervise as supervise_mod

console = terminal.console

EXECUTOR_HELP = "slurm: a Slurm job array via submitit; local: processes on this machine (same worker code)."
SKIP_CHECK_HELP = ("Submit without first checking, offline, that the models, datasets and ranker the pending jobs "
                   "need are in the caches (for clusters whose nodes reach the Hugging Face hub).")
PIN_HELP = ("Workers import a snapshot of the source tree made now (under RUNS_DIR/code), so later edits to the "
            "checkout do not reach cells already launched (default). --no-pin: they import the live tree.")


def slurm_options(f):
    """The Slurm flags, handed to the command as one ``slurm_flags`` dict (read by :func:`_settings`)."""
    names = ("partition", "gres", "time_", "mem", "cpus", "account", "qos", "constraint", "array_parallelism",
             "signal_delay", "sbatch_flags", "setup_lines")

    @functools.wraps(f)
    def command(*args, **kwargs):
        return f(*args, slurm_flags={n: kwargs.pop(n) for n in names}, **kwargs)

    opts = [
        click.option("--partition", default=None, help="Slurm partition."),
        click.option("--gres", default=None, help="Generic resources per worker, e.g. gpu:a100:1."),
        click.option("--time", "time_", default=None, metavar="TIME", help="Time limit per worker start: minutes or [D-]HH:MM:SS."),
        click.option("--mem", default=None, help="Memory per worker, e.g. 16G."),
        click.option("--cpus", default=None, type=int, help="CPUs per worker."),
        click.option("--account", default=None),
        click.option("--qos", default=None),
        click.option("--constraint", default=None),
        click.option("--array-parallelism", default=None, type=int, help="At most this many workers run at once."),
        click.option("--signal-delay", default=None, type=int, help="Seconds before the time limit when workers checkpoint (USR2)."),
        click.option("--sbatch", "sbatch_flags", multiple=True, metavar="FLAG=VALUE", help="Any other sbatch flag (repeatable)."),
        click.option("--setup", "setup_lines", multiple=True, metavar="LINE", help="Shell line run before the worker, e.g. 'module load cuda' (repeatable)."),
    ]
    for opt in reversed(opts):
        command = opt(command)
    return command


@click.command()
@click.argument("grid_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--executor", type=click.Choice(list(launch_mod.EXECUTORS)), default="slurm", show_default=True, help=EXECUTOR_HELP)
@click.option("--workers", "-w", default=1, show_default=True, type=click.IntRange(1, 10_000), help="Workers to start per resource class with pending work (jobs.resources).")
@slurm_options
@click.option("--env", "env_pairs", multiple=True, metavar="KEY[=VALUE]", help="Extra environment variable for the workers (repeatable); KEY alone passes this environment's value (use it for tokens: it keeps them out of `ps`).")
@click.option("--runner", default="harness.experiments:run", show_default=True, help="What a worker runs per job (module:function).")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False), help="Checkpoints and logs; must be on a filesystem the nodes share.")
@click.option("--heartbeat", default=10.0, show_default=True, type=inputs.Seconds(0.1), help="Seconds between lease heartbeats.")
@click.option("--pin/--no-pin", default=True, show_default=True, help=PIN_HELP)
@click.option("--dry-run", is_flag=True, help="Print the sbatch script; submit nothing.")
@click.option("--keep-alive", is_flag=True, help="Stay and supervise: resubmit workers while jobs remain, reconcile with Slurm.")
@click.option("--interval", default=10.0, show_default=True, type=inputs.Seconds(1.0), help="Seconds between supervision passes.")
@click.option("--skip-check", is_flag=True, help=SKIP_CHECK_HELP)
@click.option("-v", "--verbose", is_flag=True)
@options.db_option
def launch(grid_file, executor, workers, slurm_flags, env_pairs, runner, runs_dir, heartbeat, pin, dry_run, keep_alive,
           interval, skip_check, verbose, db_url) -> None:
    """Start pull-workers that run queued jobs until the queue is empty.

    Slurm settings come from GRID_FILE's slurm: block (if given) and the flags (which win).
    Workers import a pinned snapshot of the source tree unless --no-pin is given. First, as
    `gridlab check` does, it proves offline that every model, dataset and ranker the pending
    jobs load is on this machine, and refuses to submit anything if not (--skip-check: don't).
    """
    _setup_logging(verbose)
    slurm_settings = _settings(grid_file, slurm_flags)
    env = _env(env_pairs)
    worker_options = launch_mod.worker_options(options.url_as_given(db_url), runner=runner, runs_dir=runs_dir,
                                               heartbeat_s=heartbeat)
    if dry_run:
        if executor != "slurm":
            raise GridlabError("--dry-run shows the sbatch script of --executor slurm", "drop --executor local")
        click.echo(launch_mod.sbatch_script(worker_options, slurm_settings, workers=workers,
                                            folder=launch_mod.new_folder(runs_dir), extra_env=env,
                                            snapshot=snapshot.planned(runs_dir) if pin else None), nl=False)
        return
    queue = options.open_queue(db_url)
    pending = reports.pending_by_class(queue.engine)
    if not pending:
        console.print("Nothing to run: no pending jobs. Enqueue a grid first (`gridlab enqueue GRID.yaml`).")
        return
    launch_mod.check_classes(slurm_settings, pending)  # before the code is pinned
    if not skip_check:
        _require_ready(queue, grid_file)
    if executor == "slurm":
        launch_mod.require_slurm()
        sqlite_safety.check(worker_options.url, slurm_settings, workers=workers)

    def submitted(launched, cls: str) -> None:
        what = "" if cls == "default" else f" for {cls}"
        console.print(f"Submitted {len(launched.job_ids)} {launched.executor} worker(s){what}: {_ids(launched.job_ids)} "
                      f"(logs in {launched.folder})", markup=False, highlight=False)

    dispatcher = launch_mod.Dispatcher(queue, worker_options, slurm_settings, executor=executor, runs_dir=runs_dir,
                                       extra_env=env, snapshot=_pin(runs_dir, runner) if pin else None,
                                       on_submitted=submitted)
    launches = dispatcher.staff(workers)
    if executor == "local":  # this process's children: wait for them, then say how they ended
        for launched in launches:
            failed = pool.wait_launched(queue, launched.jobs)
            console.print("Workers finished: " + _counts(queue))
            if failed:
                raise GridlabError(f"{len(failed)} local worker(s) failed: {next(iter(failed.values()))}",
                                   f"see the logs in {launched.folder}")
        return
    if keep_alive:
        _supervise(queue, workers=workers, submit=lambda n, cls: len(dispatcher.submit(n, cls).job_ids),
                   interval=interval)
    else:
        console.print("Follow with `gridlab status`; `gridlab supervise` keeps workers alive and reconciles with Slurm.")


@click.command()
@click.option("--workers", "-w", default=None, type=click.IntRange(1, 10_000), help="Keep this many workers alive while jobs remain (default: only reconcile).")
@slurm_options
@click.option("--env", "env_pairs", multiple=True, metavar="KEY[=VALUE]", help="Extra environment variable for new workers (repeatable); KEY alone passes this environment's value.")
@click.option("--runner", default="harness.experiments:run", show_default=True)
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--heartbeat", default=10.0, show_default=True, type=inputs.Seconds(0.1))
@click.option("--pin/--no-pin", default=True, show_default=True, help="Workers it submits import a snapshot of the source tree made when supervise starts (default).")
@click.option("--interval", default=10.0, show_default=True, type=inputs.Seconds(1.0), help="Seconds between passes (one sacct call each).")
@click.option("--grace", default=10.0, show_default=True, type=inputs.Seconds(0.0), help="Seconds after Slurm ends a run before its attempt is judged (must exceed KillWait).")
@click.option("--once", is_flag=True, help="One pass, then exit.")
@click.option("-v", "--verbose", is_flag=True)
@options.db_option
def supervise(workers, slurm_flags, env_pairs, runner, runs_dir, heartbeat, pin, interval, grace, once, verbose,
              db_url) -> None:
    """Reconcile the queue with Slurm (one sacct per pass) and keep workers alive."""
    _setup_logging(verbose)
    queue = options.open_queue(db_url)
    if once:
        console.print(supervise_mod.reconcile(queue, grace_s=grace).describe())
        return
    slurm_settings = _settings(None, slurm_flags)
    env = _env(env_pairs)
    worker_options = launch_mod.worker_options(queue.engine.url.render_as_string(hide_password=False), runner=runner,
                                               runs_dir=runs_dir, heartbeat_s=heartbeat)
    pinned = None
    if workers is not None:
        launch_mod.require_slurm()
        sqlite_safety.check(worker_options.url, slurm_settings, workers=workers)
        pinned = _pin(runs_dir, runner) if pin else None

    def submitted(launched, cls: str) -> None:
        console.print(f"Submitted {len(launched.job_ids)} worker(s) for {cls}: {_ids(launched.job_ids)}",
                      markup=False, highlight=False)

    dispatcher = launch_mod.Dispatcher(queue, worker_options, slurm_settings, executor="slurm", runs_dir=runs_dir,
                                       extra_env=env, snapshot=pinned, on_submitted=submitted)
    _supervise(queue, workers=workers or 0, submit=lambda n, cls: len(dispatcher.submit(n, cls).job_ids),
               interval=interval, grace=grace, keep_alive=workers is not None)


def _supervise(queue, *, workers, submit, interval, grace=10.0, keep_alive=True) -> None:
    def on_tick(tick) -> None:
        if tick.eventful:
            console.print(f"{time.strftime('%H:%M:%S')} {tick.describe()}")

    try:
        supervise_mod.supervise(queue, workers=workers, submit=submit, interval_s=interval, grace_s=grace,
                                keep_alive=keep_alive, on_tick=on_tick)
    except KeyboardInterrupt:
        raise GridlabError("supervision interrupted; the workers keep running", "run `gridlab supervise` to resume it") from None
    console.print("Queue drained: " + _counts(queue))


def _require_ready(queue, grid_file: Path | None) -> None:
    """Refuse the launch, with the table of what is missing, unless every need of the pending jobs is here."""
    report = readiness_check.run(readiness_needs.of_queue(queue))
    if report.ready:
        return
    fetch = readiness_cli.fetch_command(grid_file)
    readiness_cli.print_report(report, fetch)
    names = ", ".join(need.label for need, _ in report.missing)
    raise GridlabError(f"the pending jobs need {len(report.missing)} piece(s) this machine does not have ({names})",
                       f"fetch them where the hub is reachable ({fetch}), or pass --skip-check if the nodes reach the hub")


def _settings(grid_file: Path | None, flags: dict) -> settings.SlurmSettings:
    """The Slurm settings: GRID_FILE's ``slurm:`` block (if given) under the flags."""
    raw, where = ({}, "slurm settings") if grid_file is None else (grid_mod.load(grid_file).slurm, f"{grid_file}: slurm")
    return settings.from_grid(raw, _flags(**flags), where=where)


def _flags(partition, gres, time_, mem, cpus, account, qos, constraint, array_parallelism, signal_delay,
           sbatch_flags, setup_lines) -> dict:
    flags = {"partition": partition, "gres": gres, "time": time_, "mem": mem, "cpus": cpus, "account": account,
             "qos": qos, "constraint": constraint, "array_parallelism": array_parallelism,
             "signal_delay_s": signal_delay}
    if time_ is not None and time_.isdigit():
        flags["time"] = int(time_)
    if sbatch_flags:
        flags["extra"] = _pairs(sbatch_flags, "--sbatch")
    if setup_lines:
        flags["setup"] = list(setup_lines)
    return flags


def _pairs(values: tuple[str, ...], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in values:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise GridlabError(f"{flag} {pair!r} is not KEY=VALUE", f"write it like {flag} reservation=my-res")
        out[key] = value
    return out


def _env(values: tuple[str, ...]) -> dict[str, str]:
    """--env KEY=VALUE, or --env KEY: the value of KEY in this environment (which keeps a
    token off the command line, where any user's `ps` shows it)."""
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise GridlabError(f"--env {item.split('=', 1)[0]!r} is not a variable name",
                               "write it like --env HF_HOME=/scratch/hf, or --env HF_TOKEN to pass your own")
        if not sep:
            if key not in os.environ:
                raise GridlabError(f"--env {key}: {key} is not set in this environment",
                                   f"set it (export {key}=...) or give --env {key}=VALUE")
            value = os.environ[key]
        elif secrets.looks_secret(key, value):
            terminal.err_console.print(f"note: {key}'s value was given on the command line, where `ps` shows it; next time "
                                       f"export it and pass --env {key}", style="yellow", markup=False, highlight=False)
        out[key] = value
    return out


def _pin(runs_dir, runner) -> Path:
    """Snapshot the source tree for a launch's workers; say what was pinned."""
    snap = snapshot.make(runs_dir, runner=runner)
    console.print(f"Pinned code {escape(snap.code.label())} ({snap.code.files} source files) in "
                  f"{escape(str(snap.path))}{' (reused)' if snap.reused else ''}; edits to the checkout from now on "
                  "do not reach these workers")
    if snap.note:
        console.print(f"note: {escape(snap.note)}", style="yellow")
    return snap.path


def _counts(queue) -> str:
    counts = reports.counts(queue.engine)
    return "  ".join(f"{s} {counts[s]}" for s in states.ALL if counts[s])


def _ids(ids: list[str]) -> str:
    return ", ".join(ids) if len(ids) <= 4 else f"{ids[0]} ... {ids[-1]}"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(name)s %(levelname)s %(message)s")
