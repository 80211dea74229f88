"""Dispatch pull-workers: N array tasks with submitit (``--executor slurm``) or N local
processes (``--executor local``), each running :class:`slurm.worker.SlurmWorker`.

Every launch gets its own submitit folder (``<runs>/slurm/<launch id>/``): job ids
restart at 1 when a cluster's state is wiped, and a folder keyed only by job id would
then hand back an old result (slurm/cluster/NOTES.md).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from db.engine import resolve_url
from db.errors import GridlabError
from jobs import resources
from slurm.settings import SlurmSettings
from slurm.worker import SlurmWorker, WorkerOptions

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
    gres, CPUs, memory, time, partition, constraint) over the launch's own settings."""
    return settings.merged(resources.from_name(resource_class).sbatch())


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
                         runs_dir=str(Path(runs_dir).resolve()), heartbeat_s=heartbeat_s, poll_s=poll_s)


def job_environment(options: WorkerOptions, settings: SlurmSettings, extra_env: dict[str, str]) -> list[str]:
    """Shell lines that export what a worker needs, before the user's own setup lines.

    PYTHONPATH: this gridlab's source folder first, then the caller's PYTHONPATH, so the
    job imports the same code as the launcher. GRIDLAB_DB: only for a URL without a
    password (one with a password travels only in the job's pickle, not in the script).
    """
    code_root = str(Path(__file__).resolve().parent.parent)
    paths = [code_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    paths = list(dict.fromkeys(str(Path(p).resolve()) for p in paths))
    lines = [f"export PYTHONPATH={shlex.quote(os.pathsep.join(paths))}"]
    url = resolve_url(options.url)
    if url.password is None:
        lines.append(f"export GRIDLAB_DB={shlex.quote(options.url)}")
    lines.append(f"export GRIDLAB_SIGNAL_DELAY_S={settings.signal_delay_s}")
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(extra_env.items())]
    return lines + list(settings.setup)


def sbatch_parameters(options: WorkerOptions, settings: SlurmSettings, extra_env: dict[str, str]) -> dict:
    params = settings.to_sbatch()
    params["setup"] = job_environment(options, settings, extra_env)
    return params


def sbatch_script(options: WorkerOptions, settings: SlurmSettings, *, workers: int, folder: Path,
                  extra_env: dict[str, str] | None = None, python: str | None = None) -> str:
    """The sbatch script ``launch`` would submit (for --dry-run and the golden test);
    the same text submitit writes, from the same parameters."""
    from submitit.slurm.slurm import _make_sbatch_string

    python = python or shlex.quote(sys.executable)
    command = " ".join([python, "-u -m submitit.core._submit", shlex.quote(str(folder / "%j"))])
    params = sbatch_parameters(options, settings, extra_env or {})
    return _make_sbatch_string(command=command, folder=folder / "%j", map_count=workers if workers > 1 else None, **params)


def launch_slurm(options: WorkerOptions, settings: SlurmSettings, *, workers: int, folder: Path,
                 extra_env: dict[str, str] | None = None) -> Launched:
    """Submit ``workers`` array tasks. A refused submission raises SubmissionRefused with
    sbatch's last line; nothing is written anywhere else."""
    import submitit
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    try:
        executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=settings.max_requeues)
    except RuntimeError as exc:  # no srun on this machine
        raise GridlabError(f"no Slurm here: {exc}", "run on a Slurm login node, or use --executor local") from None
    executor.update_parameters(**sbatch_parameters(options, settings, extra_env or {}))
    try:
        jobs = executor.map_array(SlurmWorker(), [options] * workers)
    except (FailedJobError, FailedSubmissionError, OSError) as exc:
        raise SubmissionRefused(f"sbatch refused the workers: {sbatch_error(str(exc))}",
                                "fix the Slurm settings (grid file slurm: block or flags) and launch again") from None
    return Launched("slurm", folder, [j.job_id for j in jobs], jobs)


def launch_local(options: WorkerOptions, settings: SlurmSettings, *, workers: int, folder: Path) -> Launched:
    import submitit

    executor = submitit.LocalExecutor(folder=folder / "%j", max_num_timeout=settings.max_requeues)
    executor.update_parameters(timeout_min=settings.time, signal_delay_s=settings.signal_delay_s)
    jobs = [executor.submit(SlurmWorker(), options) for _ in range(workers)]
    return Launched("local", folder, [str(j.job_id) for j in jobs], jobs)


def sbatch_error(text: str) -> str:
    """sbatch's stderr -> its last line without the ``sbatch: error: `` prefix."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "sbatch failed without a message"
    for prefix in ("sbatch: error: Batch job submission failed: ", "sbatch: error: "):
        if last.startswith(prefix):
            return last[len(prefix):]
    return last


def worker_error(folder: Path, job_id: str) -> str | None:
    """The last line of a finished worker's error, from its submitit result file."""
    from submitit.core.utils import JobPaths, pickle_load

    path = JobPaths(folder / "%j", job_id=job_id, task_id=0).result_pickle
    if not path.exists():
        return None
    try:
        kind, value = pickle_load(path)
    except Exception:  # a half-written or foreign file says nothing useful
        return None
    if kind != "error":
        return None
    lines = [line for line in str(value).strip().splitlines() if line.strip()]
    return lines[-1] if lines else None
