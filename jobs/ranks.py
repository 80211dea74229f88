"""A job that runs as N ranks (``torch.distributed`` on one node), launched by the worker that
claimed it.

The worker keeps the lease and the heartbeat in its own process, as for any job, and starts
the ranks with PyTorch's launcher, torchrun, as a child process group::

    python -m jobs.ranks agent --standalone --nproc-per-node N --max-restarts 0 -m jobs.rank LAUNCH_FILE

(``agent`` is torchrun, ``torch.distributed.run``, made to die with the worker and to leave
Slurm's ``USR2`` to the ranks). Each rank is :mod:`jobs.rank`: rank 0 gets a real
:class:`jobs.context.JobContext` bound to the worker's lease (fencing is the lease's owner and
attempt, so it works from any process), ranks > 0 a context that writes nothing; every rank
loads the checkpoint the worker verified (``ctx.resume_from``). Their files, in the attempt's
folder::

    <attempt dir>/ranks/
        launch.json         the job (its complete spec), the lease, the run folder, the
                            checkpoint to resume from and the runner: the same for every rank
        stop.json           written by the worker when it must stop (signal, preemption, time
                            limit): the ranks agree on a step, checkpoint and hand the job back
        rank-<r>.start.json   rank r's pid and the checkpoint it resumed from
        rank-<r>.end.json     how rank r ended: succeeded, interrupted, diverged, lost, or
                              failed (with the failure's class, jobs.retry.classify, and traceback)
        torchrun.log        torchrun's output and the ranks'

The database URL reaches the ranks in the environment (``GRIDLAB_RANK_DB``), never on disk.

How the attempt ends is decided here, from the end records (:func:`ending`): rank 0's
deliberate outcomes (interrupted, diverged, lease lost) are the job's; otherwise the first
rank to fail says why, and a rank that left no end record (killed by a signal, the OOM
killer) is the cause whatever the others then said (a peer's death makes the survivors fail
in their next collective). The worker records that outcome as for any job (jobs.worker), so a
dead rank fails the attempt with its class and the job is retried from its recorded
checkpoint. If the lease is lost, the worker kills the ranks at once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jobs import states
from jobs.errors import Diverged, Interrupted, LeaseLost

log = logging.getLogger(__name__)

FOLDER = "ranks"
LAUNCH = "launch.json"
STOP = "stop.json"
LOG = "torchrun.log"
URL_ENV = "GRIDLAB_RANK_DB"
#: End records' outcomes, besides a failure's class.
SUCCEEDED, INTERRUPTED, DIVERGED, LOST, FAILED = "succeeded", "interrupted", "diverged", "lost", "failed"
#: How long the ranks get to leave once torchrun is gone, before they are killed.
LEFTOVER_GRACE_S = 5.0
CODE_ROOT = Path(__file__).resolve().parent.parent


class RankFailed(Exception):
    """A rank of the job failed; ``outcome`` and ``error_type`` are that rank's failure's
    (:func:`jobs.retry.classify` reads both), so the retry policy treats a rank's failure as
    it would the same failure in one process."""

    def __init__(self, message: str, *, outcome: str = states.OUTCOME_ERROR, error_type: str | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.error_type = error_type or f"{__name__}.RankFailed"


def start_record(folder: Path, rank: int) -> Path:
    return folder / f"rank-{rank}.start.json"


def end_record(folder: Path, rank: int) -> Path:
    return folder / f"rank-{rank}.end.json"


def write_json(path: Path, body: dict[str, Any]) -> None:
    """Write ``path`` whole or not at all (a temporary name of this process's, renamed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(body, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --- the worker's side -------------------------------------------------------------


def launch(ctx, ranks: int, *, runner: str, poll_s: float = 0.2) -> None:
    """Run ``runner`` (an import path, ``module:function``) as ``ranks`` processes for the
    job of ``ctx`` (the worker's own context), and return or raise as the job ended (see the
    module): nothing, :class:`~jobs.errors.Interrupted`, :class:`~jobs.errors.Diverged`,
    :class:`~jobs.errors.LeaseLost` or :class:`RankFailed`."""
    folder = ctx.attempt_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    launch_file = folder / LAUNCH
    write_json(launch_file, {
        "job": asdict(ctx.job),
        "lease": asdict(ctx.lease),
        "run_dir": str(Path(ctx.run_dir).resolve()),
        "identity": ctx.identity.as_dict(),
        "resume": [str(Path(ctx.resume_from).resolve()), ctx.resume_step] if ctx.resume_from is not None else None,
        "runner": runner,
        "world_size": ranks,
    })
    command = [sys.executable, "-m", "jobs.ranks", "agent", "--standalone", "--nnodes", "1",
               "--nproc-per-node", str(ranks), "--max-restarts", "0", "--monitor-interval", "0.2",
               "-m", "jobs.rank", str(launch_file)]
    log.info("job %d attempt %d: starting %d ranks", ctx.lease.job_id, ctx.lease.attempt, ranks)
    with open(folder / LOG, "ab") as out:
        proc = subprocess.Popen(command, env=_environment(ctx), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    stopping = None
    try:
        while proc.poll() is None:
            if ctx.lease_lost:
                log.warning("job %d: lease lost; killing its %d ranks", ctx.lease.job_id, ranks)
                _kill(proc, folder, ranks)
                raise LeaseLost(f"job {ctx.lease.job_id} attempt {ctx.lease.attempt}: lease lost; ranks killed")
            if stopping is None and ctx.should_stop():
                stopping = (ctx.stop_reason, ctx.stop_outcome)
                write_json(folder / STOP, {"reason": stopping[0], "outcome": stopping[1]})
                log.info("job %d: asked its ranks to checkpoint and stop (%s)", ctx.lease.job_id, stopping[0])
            time.sleep(poll_s)
    except BaseException:
        _kill(proc, folder, ranks)
        raise
    _reap(folder, ranks)
    if ctx.lease_lost:
        raise LeaseLost(f"job {ctx.lease.job_id} attempt {ctx.lease.attempt}: lease lost while its ranks ran")
    problem = ending(folder, ranks, returncode=proc.returncode, stopping=stopping)
    if problem is not None:
        raise problem


def _environment(ctx) -> dict[str, str]:
    """The worker's environment, plus the database URL, this gridlab first on the path, and
    one thread per rank unless the worker was given a number."""
    env = dict(os.environ)
    env[URL_ENV] = ctx.queue.engine.url.render_as_string(hide_password=False)
    paths = [str(CODE_ROOT), os.getcwd(), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TQDM_DISABLE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _rank_pids(folder: Path, ranks: int) -> list[int]:
    pids = []
    for rank in range(ranks):
        body = read_json(start_record(folder, rank))
        if body and isinstance(body.get("pid"), int):
            pids.append(body["pid"])
    return pids


def _is_rank(pid: int) -> bool:
    """True while ``pid`` is alive and one of gridlab's rank processes (not a reused pid)."""
    try:
        return b"jobs.rank" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return sys.platform != "linux"


def _kill(proc: subprocess.Popen, folder: Path, ranks: int) -> None:
    """SIGKILL torchrun and every rank (each rank has its own session, so both by pid)."""
    for pid in [proc.pid] + _rank_pids(folder, ranks):
        if pid == proc.pid or _is_rank(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        log.error("torchrun (pid %d) did not exit after SIGKILL", proc.pid)


def _reap(folder: Path, ranks: int) -> None:
    """torchrun has exited; a rank it left behind (it was killed itself) is killed too."""
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    left = [pid for pid in _rank_pids(folder, ranks) if _is_rank(pid)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [pid for pid in left if _is_rank(pid)]
    for pid in left:
        log.warning("rank process %d outlived torchrun; killing it", pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def ending(folder: Path, ranks: int, *, returncode: int, stopping: tuple[str, str] | None) -> BaseException | None:
    """How the attempt ended, from the ranks' end records (None: it succeeded). See the module."""
    ends = {rank: body for rank in range(ranks) if (body := read_json(end_record(folder, rank))) is not None}
    main = ends.get(0, {})
    if len(ends) == ranks and all(e.get("outcome") == SUCCEEDED for e in ends.values()):
        return None  # (torchrun may have been signalled after they finished: the job is done)
    if main.get("outcome") == LOST:
        return LeaseLost(main.get("error") or "rank 0 lost the lease")
    if main.get("outcome") == DIVERGED:
        return Diverged(int(main.get("step") or 0), main.get("detail") or "")
    if stopping is not None:  # the worker asked them to stop: whatever rank 0 managed, the job goes back
        return Interrupted(*stopping)
    if main.get("outcome") == INTERRUPTED:
        return Interrupted(main.get("reason") or "ranks stopped", main.get("stop_outcome") or states.OUTCOME_STOPPED)
    failed = sorted((e for e in ends.values() if e.get("outcome") == FAILED), key=lambda e: e.get("t", 0.0))
    invalid = [e for e in failed if e.get("failure") == states.OUTCOME_INVALID]
    if invalid:  # the job's own input is wrong: trying again cannot help, whatever else happened
        return _failure(invalid[0])
    silent = [rank for rank in range(ranks) if rank not in ends]
    if silent:
        reported = torchrun_failures(folder / LOG)
        how = "; ".join(f"rank {rank}: {reported.get(rank, 'no exit status from torchrun')}" for rank in silent)
        also = f"; then rank {failed[0]['rank']} failed: {failed[0].get('line', '')}" if failed else ""
        return RankFailed(
            f"rank{'s' if len(silent) > 1 else ''} {', '.join(map(str, silent))} of {ranks} died without an end "
            f"record ({how}){also}", error_type=f"{__name__}.RankDied")
    if failed:
        return _failure(failed[0])
    reported = torchrun_failures(folder / LOG)
    return RankFailed(f"torchrun exited {returncode} and no rank recorded a failure: "
                      f"{'; '.join(f'rank {r}: {t}' for r, t in sorted(reported.items())) or tail(folder / LOG)}")


def _failure(end: dict[str, Any]) -> RankFailed:
    return RankFailed(f"rank {end.get('rank')} failed: {end.get('error') or end.get('line') or 'no traceback'}",
                      outcome=end.get("failure") or states.OUTCOME_ERROR, error_type=end.get("error_type"))


_SUMMARY = re.compile(r"^Failures:\n(.*?)^={10,}", re.S | re.M)
_ENTRY = re.compile(r"^\[\d+\]:\n((?:^ +\S.*\n?)+)", re.M)
_FIELD = re.compile(r"^\s*(rank|exitcode|traceback)\s*:\s*(.*?)\s*$", re.M)


def torchrun_failures(log_path: Path) -> dict[int, str]:
    """rank -> how it failed (exit code, signal), from the summary torchrun prints when ranks fail."""
    found = _SUMMARY.findall(tail(log_path, 20000))
    out: dict[int, str] = {}
    for entry in _ENTRY.findall(found[-1]) if found else []:
        fields = dict(_FIELD.findall(entry))
        rank = re.match(r"\d+", fields.get("rank", ""))
        if rank:
            text = f"exit code {fields.get('exitcode', '?')}; {fields.get('traceback', '')}"
            out[int(rank.group())] = " ".join(text.split()).strip("; ")
    return out


def tail(path: Path, chars: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - chars))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


# --- torchrun, made to die with the worker ------------------------------------------


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies (a SIGKILLed worker leaves no
    torchrun behind, a dead torchrun no rank). Elsewhere a no-op."""
    if sys.platform != "linux":
        return
    import ctypes

    parent = os.getppid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the wish was made
        os.kill(os.getpid(), signal.SIGKILL)


def agent(argv: list[str]) -> None:
    """torchrun (``torch.distributed.run``) with ``argv``, dying with the worker. Slurm sends
    ``USR2`` (the time limit is near) to every process of the job: torchrun would die of it, so
    it ignores it; the ranks handle it (:mod:`jobs.rank`) and the worker relays it as a stop."""
    die_with_parent()
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    from torch.distributed import run

    run.main(argv)


if __name__ == "__main__":
    if sys.argv[1:2] != ["agent"]:
        raise SystemExit("usage: python -m jobs.ranks agent TORCHRUN-ARGUMENTS")
    agent(sys.argv[2:])
