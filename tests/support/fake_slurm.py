"""A fake Slurm at the subprocess boundary: ``sbatch``, ``sacct``, ``squeue``, ``scancel`` and
``scontrol`` executables put first on PATH, answering from a JSON file the test sets (after submitit's
``mocked_slurm`` in its ``tests/test_slurm.py``, which answers sbatch/sacct and lets a test
set a job's state).

gridlab's code runs unchanged: it calls the commands as it would on a cluster, and the test
decides what Slurm says. Every call is recorded (:attr:`FakeSlurm.calls`), so a test can check
that one reconcile pass asks sacct once. The same contract tests run on the real one-node
cluster too (tests/slurm/test_accounting_contract.py), so the fake cannot drift from what
sacct really prints without a test failing there.

What the fake prints, as sacct 22.05 does with ``-P``: one row per start with ``-D``
(the latest only without it), job steps (``ID.batch``) unless ``-X``, array tasks as
``base_index``, tasks that never started folded into ``base_[lo-hi]``, ``CANCELLED by UID``,
``None assigned`` for a pending job's node, ``Unknown`` for times not yet known. Jobs it does
not know are left out, as sacct leaves out jobs slurmdbd has not recorded yet. ``scontrol show
job|node -o`` prints one line of ``Key=Value`` (the job's restarts, run time and limit; the
node's state), ``scontrol requeue`` and ``scontrol update nodename=N state=S`` change them.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("sbatch", "sacct", "squeue", "scancel", "scontrol")
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "COMPLETING", "SUSPENDED"}
FIELDS = {"jobid", "state", "nodelist", "start", "end", "reason", "exitcode", "jobname"}


def _stamp(at: float | None) -> str:
    return "Unknown" if at is None else time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(at))


class FakeSlurm:
    """The fake cluster's state and the test's handles on it. ``install`` puts the commands
    on PATH (the ``fake_slurm`` fixture does it for a test)."""

    def __init__(self, root: Path, node: str = "fake1") -> None:
        self.root = root
        self.node = node
        self.bin = root / "bin"
        self.state_file = root / "slurm.json"
        self.bin.mkdir(parents=True, exist_ok=True)
        self._save({"next_id": 100, "jobs": {}, "nodes": {}, "calls": [], "sacct": {"raw": None, "exit": 0, "stderr": ""}})
        for command in COMMANDS:
            script = self.bin / command
            script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
                              "from tests.support.fake_slurm import main\n"
                              f"sys.exit(main({command!r}, sys.argv[1:], {str(self.state_file)!r}))\n")
            script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def install(self, monkeypatch) -> None:
        monkeypatch.setenv("PATH", f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}")

    # --- the state file -----------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text())

    def _save(self, state: dict[str, Any]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_file)

    @contextmanager
    def _state(self):
        state = self._load()
        yield state
        self._save(state)

    # --- what the test does -------------------------------------------------------------

    def submit(self, *, array: int | None = None, command: str = "true") -> str:
        """A job (or an array of ``array`` tasks) as sbatch would queue it: PENDING, never
        started. Returns its id (the array's base id)."""
        with self._state() as state:
            return _submit(state, array=array, command=command)

    def start(self, job_id: str, *, at: float | None = None, node: str | None = None) -> None:
        """The job's current start runs (PENDING -> RUNNING) on ``node``."""
        with self._state() as state:
            run = state["jobs"][job_id]["runs"][-1]
            run.update(state="RUNNING", node=node or self.node, start=time.time() if at is None else at, reason=None)

    def end(self, job_id: str, state_name: str, *, at: float | None = None, reason: str | None = None) -> None:
        """The job's current start ends in ``state_name`` (COMPLETED, FAILED, TIMEOUT,
        OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, ``CANCELLED by 0``, ...)."""
        with self._state() as state:
            _end(state["jobs"][job_id]["runs"][-1], state_name, time.time() if at is None else at, reason)

    def requeue(self, job_id: str, *, at: float | None = None, as_state: str = "REQUEUED") -> None:
        """Slurm takes the node back and queues the job again: its current start ends
        ``as_state`` and a new, pending start begins (sacct -D shows both)."""
        with self._state() as state:
            runs = state["jobs"][job_id]["runs"]
            _end(runs[-1], as_state, time.time() if at is None else at, None)
            runs.append(_pending())

    def run_all(self, *, at: float | None = None) -> None:
        """Every pending job starts and ends as its command says (``exit N``: FAILED unless
        N is 0, anything else: COMPLETED), as the real cluster does for a short --wrap job."""
        now = time.time() if at is None else at
        with self._state() as state:
            for job in state["jobs"].values():
                run = job["runs"][-1]
                if run["state"] != "PENDING" or job.get("held"):
                    continue
                run.update(state="RUNNING", node=self.node, start=now)
                m = re.fullmatch(r"\s*exit\s+(\d+)\s*", job["command"])
                _end(run, "FAILED" if m and int(m.group(1)) else "COMPLETED", now, None)

    def sacct_prints(self, raw: str | None = None, *, exit: int = 0, stderr: str = "") -> None:
        """sacct answers ``raw`` (whatever the query) and exits ``exit``; None: the state again."""
        with self._state() as state:
            state["sacct"] = {"raw": raw, "exit": exit, "stderr": stderr}

    def set_times(self, job_id: str, *, run_time: str, time_limit: str) -> None:
        """What ``scontrol show job`` prints as the job's RunTime and TimeLimit."""
        with self._state() as state:
            state["jobs"][job_id].update(run_time=run_time, time_limit=time_limit)

    def set_node(self, name: str, node_state: str) -> None:
        """What ``scontrol show node`` prints as the node's State (IDLE, MIXED, DOWN+DRAIN, ...)."""
        with self._state() as state:
            state["nodes"][name] = node_state

    def state_of(self, job_id: str) -> str:
        return self._load()["jobs"][job_id]["runs"][-1]["state"]

    @property
    def calls(self) -> list[list[str]]:
        """Every command run so far: [name, *arguments]."""
        return self._load()["calls"]


def _pending() -> dict[str, Any]:
    return {"state": "PENDING", "node": None, "start": None, "end": None, "reason": "None"}


def _end(run: dict[str, Any], state_name: str, at: float, reason: str | None) -> None:
    if run["start"] is None:
        run["start"] = at  # Slurm stamps a job that never ran with its end time
    run.update(state=state_name, end=at, reason=reason or "None")


def _submit(state: dict[str, Any], *, array: int | None, command: str, held: bool = False) -> str:
    base = str(state["next_id"])
    state["next_id"] += 1
    ids = [f"{base}_{i}" for i in range(array)] if array else [base]
    for jid in ids:
        state["jobs"][jid] = {"runs": [_pending()], "command": command, "held": held, "base": base}
    return base


# --- the commands -----------------------------------------------------------------------


def main(command: str, argv: list[str], state_file: str) -> int:
    fake = FakeSlurm.__new__(FakeSlurm)
    fake.state_file = Path(state_file)
    with fake._state() as state:
        state["calls"].append([command, *argv])
        return {"sbatch": _sbatch, "sacct": _sacct, "squeue": _squeue, "scancel": _scancel,
                "scontrol": _scontrol}[command](state, argv)


def _options(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """``--key=value``, ``--key value``, ``-k value`` and bare flags -> (options, positional)."""
    takes_value = {"-j", "--jobs", "-o", "--format", "--output", "-a", "--array", "--wrap", "-p", "--partition",
                   "-t", "--time", "-J", "--job-name", "-e", "--error", "--signal"}
    opts: dict[str, str] = {}
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg.startswith("--") and "=" in arg:
            key, _, value = arg.partition("=")
            opts[key] = value
        elif arg in takes_value:
            opts[arg] = next(args, "")
        elif arg.startswith("-"):
            opts[arg] = ""
        else:
            rest.append(arg)
    return opts, rest


def _sbatch(state: dict[str, Any], argv: list[str]) -> int:
    opts, rest = _options(argv)
    array = opts.get("--array") or opts.get("-a")
    count = None
    if array:
        m = re.fullmatch(r"0-(\d+)(%\d+)?", array)
        if not m:
            print(f"sbatch: error: fake sbatch takes --array=0-N only, got {array}", file=sys.stderr)
            return 1
        count = int(m.group(1)) + 1
    command = opts.get("--wrap") or (Path(rest[0]).read_text() if rest else "true")
    base = _submit(state, array=count, command=command, held="--hold" in opts or "-H" in opts)
    limit = opts.get("--time") or opts.get("-t")
    if limit:
        from slurm import durations

        secs = durations.seconds(limit) or 0
        for job in state["jobs"].values():
            if job["base"] == base:
                job["time_limit"] = f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
    print(base if "--parsable" in opts else f"Submitted batch job {base}")
    return 0


def _wanted(state: dict[str, Any], argv: list[str]) -> tuple[dict[str, str], list[str]]:
    opts, _ = _options(argv)
    asked = (opts.get("-j") or opts.get("--jobs") or "").split(",")
    bases = {a.split("_")[0] for a in asked if a}
    return opts, [jid for jid, job in state["jobs"].items() if job["base"] in bases or jid in asked]


def _sacct(state: dict[str, Any], argv: list[str]) -> int:
    fixed = state["sacct"]
    if fixed["raw"] is not None or fixed["exit"]:
        sys.stdout.write(fixed["raw"] or "")
        sys.stderr.write(fixed["stderr"])
        return fixed["exit"]
    opts, jids = _wanted(state, argv)
    fmt = (opts.get("--format") or opts.get("-o") or "JobID,State").lower().split(",")
    unknown = [f for f in fmt if f not in FIELDS]
    if unknown:
        print(f"sacct: error: Invalid field requested: \"{unknown[0]}\"", file=sys.stderr)
        return 1
    rows: list[tuple[str, dict[str, Any]]] = []
    folded: dict[str, list[int]] = {}
    for jid in jids:
        runs = state["jobs"][jid]["runs"]
        if "-D" not in opts and "--duplicates" not in opts:
            runs = runs[-1:]
        if "_" in jid and len(runs) == 1 and runs[0]["state"] == "PENDING" and runs[0]["start"] is None:
            base, index = jid.split("_")
            folded.setdefault(base, []).append(int(index))  # tasks not started: one row, base_[lo-hi]
            continue
        for run in runs:
            rows.append((jid, run))
            if "-X" not in opts and "--allocations" not in opts and run["state"] != "PENDING":
                rows.append((f"{jid}.batch", {**run, "reason": "None"}))
    for base, indices in folded.items():
        lo, hi = min(indices), max(indices)
        rows.append((f"{base}_[{lo}-{hi}]" if hi > lo else f"{base}_{lo}", _pending()))
    sep = "|" if "-P" in opts or "--parsable2" in opts else " "
    for jid, run in rows:
        values = {"jobid": jid, "state": run["state"], "nodelist": run["node"] or "None assigned",
                  "start": _stamp(run["start"]), "end": _stamp(run["end"]), "reason": run["reason"] or "None",
                  "exitcode": "0:0", "jobname": "wrap"}
        print(sep.join(values[f] for f in fmt))
    return 0


def _squeue(state: dict[str, Any], argv: list[str]) -> int:
    opts, jids = _wanted(state, argv)
    if "-j" not in opts and "--jobs" not in opts:
        jids = list(state["jobs"])
    for jid in jids:
        run = state["jobs"][jid]["runs"][-1]
        if run["state"] in ACTIVE:
            print(jid if (opts.get("-o") or "%i") == "%i" else f"{jid} {run['state']}")
    return 0


def _scancel(state: dict[str, Any], argv: list[str]) -> int:
    _, rest = _options(argv)
    now = time.time()
    for asked in rest:
        for jid, job in state["jobs"].items():
            if jid == asked or job["base"] == asked:
                run = job["runs"][-1]
                if run["state"] in ACTIVE:
                    _end(run, "CANCELLED by 0", now, None)
    return 0


def _scontrol(state: dict[str, Any], argv: list[str]) -> int:
    rest = [a for a in argv if a not in ("-o", "--oneliner")]
    if rest[:2] == ["show", "job"] and len(rest) == 3:
        job = state["jobs"].get(rest[2])  # by the id the job's SLURM_JOB_ID says
        if job is None:
            print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
            return 1
        run = job["runs"][-1]
        print(f"JobId={rest[2]} JobState={run['state'].split()[0]} Restarts={len(job['runs']) - 1} "
              f"RunTime={job.get('run_time', '00:00:00')} TimeLimit={job.get('time_limit', '01:00:00')}")
        return 0
    if rest[:2] == ["show", "node"] and len(rest) == 3:
        print(f"NodeName={rest[2]} State={state['nodes'].get(rest[2], 'IDLE')} Partitions=debug")
        return 0
    if rest[:1] == ["requeue"] and len(rest) == 2:
        runs = state["jobs"][rest[1]]["runs"]
        _end(runs[-1], "REQUEUED", time.time(), None)
        runs.append(_pending())
        return 0
    if rest[:1] == ["update"]:
        fields = dict(part.split("=", 1) for part in rest[1:] if "=" in part)
        state["nodes"][fields["nodename"]] = fields["state"].upper()
        return 0
    print(f"scontrol: error: the fake does not do {' '.join(argv)!r}", file=sys.stderr)
    return 1
