"""Checkpoints on disk, sealed and fenced: only what the database recorded is ever loaded.

A checkpoint is a directory. An attempt writes it wherever it likes inside its own attempt
folder (Trainer's ``checkpoint-<step>/``, or any files), then hands it to
:meth:`jobs.context.JobContext.checkpoint`, which, in this order:

1. stores the metrics logged so far, checking the lease even when there are none;
2. :func:`seal` it: every file flushed to disk, and ``gridlab-seal.json`` written (under a
   temporary name of this attempt's, renamed into place) with each file's size and sha256 and
   the run's identity (database id, job id, spec hash, attempt, step);
3. moves it to ``checkpoints/step-<step>-a<attempt>/`` in the run folder (a name no other
   attempt uses, so a zombie attempt can never overwrite a live one's files);
4. records that path and step on the job, fenced by the lease; if the lease is gone, the
   moved directory is deleted and :class:`jobs.errors.LeaseLost` raised;
5. :func:`prune`: after checking the lease again, remove the attempt's own older checkpoints.

A later attempt resumes from the checkpoint the database recorded, and only if :func:`verify`
finds it complete (every file as sealed) and its identity the job's; otherwise it falls back
to the newest older sealed checkpoint of the same run, and failing that starts fresh.
Nothing here unpickles: experiments load their own files (safetensors, ``torch.load`` with
``weights_only=True``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SEAL = "gridlab-seal.json"
FOLDER = "checkpoints"
_NAME = re.compile(r"^step-(\d+)-a(\d+)$")


@dataclass(frozen=True)
class Identity:
    """What a checkpoint must belong to, to be loaded: this database's job with this spec."""

    database_id: str
    job_id: int
    spec_hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"database_id": self.database_id, "job_id": self.job_id, "spec_hash": self.spec_hash}


def name(step: int, attempt: int) -> str:
    return f"step-{step:08d}-a{attempt}"


def parse(path: Path) -> tuple[int, int] | None:
    """(step, attempt) of a sealed checkpoint's directory name, or None."""
    m = _NAME.match(path.name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def seal(path: Path, *, step: int, attempt: int, identity: Identity) -> None:
    """Flush ``path``'s files and write its seal (atomically, under an attempt-own temp name)."""
    files = {}
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith((SEAL, f".{SEAL}"))):
        with open(file, "rb") as f:
            os.fsync(f.fileno())
            digest = _sha256(f)
        files[str(file.relative_to(path))] = [file.stat().st_size, digest]
    tmp = path / f".{SEAL}.a{attempt}.tmp"
    body = {"step": step, "attempt": attempt, **identity.as_dict(), "files": files}
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(body, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path / SEAL)
    _fsync_dir(path)


def read_seal(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / SEAL).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def verify(path: Path, identity: Identity, *, step: int | None = None) -> str | None:
    """None if ``path`` is a complete checkpoint of ``identity`` (at ``step``, if given);
    otherwise why not, in a few words."""
    seal_ = read_seal(path)
    if seal_ is None:
        return "not sealed (missing or unreadable seal)"
    mine = identity.as_dict()
    theirs = {k: seal_.get(k) for k in mine}
    if theirs != mine:
        wrong = ", ".join(f"{k} {theirs[k]!r} (this job's is {mine[k]!r})" for k in mine if theirs[k] != mine[k])
        return f"belongs to another run: {wrong}"
    if step is not None and seal_.get("step") != step:
        return f"sealed at step {seal_.get('step')}, the database recorded step {step}"
    try:
        for rel, (size, digest) in seal_["files"].items():
            file = path / rel
            if file.stat().st_size != size:
                return f"{rel} has {file.stat().st_size} bytes, sealed with {size}"
            with open(file, "rb") as f:
                if _sha256(f) != digest:
                    return f"{rel} does not match its seal (corrupted)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    return None


def adopt(path: Path, run_dir: Path, *, step: int, attempt: int) -> Path:
    """Move a sealed checkpoint into the run's checkpoints folder under its attempt's own name."""
    target = run_dir / FOLDER / name(step, attempt)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # this attempt sealed the same step twice (a retried record)
        shutil.rmtree(target)
    os.replace(path, target)
    _fsync_dir(target.parent)
    return target


def sealed(run_dir: Path) -> list[tuple[int, int, Path]]:
    """(step, attempt, path) of the run's adopted checkpoints, newest step first."""
    root = run_dir / FOLDER
    if not root.is_dir():
        return []
    found = [(*parsed, p) for p in root.iterdir() if p.is_dir() and (parsed := parse(p)) is not None]
    return sorted(found, key=lambda t: (t[0], t[1]), reverse=True)


def fallback(run_dir: Path, identity: Identity, *, below_step: int | None, skip: Path | None = None) -> tuple[Path, int] | None:
    """The newest verified checkpoint of this run below ``below_step`` (any, if None)."""
    for step, _attempt, path in sealed(run_dir):
        if below_step is not None and step >= below_step or (skip is not None and path == skip):
            continue
        problem = verify(path, identity, step=step)
        if problem is None:
            return path, step
        log.warning("checkpoint %s not used: %s", path, problem)
    return None


def prune(run_dir: Path, *, keep: Path, keep_step: int, attempt: int) -> list[Path]:
    """After ``keep`` (step ``keep_step``) was recorded by ``attempt``: remove the run's other
    checkpoints of this attempt and earlier ones, except the newest one below ``keep_step``
    (the fallback if ``keep`` is ever found corrupted). Checkpoints of later attempts are never
    touched: an attempt that lost its lease cannot remove what its successor wrote."""
    removed: list[Path] = []
    fallback_kept = False
    for step, owner, path in sealed(run_dir):
        if owner > attempt or path == keep:
            continue
        if step < keep_step and not fallback_kept and (path / SEAL).is_file():
            fallback_kept = True
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _sha256(f) -> str:
    h = hashlib.sha256()
    while chunk := f.read(1 << 20):
        h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
