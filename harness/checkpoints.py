"""Checkpoints on disk: written atomically, loaded without unpickling code.

A checkpoint is one ``ckpt-<step>.pt`` file in the job's run folder, written to a
temporary name, flushed to disk and renamed, so a crash or a full disk mid-write
never leaves a half checkpoint under the real name. Loading uses
``torch.load(weights_only=True)``: tensors and plain containers only. If the newest
checkpoint is unreadable, the one before it is used.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("gridlab.checkpoints")

_NAME = re.compile(r"^ckpt-(\d+)\.pt$")
KEEP = 2


def save(state: dict[str, Any], run_dir: Path, step: int) -> Path:
    import torch

    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / f"ckpt-{step:08d}.pt"
    tmp = run_dir / f".ckpt-{step:08d}.pt.tmp"
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _prune(run_dir)
    return final


def _prune(run_dir: Path) -> None:
    for old in available(run_dir)[:-KEEP]:
        old.unlink(missing_ok=True)


def available(run_dir: Path) -> list[Path]:
    """Checkpoints in ``run_dir``, oldest first."""
    if not run_dir.exists():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def load_latest(run_dir: Path) -> tuple[dict[str, Any], Path] | None:
    """The newest readable checkpoint, or None. (Checkpoints are written only after the
    metrics up to them are stored: see ``JobContext.checkpoint``.)"""
    import torch

    for path in reversed(available(run_dir)):
        try:
            return torch.load(path, map_location="cpu", weights_only=True), path
        except Exception as exc:  # a torn or corrupted file: fall back to an older one
            log.warning("checkpoint %s is unreadable (%s); trying an older one", path, exc)
    return None
