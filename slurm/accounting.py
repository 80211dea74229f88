"""What Slurm says about gridlab's worker jobs: one batched ``sacct`` per question.

Never one ``sacct`` per job (a known way to flood slurmctld): :func:`runs` asks about
every job at once, with ``-D`` so that each start of a requeued job is its own row
(row *k* is the job's *k*-th start, ``SLURM_RESTART_COUNT=k``). A start's state from
sacct is final once it is none of :data:`ACTIVE`, or once a later start of the job exists.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, replace

from jobs import states

#: States in which the job's processes may still run (or will run).
ACTIVE = frozenset({"PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "RESIZING",
                    "SUSPENDED", "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "STOPPED"})

#: How an attempt ended, from the Slurm state of the run it was in.
_OUTCOME = {
    "PREEMPTED": states.OUTCOME_PREEMPTED,
    "REQUEUED": states.OUTCOME_PREEMPTED,  # someone (scontrol requeue, preemption) took the node back
    "TIMEOUT": states.OUTCOME_TIMEOUT,
    "DEADLINE": states.OUTCOME_TIMEOUT,
    "NODE_FAIL": states.OUTCOME_NODE_FAIL,
    "BOOT_FAIL": states.OUTCOME_NODE_FAIL,
    "OUT_OF_MEMORY": states.OUTCOME_OOM,
    "CANCELLED": states.OUTCOME_CANCELLED,
}


def outcome_of(state: str) -> str:
    """The attempt outcome for a run that ended in Slurm ``state`` (error if unknown)."""
    return _OUTCOME.get(normalise(state), states.OUTCOME_ERROR)


def normalise(state: str) -> str:
    """``CANCELLED by 0`` -> ``CANCELLED``; ``RUNNING+`` -> ``RUNNING``."""
    return state.split()[0].rstrip("+") if state.strip() else "UNKNOWN"


@dataclass(frozen=True)
class Run:
    """One start of a Slurm job (one row of ``sacct -D -X``)."""

    job_id: str  # "12" or, for an array task, "12_3"
    state: str  # normalised
    node: str | None
    end: str | None  # ISO time, None while it runs
    reason: str | None
    #: a later start of the job exists, so this one is over whatever its state says (sacct -D
    #: shows a requeued job's earlier start as REQUEUED, a word that also means "queued again")
    superseded: bool = False

    @property
    def active(self) -> bool:
        return self.state in ACTIVE and not self.superseded


class SlurmUnavailable(RuntimeError):
    """sacct/squeue failed (no Slurm here, or slurmdbd/slurmctld down)."""


_ARRAY = re.compile(r"^(?P<base>\d+)_\[(?P<ranges>[\d,\-]+)(%\d+)?\]$")


def _expand(job_id: str) -> list[str]:
    """``12_[0-3%2]`` (pending array tasks not started yet) -> 12_0 ... 12_3."""
    m = _ARRAY.match(job_id)
    if not m:
        return [job_id]
    out = []
    for part in m.group("ranges").split(","):
        lo, _, hi = part.partition("-")
        out.extend(f"{m.group('base')}_{i}" for i in range(int(lo), int(hi or lo) + 1))
    return out


def runs(job_ids: Iterable[str], *, timeout_s: float = 30.0) -> dict[str, list[Run]]:
    """Every start of the given jobs (array tasks by ``base_index``), oldest first; ONE
    sacct call for all of them. Jobs sacct does not know yet are left out."""
    bases = sorted({str(j).split("_")[0] for j in job_ids})
    if not bases:
        return {}
    cmd = ["sacct", "-D", "-X", "-n", "-P", "--format=JobID,State,NodeList,Start,End,Reason", "-j", ",".join(bases)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmUnavailable(f"sacct failed: {exc}") from None
    if proc.returncode != 0:
        raise SlurmUnavailable(f"sacct failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return parse_runs(proc.stdout)


def parse_runs(text: str) -> dict[str, list[Run]]:
    found: dict[str, list[tuple[str, Run]]] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 6:
            continue
        job_id, state, node, start, end, reason = parts[:6]
        for jid in _expand(job_id.strip()):
            run = Run(
                job_id=jid,
                state=normalise(state),
                node=node if node and node != "None assigned" else None,
                end=end if end not in ("", "Unknown", "None") else None,
                reason=reason if reason not in ("", "None") else None,
            )
            started = start if start not in ("", "Unknown", "None") else "~"  # not started: last
            found.setdefault(jid, []).append((started, run))
    out = {}
    for jid, rows in found.items():
        ordered = [r for _, r in sorted(rows, key=lambda x: x[0])]
        out[jid] = [replace(r, superseded=True) for r in ordered[:-1]] + ordered[-1:]
    return out


def current(all_runs: dict[str, list[Run]]) -> dict[str, Run]:
    """Each job's latest run: what ``sacct`` without ``-D`` would say."""
    return {jid: rows[-1] for jid, rows in all_runs.items() if rows}
