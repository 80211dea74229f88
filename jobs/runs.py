"""A job's run folder on disk: named by the cell, never by a row number alone.

    <runs dir>/<grid>-<database id[:8]>/job-<id>-<spec hash[:10]>/
        run.json                      which database, grid, job and spec this folder belongs to
        checkpoints/step-<n>-a<k>/    sealed checkpoints (jobs.checkpoints)
        attempts/a<k>/                attempt k's own scratch (Trainer's output dir) and its
            attempt.jsonl             marker: which process ran attempt k, when, and when each
                                      of its fenced writes was confirmed

Job ids restart at 1 in every new database (and in a dropped and recreated one), so the folder
carries the database's own id (``gridlab_meta.database_id``, minted with the schema) and the
cell's spec hash. ``run.json`` says whose folder it is; a folder whose ``run.json`` names
another run is not used (a warning, and the job starts in a fresh folder beside it).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("gridlab.jobs.runs")

MANIFEST = "run.json"
MARKER = "attempt.jsonl"
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


class Marker:
    """Attempt k's record outside the database: one JSON line per event (``start``, each
    confirmed fenced ``write``, ``end``) with the process and the wall clock. The fault suite
    reads these to see a double run the database cannot show (a zombie writes no events)."""

    def __init__(self, path: Path, *, attempt: int, owner: str) -> None:
        self.path = path
        self.base = {"attempt": attempt, "owner": owner, "pid": os.getpid()}

    def note(self, event: str, **extra: Any) -> None:
        line = json.dumps({**self.base, "event": event, "t": time.time(), **extra})
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError as exc:  # a full disk must not fail the job over its marker
            log.warning("could not write %s: %s", self.path, exc)


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
