"""``gridlab launch`` and ``gridlab supervise``: workers on Slurm (or local processes),
and the Slurm side of ``gridlab status``."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import click
from rich.table import Table

from db.errors import GridlabError
from harness import inputs, terminal
from jobs import states

EXECUTOR_HELP = "slurm: a Slurm job array via submitit; local: processes on this machine (same worker code)."
PIN_HELP = ("Workers import a snapshot of the source tree made now (under RUNS_DIR/code), so later edits to the "
            "checkout do not reach cells already launched (default). --no-pin: they import the live tree.")


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
    from slurm import secrets

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


def _settings(grid_file: Path | None, flags: dict):
    from slurm import settings

    raw = {}
    where = "slurm settings"
    if grid_file is not None:
        from harness import grid as grid_mod

        raw = grid_mod.load(grid_file).slurm
        where = f"{grid_file}: slurm"
    return settings.from_grid(raw, flags, where=where)


def slurm_options(f):
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
        f = opt(f)
    return f


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


@click.command()
@click.argument("grid_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--executor", type=click.Choice(["slurm", "local"]), default="slurm", show_default=True, help=EXECUTOR_HELP)
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
@click.option("-v", "--verbose", is_flag=True)
@click.option("--db", "db_url", envvar="GRIDLAB_DB", default=None, metavar="URL", type=inputs.TEXT, help="Database URL (default: $GRIDLAB_DB, else sqlite:///gridlab.db).")
def launch(grid_file, executor, workers, partition, gres, time_, mem, cpus, account, qos, constraint, array_parallelism,
           signal_delay, sbatch_flags, setup_lines, env_pairs, runner, runs_dir, heartbeat, pin, dry_run, keep_alive,
           interval, verbose, db_url) -> None:
    """Start pull-workers that run queued jobs until the queue is empty.

    Slurm settings come from GRID_FILE's slurm: block (if given) and the flags (which win).
    Workers import a pinned snapshot of the source tree unless --no-pin is given.
    """
    from harness.cli import _open_queue, console
    from slurm import launch as launch_mod

    _setup_logging(verbose)
    settings = _settings(grid_file, _flags(partition, gres, time_, mem, cpus, account, qos, constraint,
                                           array_parallelism, signal_delay, sbatch_flags, setup_lines))
    env = _env(env_pairs)
    options = launch_mod.worker_options(db_url or os.environ.get("GRIDLAB_DB") or "sqlite:///gridlab.db", runner=runner,
                                        runs_dir=runs_dir, heartbeat_s=heartbeat)
    folder = launch_mod.new_folder(runs_dir)
    if dry_run:
        if executor != "slurm":
            raise GridlabError("--dry-run shows the sbatch script of --executor slurm", "drop --executor local")
        click.echo(launch_mod.sbatch_script(options, settings, workers=workers, folder=folder, extra_env=env,
                                            snapshot=_planned_snapshot(runs_dir) if pin else None), nl=False)
        return
    queue = _open_queue(db_url, create=False)
    todo = queue.unfinished()
    pending = queue.pending_by_class()
    if todo == 0 or not pending:
        console.print("Nothing to run: no pending jobs. Enqueue a grid first (`gridlab enqueue GRID.yaml`).")
        return
    if executor == "slurm":
        from slurm import sqlite_safety

        launch_mod.require_slurm()
        sqlite_safety.check(options.url, settings, workers=workers)
    pinned = _pin(runs_dir, runner, console) if pin else None

    def submit(n: int, cls: str):
        # One array per resource class: its workers get the class's Slurm settings and claim only its jobs.
        opts, st = launch_mod.for_class(options, cls), launch_mod.class_settings(settings, cls)
        if executor == "slurm":
            launched = launch_mod.launch_slurm(opts, st, workers=n, folder=launch_mod.new_folder(runs_dir),
                                               extra_env=env, snapshot=pinned)
        else:
            launched = launch_mod.launch_local(opts, st, workers=n, folder=launch_mod.new_folder(runs_dir),
                                               extra_env=env, snapshot=pinned)
        queue.record_workers(launched.executor, [(j, _array_index(j)) for j in launched.job_ids], folder=str(launched.folder),
                             resource_class=cls)
        what = "" if cls == "default" else f" for {cls}"
        console.print(f"Submitted {len(launched.job_ids)} {launched.executor} worker(s){what}: {_ids(launched.job_ids)} "
                      f"(logs in {launched.folder})", markup=False, highlight=False)
        return len(launched.job_ids), launched

    launches = [submit(min(workers, count), cls)[1] for cls, count in sorted(pending.items())]
    if executor == "local":
        for launched in launches:
            _wait_local(queue, launched, console)
        return
    if keep_alive:
        _supervise(queue, workers=workers, submit=lambda k, cls: submit(k, cls)[0], interval=interval, console=console)
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
@click.option("--db", "db_url", envvar="GRIDLAB_DB", default=None, metavar="URL", type=inputs.TEXT)
def supervise(workers, partition, gres, time_, mem, cpus, account, qos, constraint, array_parallelism, signal_delay,
              sbatch_flags, setup_lines, env_pairs, runner, runs_dir, heartbeat, pin, interval, grace, once, verbose,
              db_url) -> None:
    """Reconcile the queue with Slurm (one sacct per pass) and keep workers alive."""
    from harness.cli import _open_queue, console
    from slurm import launch as launch_mod
    from slurm import supervise as supervise_mod

    _setup_logging(verbose)
    queue = _open_queue(db_url, create=False)
    if once:
        tick = supervise_mod.reconcile(queue, grace_s=grace)
        console.print(_tick_line(tick))
        return
    settings = _settings(None, _flags(partition, gres, time_, mem, cpus, account, qos, constraint,
                                      array_parallelism, signal_delay, sbatch_flags, setup_lines))
    env = _env(env_pairs)
    options = launch_mod.worker_options(queue.engine.url.render_as_string(hide_password=False), runner=runner,
                                        runs_dir=runs_dir, heartbeat_s=heartbeat)
    pinned = None
    if workers is not None:
        from slurm import sqlite_safety

        launch_mod.require_slurm()
        sqlite_safety.check(options.url, settings, workers=workers)
        pinned = _pin(runs_dir, runner, console) if pin else None

    def submit(n: int, cls: str) -> int:
        opts, st = launch_mod.for_class(options, cls), launch_mod.class_settings(settings, cls)
        launched = launch_mod.launch_slurm(opts, st, workers=n, folder=launch_mod.new_folder(runs_dir),
                                           extra_env=env, snapshot=pinned)
        queue.record_workers("slurm", [(j, _array_index(j)) for j in launched.job_ids], folder=str(launched.folder),
                             resource_class=cls)
        console.print(f"Submitted {n} worker(s) for {cls}: {_ids(launched.job_ids)}", markup=False, highlight=False)
        return n

    _supervise(queue, workers=workers or 0, submit=submit, interval=interval, console=console, grace=grace,
               keep_alive=workers is not None)


def _pin(runs_dir, runner, console) -> Path:
    """Snapshot the source tree for a launch's workers; say what was pinned."""
    from rich.markup import escape

    from slurm import snapshot

    snap = snapshot.make(runs_dir, runner=runner)
    console.print(f"Pinned code {escape(snap.code.label())} ({snap.code.files} source files) in "
                  f"{escape(str(snap.path))}{' (reused)' if snap.reused else ''}; edits to the checkout from now on "
                  "do not reach these workers")
    if snap.note:
        console.print(f"note: {escape(snap.note)}", style="yellow")
    return snap.path


def _planned_snapshot(runs_dir) -> Path:
    """Where a launch would pin the tree as it is now (for --dry-run, which copies nothing)."""
    from jobs import provenance
    from slurm import snapshot

    root = provenance.code_root()
    if (root / provenance.SNAPSHOT_MANIFEST).is_file():
        return root
    code = provenance.capture_code(root, exclude=(Path(runs_dir).resolve(),))
    return Path(runs_dir).resolve() / snapshot.SNAPSHOTS / code.fingerprint[:16]


def _supervise(queue, *, workers, submit, interval, console, grace=10.0, keep_alive=True) -> None:
    from slurm import supervise as supervise_mod

    def on_tick(tick) -> None:
        if tick.attempts_ended or tick.attempts_refined or tick.submitted or tick.workers_changed or tick.worker_errors:
            console.print(f"{time.strftime('%H:%M:%S')} {_tick_line(tick)}")

    try:
        supervise_mod.supervise(queue, workers=workers, submit=submit, interval_s=interval, grace_s=grace,
                                keep_alive=keep_alive, on_tick=on_tick)
    except KeyboardInterrupt:
        raise GridlabError("supervision interrupted; the workers keep running", "run `gridlab supervise` to resume it") from None
    counts = queue.counts()
    console.print("Queue drained: " + "  ".join(f"{s} {counts[s]}" for s in states.ALL if counts[s]))


def _tick_line(tick) -> str:
    parts = [f"workers alive {tick.workers_alive}"]
    if tick.submitted:
        parts.append(f"submitted {tick.submitted}")
    for job, attempt, outcome in tick.attempts_ended:
        parts.append(f"job {job} attempt {attempt} ended {outcome}")
    for job, attempt, outcome in tick.attempts_refined:
        parts.append(f"job {job} attempt {attempt}: lease had expired, Slurm says {outcome}")
    parts += tick.worker_errors
    return "; ".join(parts)


def _wait_local(queue, launched, console) -> None:
    """Local workers are this process's children: wait for them, then record how they ended."""
    seen = {}
    for job in launched.jobs:
        try:
            job.result()
            seen[str(job.job_id)] = ("COMPLETED", None)
        except Exception as exc:  # a worker that failed: keep going, report below
            seen[str(job.job_id)] = ("FAILED", str(exc).strip().splitlines()[-1][:500] if str(exc).strip() else None)
    queue.update_workers("local", seen)
    failed = {k: v for k, v in seen.items() if v[0] == "FAILED"}
    counts = queue.counts()
    console.print("Workers finished: " + "  ".join(f"{s} {counts[s]}" for s in states.ALL if counts[s]))
    if failed:
        first = next(iter(failed.values()))[1]
        raise GridlabError(f"{len(failed)} local worker(s) failed: {first}", f"see the logs in {launched.folder}")


def _array_index(job_id: str) -> int | None:
    _, sep, index = str(job_id).partition("_")
    return int(index) if sep and index.isdigit() else None


def _ids(ids: list[str]) -> str:
    return ", ".join(ids) if len(ids) <= 4 else f"{ids[0]} ... {ids[-1]}"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(name)s %(levelname)s %(message)s")


# --- the Slurm side of `gridlab status` -------------------------------------------------


def workers_table(queue) -> Table | None:
    """Dispatched workers by executor and state (Slurm's current word where sacct answers)."""
    from slurm import accounting
    from slurm.supervise import LIVE

    rows = queue.workers()
    if not rows:
        return None
    live = {w.external_id for w in rows if w.executor == "slurm" and w.state in LIVE}
    now_state: dict[str, str] = {}
    if live:
        try:
            now_state = {k: r.state for k, r in accounting.current(accounting.runs(live, timeout_s=10)).items()}
        except accounting.SlurmUnavailable:
            pass
    counts: dict[tuple[str, str], int] = {}
    for w in rows:
        state = now_state.get(w.external_id, w.state) if w.executor == "slurm" else w.state
        counts[(w.executor, state)] = counts.get((w.executor, state), 0) + 1
    table = Table(title="Workers", title_justify="left")
    for col in ("executor", "state", "workers"):
        table.add_column(col)
    order = ["PENDING", "SUBMITTED", "RUNNING", "REQUEUED", "COMPLETING"]
    for (executor, state), n in sorted(counts.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]) if kv[0][1] in order else 99, kv[0][1])):
        table.add_row(executor, state.lower(), str(n))
    return table
