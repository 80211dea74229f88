"""A job's run folder on disk: named by the cell, never by a row number alone.

    <runs dir>/<grid>-<database id[:8]>/job-<id>-<spec hash[:10]>/
        run.json                      which database, grid, job and spec this folder belongs to
        checkpoints/step-<n>-a<k>/    sealed checkpoints (jobs.checkpoints)
        attempts/a<k>/                attempt k's own scratch (Trainer's output dir) and its
            attempt.jsonl             marker: which process ran attempt k, when, and when each
                                      of its fenced writes was confirmed
            output.log                everything attempt k printed: stdout, stderr and Python
                                      logging (``gridlab logs JOB``)

Job ids restart at 1 in every new database (and in a dropped and recreated one), so the folder
carries the database's own id (``gridlab_meta.database_id``, minted with the schema) and the
cell's spec hash. ``run.json`` says whose folder it is; a folder whose ``run.json`` names
another run is not used (a warning, and the job starts in a fresh folder beside it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: gridlab's packages: their modules log as ``logging.getLogger(__name__)``, under these names.
PACKAGES = ("db", "jobs", "slurm", "harness", "dashboards")

MANIFEST = "run.json"
MARKER = "attempt.jsonl"
OUTPUT = "output.log"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe short form of a grid name (markup, slashes and spaces removed)."""
    cleaned = _UNSAFE.sub("_", text).strip("._") or "grid"
    return cleaned[:limit]


def path_for(runs_dir: Path, *, database_id: str, grid: str, job_id: int, spec_hash: str) -> Path:
    """Where the job's run folder is (made or not)."""
    return Path(runs_dir) / f"{slug(grid)}-{database_id[:8]}" / f"job-{job_id}-{spec_hash[:10]}"


def run_dir(runs_dir: Path, *, database_id: str, grid: str, job_id: int, spec_hash: str) -> Path:
    """The job's run folder, made if needed, with its manifest checked (see the module)."""
    identity = {"database_id": database_id, "grid": grid, "job_id": job_id, "spec_hash": spec_hash}
    path = path_for(runs_dir, database_id=database_id, grid=grid, job_id=job_id, spec_hash=spec_hash)
    found = _read(path / MANIFEST)
    if found is not None and found != identity:
        other = path
        path = path.with_name(path.name + f"-{database_id[8:16]}")
        log.warning("run folder %s belongs to another run (%s); using %s", other, _describe(found), path)
        found = _read(path / MANIFEST)
        if found is not None and found != identity:
            raise RuntimeError(f"run folders {other} and {path} both belong to other runs; move them away")
    path.mkdir(parents=True, exist_ok=True)
    if found is None:
        tmp = path / f".{MANIFEST}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(identity, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path / MANIFEST)
    return path


def attempt_dir(run: Path, attempt: int) -> Path:
    path = run / "attempts" / f"a{attempt}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def captured_output(path: Path, *, redirect: bool = True) -> Iterator[None]:
    """Send the process's stdout and stderr (file descriptors 1 and 2: Python's prints, C
    libraries' output and every logging handler that writes to them) to ``path`` for the
    duration, appending; with ``redirect=False`` (a job run in the foreground) only Python
    logging is copied there, and the terminal keeps everything. A worker runs one attempt at
    a time per process, so the descriptors are the attempt's own while it runs. gridlab's own
    loggers speak at INFO while it runs (what the attempt resumed from, how it ended, the
    traceback of a failure), whatever the terminal's level."""
    ours = [logging.getLogger(name) for name in PACKAGES]
    levels = [logger.level for logger in ours]
    for logger in ours:
        logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
    try:
        if redirect:
            with _redirected(path):
                yield
        else:
            handler = logging.FileHandler(path, encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            for logger in ours:
                logger.addHandler(handler)
            try:
                yield
            finally:
                for logger in ours:
                    logger.removeHandler(handler)
                handler.close()
    finally:
        for logger, level in zip(ours, levels):
            logger.setLevel(level)


@contextlib.contextmanager
def _redirected(path: Path) -> Iterator[None]:
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


class Marker:
    """Attempt k's record outside the database: one JSON line per event (``start``, each
    confirmed fenced write, ``end``) with the process and the wall clock. The fault suite
    reads these to see a double run the database cannot show (a zombie writes no events).

    A confirmed write's ``t`` is when that write *began*, passed in by its caller: a lower
    bound of its commit. The note itself comes after the commit, and a process stopped in
    between (SIGSTOP, a swapped-out machine) would otherwise stamp a write made under the lease
    with the time it woke, after its successor started. ``start`` is stamped after the claim
    committed, an upper bound. So a fenced run always shows attempt k's last ``t`` before
    attempt k+1's ``start``; a write that began after it and was still confirmed is a real
    double run."""

    def __init__(self, path: Path, *, attempt: int, owner: str) -> None:
        self.path = path
        self.base = {"attempt": attempt, "owner": owner, "pid": os.getpid()}

    def note(self, event: str, *, t: float | None = None, **extra: Any) -> None:
        """Append ``event``; ``t``: when the write it confirms began (``time.time()``), or now."""
        line = json.dumps({**self.base, "event": event, "t": time.time() if t is None else t, **extra})
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError as exc:  # a full disk must not fail the job over its marker
            log.warning("could not write %s: %s", self.path, exc)


def follow(path: Path, running=None, *, poll_s: float = 0.5) -> Iterator[str]:
    """The text of ``path``; with ``running`` (a callable), then what is appended to it while
    ``running()`` stays true (and what came in just before it turned false)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        while True:
            chunk = f.read()
            if chunk:
                yield chunk
            if running is None:
                return
            if not running():
                rest = f.read()
                if rest:
                    yield rest
                return
            time.sleep(poll_s)


def read_markers(runs_dir: Path) -> dict[Path, list[dict[str, Any]]]:
    """Every attempt marker under ``runs_dir``: run folder -> its lines, in file order."""
    out: dict[Path, list[dict[str, Any]]] = {}
    for marker in Path(runs_dir).glob(f"*/*/attempts/a*/{MARKER}"):
        run = marker.parents[2]
        lines = [json.loads(line) for line in marker.read_text(encoding="utf-8").splitlines() if line.strip()]
        out.setdefault(run, []).extend(lines)
    return out


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _describe(found: dict[str, Any]) -> str:
    return ", ".join(f"{k} {found.get(k)!r}" for k in ("database_id", "grid", "job_id", "spec_hash"))
