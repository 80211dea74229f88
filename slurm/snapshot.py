"""Pinned code: ``gridlab launch`` copies the source tree, and its workers import the copy.

Without a pin, a worker imports whatever the checkout holds when it starts (or when it
first imports an experiment module), so an edit made after ``launch`` changes cells
that were already submitted. A snapshot is a copy of the checkout's source files
(those jobs.provenance hashes: with git, the tracked and untracked-but-not-ignored
ones; uncommitted changes included) under ``<runs>/code/<id>/``, read-only, with a
manifest that records the checkout's git commit, dirty flag and diff (the diff itself in
``gridlab-snapshot.diff``). Snapshots are keyed by content: launching the same tree
twice reuses one.

The copy is hashed after it is written; if the checkout changed while it was being
copied (the hash differs from the checkout's), the copy is made again.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from db.errors import GridlabError
from jobs import provenance

SNAPSHOTS = "code"
ATTEMPTS = 3


@dataclass(frozen=True)
class Snapshot:
    path: Path
    code: provenance.Code
    reused: bool  # an identical snapshot existed already
    #: a note for the user (e.g. the runner's package is outside the snapshot), or None
    note: str | None = None


def make(runs_dir: str | Path, *, root: Path | None = None, runner: str | None = None) -> Snapshot:
    """A snapshot of ``root`` (default: this gridlab's source folder) under ``runs_dir``."""
    root = (root or provenance.code_root()).resolve()
    note = _runner_note(runner, root)
    if (root / provenance.SNAPSHOT_MANIFEST).is_file():  # launched from a snapshot: it is pinned already
        return Snapshot(path=root, code=provenance.capture_code(root), reused=True, note=note)
    base = Path(runs_dir).resolve() / SNAPSHOTS
    base.mkdir(parents=True, exist_ok=True)
    for _ in range(ATTEMPTS):
        code, files = provenance.capture_code_and_files(root, exclude=(Path(runs_dir).resolve(),))
        final = base / code.fingerprint[:16]
        if _intact(final, code):
            return Snapshot(path=final, code=code, reused=True, note=note)
        tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=base))
        try:
            for rel in files:
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / rel, target)
            if provenance.hash_files(tmp, files) != code.files_hash:
                continue  # the checkout changed while it was copied: capture and copy again
            _write_manifest(tmp, root, code, files)
            for rel in files:
                os.chmod(tmp / rel, 0o444)  # a snapshot is not for editing
            try:
                os.rename(tmp, final)
            except OSError:  # another launch made the same snapshot meanwhile
                if not _intact(final, code):
                    raise
                return Snapshot(path=final, code=code, reused=True, note=note)
            return Snapshot(path=final, code=code, reused=False, note=note)
        finally:
            if tmp.exists():
                _remove(tmp)
    raise GridlabError(f"the source tree under {root} kept changing while gridlab copied it ({ATTEMPTS} tries)",
                       "launch again once edits are saved, or pass --no-pin to run the live tree")


def planned(runs_dir: str | Path, *, root: Path | None = None) -> Path:
    """Where :func:`make` would pin the tree as it is now (``launch --dry-run`` copies nothing)."""
    root = root or provenance.code_root()
    if (root / provenance.SNAPSHOT_MANIFEST).is_file():
        return root
    code = provenance.capture_code(root, exclude=(Path(runs_dir).resolve(),))
    return Path(runs_dir).resolve() / SNAPSHOTS / code.fingerprint[:16]


def _write_manifest(folder: Path, root: Path, code: provenance.Code, files: list[str]) -> None:
    if code.diff is not None:
        (folder / provenance.SNAPSHOT_DIFF).write_text(code.diff, encoding="utf-8")
    manifest = {
        "format": 1, "made_from": str(root), "made_at": time.time(), "fingerprint": code.fingerprint,
        "files_hash": code.files_hash, "git_commit": code.git_commit, "git_dirty": code.git_dirty,
        "diff_hash": code.diff_hash, "files": files,
    }
    (folder / provenance.SNAPSHOT_MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def _intact(folder: Path, code: provenance.Code) -> bool:
    """An existing snapshot of exactly this code, unedited."""
    try:
        manifest = json.loads((folder / provenance.SNAPSHOT_MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("fingerprint") != code.fingerprint:
        return False
    return provenance.hash_files(folder, [f for f in manifest.get("files", []) if isinstance(f, str)]) == code.files_hash


def _remove(folder: Path) -> None:
    def writable(func, path, _exc):
        os.chmod(path, 0o755)
        func(path)

    shutil.rmtree(folder, onerror=writable)


def _runner_note(runner: str | None, root: Path) -> str | None:
    """Say so when the runner's package is neither in the snapshot nor installed."""
    if not runner:
        return None
    top = runner.partition(":")[0].split(".")[0]
    try:
        spec = importlib.util.find_spec(top)  # a top-level name: found, not imported
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec is not None else None
    if spec is not None and spec.submodule_search_locations:
        origin = next(iter(spec.submodule_search_locations), origin)
    if not origin or origin in ("built-in", "frozen"):
        return None
    where = Path(origin).resolve()
    installed = [Path(p).resolve() for p in {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")}]
    if _under(where, root) or any(_under(where, p) for p in installed):
        return None
    return (f"the runner's package {top!r} lives outside the pinned tree ({where}), so edits to it still reach "
            "workers that import it later; keep it in this checkout to pin it too")


def _under(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def pythonpath(snapshot: Path | None) -> list[str]:
    """The PYTHONPATH a launch's workers get: the snapshot (or, unpinned, this gridlab's
    live source folder) first, then the caller's own entries, less the live folder when
    pinned (it would hand out live modules the snapshot lacks)."""
    live = provenance.code_root()
    first = snapshot if snapshot is not None else live
    theirs = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    paths = [str(first)] + [str(Path(p).resolve()) for p in theirs
                            if snapshot is None or Path(p).resolve() != live]
    return list(dict.fromkeys(str(Path(p).resolve()) for p in paths))
