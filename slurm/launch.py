"""Dispatch pull-workers: N array tasks with submitit (``--executor slurm``) or N local
processes (``--executor local``), each running :class:`slurm.worker.SlurmWorker`.

Every launch gets its own submitit folder (``<runs>/slurm/<launch id>/``): job ids
restart at 1 when a cluster's state is wiped, and a folder keyed only by job id would
then hand back an old result (slurm/cluster/NOTES.md). The folder is owner-only, and the
launch's secrets (database password, token-like ``--env`` values) are in a 0600 file in
it, never in the script or the pickles (:mod:`slurm.secrets`).

With a pinned snapshot (:mod:`slurm.snapshot`, the default of ``gridlab launch``), the
workers' PYTHONPATH starts with the snapshot and ``PYTHONSAFEPATH=1`` keeps Python from
putting the working directory (often the checkout) ahead of it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from db.engine import has_secret, resolve_url
from db.errors import GridlabError
from jobs import reports, resources
from jobs import workers as worker_jobs
from jobs.queue import Queue
from slurm import secrets, snapshot as snapshot_mod
from slurm.settings import SlurmSettings, SlurmSettingsError
from jobs.worker import WorkerOptions
from slurm.worker import SlurmWorker

EXECUTORS = ("slurm", "local")


class SubmissionRefused(GridlabError):
    """sbatch refused the workers (unknown partition, time over the limit, ...)."""


@dataclass(frozen=True)
class Launched:
    executor: str
    folder: Path
    job_ids: list[str]  # "12_0", ... (slurm) or pids (local)
    jobs: list  # submitit Job objects


def class_settings(settings: SlurmSettings, resource_class: str) -> SlurmSettings:
    """The Slurm settings of a worker for ``resource_class``: what the class asks for (GPUs as
    gres, CPUs, memory, time, partition, constraint) over the launch's own settings. Raises
    SlurmSettingsError where the class's time leaves the checkpoint signal no room."""
    merged = settings.merged(resources.from_name(resource_class).sbatch())
    if (problem := merged.timing_problem()) is not None:
        raise SlurmSettingsError([problem], f"resource class {resource_class}")
    return merged


def check_classes(settings: SlurmSettings, resource_classes) -> None:
    """Every class's settings checked (:func:`class_settings`) before anything of a launch is
    written or submitted."""
    for resource_class in resource_classes:
        class_settings(settings, resource_class)


def for_class(options: WorkerOptions, resource_class: str) -> WorkerOptions:
    return replace(options, resource_class=resource_class)


def new_folder(runs_dir: str | Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return (Path(runs_dir) / "slurm" / f"{stamp}-{uuid.uuid4().hex[:6]}").resolve()


def worker_options(url: str, *, runner: str, runs_dir: str | Path, heartbeat_s: float, poll_s: float = 1.0) -> WorkerOptions:
    """Options every worker gets; a relative SQLite path is made absolute first."""
    resolved = resolve_url(url)
    if resolved.get_backend_name() == "sqlite":
        resolved = resolved.set(database=str(Path(resolved.database).expanduser().resolve()))
    return WorkerOptions(url=resolved.render_as_string(hide_password=False), runner=runner,
                         runs_dir=str(Path(runs_dir).resolve()), heartbeat_s=heartbeat_s, poll_s=poll_s,
                         log_level=logging.INFO)


def job_environment(options: WorkerOptions, settings: SlurmSettings, extra_env: dict[str, str],
                    snapshot: Path | None = None) -> list[str]:
    """Shell lines that export what a worker needs, before the user's own setup lines.

    PYTHONPATH: the pinned snapshot (or, unpinned, this gridlab's live source folder)
    first, then the caller's PYTHONPATH. GRIDLAB_DB: only for a URL without secrets (a
    password travels in the launch's owner-only secrets file). ``extra_env`` values that
    look like tokens are not written: a comment says where the worker finds them.
    """
    paths = snapshot_mod.pythonpath(snapshot)
    lines = [f"export PYTHONPATH={shlex.quote(os.pathsep.join(paths))}"]
    if snapshot is not None:
        lines.append("export PYTHONSAFEPATH=1  # the working directory must not shadow the pinned code")
    if options.secrets_file is None and not has_secret(resolve_url(options.url)):
        lines.append(f"export GRIDLAB_DB={shlex.quote(options.url)}")
    lines.append(f"export GRIDLAB_SIGNAL_DELAY_S={settings.signal_delay_s}")
    public, secret = secrets.split_env(extra_env)
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(public.items())]
    if secret or options.secrets_file is not None:
        names = ", ".join(sorted(secret)) or "the database password"
        lines.append(f"# not written here: {names} (the worker reads them from the launch's owner-only "
                     f"{secrets.SECRETS_FILE})")
    return lines + list(settings.setup)


def sbatch_parameters(options: WorkerOptions, settings: SlurmSettings, extra_env: dict[str, str],
                      snapshot: Path | None = None) -> dict:
    params = settings.to_sbatch()
    params["setup"] = job_environment(options, settings, extra_env, snapshot)
    return params


def sbatch_script(options: WorkerOptions, settings: SlurmSettings, *, workers: int, folder: Path,
                  extra_env: dict[str, str] | None = None, python: str | None = None,
                  snapshot: Path | None = None) -> str:
    """The sbatch script ``launch`` would submit (for --dry-run and the golden test);
    the same text submitit writes, from the same parameters."""
    from submitit.slurm.slurm import _make_sbatch_string

    python = python or shlex.quote(sys.executable)
    command = " ".join([python, "-u -m submitit.core._submit", shlex.quote(str(folder / "%j"))])
    params = sbatch_parameters(options, settings, extra_env or {}, snapshot)
    return _make_sbatch_string(command=command, folder=folder / "%j", map_count=workers if workers > 1 else None, **params)


def _private(options: WorkerOptions, folder: Path, extra_env: dict[str, str]) -> tuple[WorkerOptions, dict[str, str]]:
    """Make the owner-only launch folder, move the launch's secrets into it, and return
    the options and environment without them."""
    secrets.new_launch_folder(folder)
    url, secrets_file, public = secrets.write(folder, url=options.url, env=extra_env)
    return replace(options, url=url, secrets_file=secrets_file), public


def _unexported(extra_env: dict[str, str]) -> dict[str, None]:
    """Variables to leave out of what sbatch (or a local worker) inherits from this process:
    the secret --env ones and a GRIDLAB_DB holding a password. The workers read them from
    the secrets file; Slurm would otherwise store them with the job's environment."""
    names = dict.fromkeys(secrets.split_env(extra_env)[1])
    db = os.environ.get("GRIDLAB_DB")
    if db:
        try:
            secret_db = has_secret(db)
        except Exception:  # not a URL: not ours to judge
            secret_db = False
        if secret_db:
            names["GRIDLAB_DB"] = None
    return names


def require_slurm() -> None:
    if shutil.which("sbatch") is None:
        raise GridlabError("no Slurm here: sbatch is not on PATH", "run on a Slurm login node, or use --executor local")


def launch_slurm(options: WorkerOptions, settings: SlurmSettings, *, workers: int, folder: Path,
                 extra_env: dict[str, str] | None = None, snapshot: Path | None = None) -> Launched:
    """Submit ``workers`` array tasks, importing ``snapshot`` (pinned code) if given. A
    refused submission raises SubmissionRefused with sbatch's last line, and the launch
    folder is removed again."""
    import submitit
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    try:
        executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=settings.max_requeues)
    except RuntimeError as exc:  # no srun on this machine
        raise GridlabError(f"no Slurm here: {exc}", "run on a Slurm login node, or use --executor local") from None
    options, public_env = _private(options, folder, extra_env or {})
    executor.update_parameters(**sbatch_parameters(options, settings, public_env, snapshot))
    try:
        with _environ(_unexported(extra_env or {})):
            jobs = executor.map_array(SlurmWorker(), [options] * workers)
    except (FailedJobError, FailedSubmissionError, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise SubmissionRefused(f"sbatch refused the workers: {sbatch_error(str(exc))}",
                                "fix the Slurm settings (grid file slurm: block or flags) and launch again") from None
    return Launched("slurm", folder, [j.job_id for j in jobs], jobs)


def launch_local(options: WorkerOptions, settings: SlurmSettings, *, workers: int, folder: Path,
                 extra_env: dict[str, str] | None = None, snapshot: Path | None = None) -> Launched:
    """``workers`` local processes under submitit (they inherit this process's environment,
    with PYTHONPATH and the public ``extra_env`` set for them only)."""
    import submitit

    options, public_env = _private(options, folder, extra_env or {})
    executor = submitit.LocalExecutor(folder=folder / "%j", max_num_timeout=settings.max_requeues)
    executor.update_parameters(timeout_min=settings.time, signal_delay_s=settings.signal_delay_s)
    env: dict[str, str | None] = {"PYTHONPATH": os.pathsep.join(snapshot_mod.pythonpath(snapshot)), **public_env,
                                  **_unexported(extra_env or {})}
    if snapshot is not None:
        env["PYTHONSAFEPATH"] = "1"
    with _environ(env):
        jobs = [executor.submit(SlurmWorker(), options) for _ in range(workers)]
    return Launched("local", folder, [str(j.job_id) for j in jobs], jobs)


@dataclass
class Dispatcher:
    """Submits workers for one resource class at a time and records them in the queue (one
    array per class: its workers get the class's Slurm settings and claim only its jobs).
    ``gridlab launch`` staffs every class with pending work once; supervision calls
    :meth:`submit` whenever a class runs short. ``on_submitted(launched, resource_class)``
    is told of each submission."""

    queue: Queue
    options: WorkerOptions
    settings: SlurmSettings
    executor: str = "slurm"
    runs_dir: str | Path = "runs"
    extra_env: dict[str, str] = field(default_factory=dict)
    snapshot: Path | None = None
    on_submitted: Callable[[Launched, str], None] | None = None

    def submit(self, n: int, resource_class: str) -> Launched:
        launch = launch_slurm if self.executor == "slurm" else launch_local
        launched = launch(for_class(self.options, resource_class), class_settings(self.settings, resource_class),
                          workers=n, folder=new_folder(self.runs_dir), extra_env=self.extra_env, snapshot=self.snapshot)
        worker_jobs.record(self.queue.engine, launched.executor, [(j, array_index(j)) for j in launched.job_ids],
                           folder=str(launched.folder), resource_class=resource_class)
        if self.on_submitted is not None:
            self.on_submitted(launched, resource_class)
        return launched

    def staff(self, workers: int) -> list[Launched]:
        """Up to ``workers`` workers for each resource class with pending jobs (no more than they
        keep busy: one per job, one per K jobs where the class's workers run K cells at once)."""
        pending = reports.pending_by_class(self.queue.engine)
        check_classes(self.settings, pending)  # before the first class is submitted
        return [self.submit(min(workers, resources.workers_for(count, cls)), cls) for cls, count in sorted(pending.items())]


def array_index(job_id: str) -> int | None:
    """The array index of a Slurm job id like ``12_3`` (None for a plain id or a local pid)."""
    _, sep, index = str(job_id).partition("_")
    return int(index) if sep and index.isdigit() else None


@contextlib.contextmanager
def _environ(values: dict[str, str | None]) -> Iterator[None]:
    """``values`` in os.environ while the block runs (child processes inherit them); a
    None value unsets the variable."""
    saved = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def sbatch_error(text: str) -> str:
    """sbatch's stderr -> its last line without the ``sbatch: error: `` prefix."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "sbatch failed without a message"
    for prefix in ("sbatch: error: Batch job submission failed: ", "sbatch: error: "):
        if last.startswith(prefix):
            return last[len(prefix):]
    return last


def worker_error(folder: Path, job_id: str) -> str | None:
    """The last line of a finished worker's error, from its submitit result file. Only a
    launch folder gridlab made for this user is read (unpickling runs code: a folder named
    in the database is not trusted for being named there)."""
    from submitit.core.utils import JobPaths, pickle_load

    if not secrets.is_own_launch_folder(folder):
        return None
    path = JobPaths(folder / "%j", job_id=job_id, task_id=0).result_pickle
    if not path.exists() or not secrets.is_own_file(path):
        return None
    try:
        kind, value = pickle_load(path)
    except Exception:  # a half-written or foreign file says nothing useful
        return None
    if kind != "error":
        return None
    lines = [line for line in str(value).strip().splitlines() if line.strip()]
    return lines[-1] if lines else None
