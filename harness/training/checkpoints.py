"""Trainer checkpoint directories made atomic: a checkpoint counts only once it is sealed.

transformers' Trainer writes ``checkpoint-<step>/`` file by file, so a crash mid-save leaves a
directory that looks like a checkpoint and is not one. After the Trainer has written one,
:func:`seal` flushes every file to disk and writes ``gridlab-complete.json`` (a manifest of each
file's size and sha256) under a temporary name, renamed into place. :func:`newest_complete`
picks the newest directory whose manifest matches its files, so a torn or corrupted newest
checkpoint falls back to the one before it. Trainer's own loading is safe
(safetensors, ``torch.load(weights_only=True)``); nothing here unpickles.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger("gridlab.checkpoints")

MANIFEST = "gridlab-complete.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")
KEEP = 2  # sealed checkpoints kept: the newest, and one to fall back to


def step_of(path: Path) -> int | None:
    m = _NAME.match(path.name)
    return int(m.group(1)) if m else None


def seal(path: Path, step: int) -> Path:
    """Flush ``path``'s files and mark it complete; returns ``path``."""
    files = {}
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST):
        with open(file, "rb") as f:
            os.fsync(f.fileno())
            digest = _sha256(f)
        files[str(file.relative_to(path))] = [file.stat().st_size, digest]
    tmp = path / f".{MANIFEST}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"step": step, "files": files}, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path / MANIFEST)
    _fsync_dir(path)
    return path


def is_complete(path: Path) -> bool:
    """True when ``path`` is sealed and every file matches its manifest."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        for name, (size, digest) in manifest["files"].items():
            file = path / name
            if file.stat().st_size != size:
                return False
            with open(file, "rb") as f:
                if _sha256(f) != digest:
                    return False
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def candidates(root: Path) -> list[Path]:
    """Checkpoint directories under ``root``, newest first."""
    if not root.is_dir():
        return []
    found = [(s, p) for p in root.iterdir() if p.is_dir() and (s := step_of(p)) is not None]
    return [p for _, p in sorted(found, reverse=True)]


def newest_complete(root: Path, recorded: str | None = None) -> Path | None:
    """The newest complete checkpoint under ``root`` (or the job's ``recorded`` one, if it
    lives elsewhere); newer incomplete or corrupted ones are removed so a resumed run
    rewrites them from scratch."""
    paths = candidates(root)
    if recorded and Path(recorded).is_dir() and Path(recorded).resolve().parent != root.resolve():
        paths.append(Path(recorded))
    for path in paths:
        if is_complete(path):
            return path
        log.warning("checkpoint %s is incomplete or corrupted; removing it and trying an older one", path)
        if path.parent == root:
            shutil.rmtree(path, ignore_errors=True)
    return None


def prune(root: Path, keep: int = KEEP) -> None:
    """Keep the ``keep`` newest sealed checkpoints; drop older ones, sealed or not."""
    sealed = 0
    for path in candidates(root):
        if sealed >= keep:
            shutil.rmtree(path, ignore_errors=True)
        elif (path / MANIFEST).is_file():
            sealed += 1


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
