"""Sealed checkpoints (jobs.checkpoints): verified against their run, fallback, fenced pruning."""

from __future__ import annotations

import pytest

from jobs import checkpoints

pytestmark = pytest.mark.unit

ME = checkpoints.Identity(database_id="d" * 32, job_id=1, spec_hash="h" * 64)


def _checkpoint(run, step: int, attempt: int = 1, *, identity=ME, sealed: bool = True):
    staging = run / "attempts" / f"a{attempt}" / f"checkpoint-{step}"
    staging.mkdir(parents=True)
    (staging / "model.safetensors").write_bytes(b"w" * 64 + bytes([step % 256]))
    (staging / "optimizer.pt").write_bytes(b"o" * 32)
    if not sealed:
        target = run / checkpoints.FOLDER / checkpoints.name(step, attempt)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(target)
        return target
    checkpoints.seal(staging, step=step, attempt=attempt, identity=identity)
    return checkpoints.adopt(staging, run, step=step, attempt=attempt)


def test_a_sealed_checkpoint_of_this_run_verifies(tmp_path):
    path = _checkpoint(tmp_path, 8)
    assert path.name == "step-00000008-a1" and path.parent.name == checkpoints.FOLDER
    assert checkpoints.verify(path, ME, step=8) is None
    assert "step 8" in checkpoints.verify(path, ME, step=12)


@pytest.mark.parametrize("other", [
    checkpoints.Identity(database_id="e" * 32, job_id=1, spec_hash="h" * 64),  # job 1 of another database
    checkpoints.Identity(database_id="d" * 32, job_id=1, spec_hash="g" * 64),  # another cell
    checkpoints.Identity(database_id="d" * 32, job_id=2, spec_hash="h" * 64),
])
def test_a_checkpoint_of_another_run_is_refused(tmp_path, other):
    path = _checkpoint(tmp_path, 8, identity=other)
    problem = checkpoints.verify(path, ME)
    assert problem is not None and problem.startswith("belongs to another run")


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "delete a file", "garble the seal", "no seal"])
def test_a_damaged_checkpoint_fails_verification_and_falls_back(tmp_path, damage):
    previous = _checkpoint(tmp_path, 4)
    newest = _checkpoint(tmp_path, 8)
    weights = newest / "model.safetensors"
    if damage == "flip a byte":
        data = bytearray(weights.read_bytes())
        data[3] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:10])
    elif damage == "delete a file":
        (newest / "optimizer.pt").unlink()
    elif damage == "garble the seal":
        (newest / checkpoints.SEAL).write_text("{not json")
    else:
        (newest / checkpoints.SEAL).unlink()
    assert checkpoints.verify(newest, ME, step=8) is not None
    assert checkpoints.fallback(tmp_path, ME, below_step=8, skip=newest) == (previous, 4)


def test_no_usable_checkpoint_means_a_fresh_start(tmp_path):
    _checkpoint(tmp_path, 4, sealed=False)
    assert checkpoints.fallback(tmp_path, ME, below_step=None) is None
    assert checkpoints.fallback(tmp_path / "missing", ME, below_step=None) is None


def test_prune_keeps_the_recorded_one_and_one_fallback_and_never_a_later_attempts(tmp_path):
    for step in (2, 4, 6):
        _checkpoint(tmp_path, step, attempt=1)
    later = _checkpoint(tmp_path, 10, attempt=3)  # a later attempt's (the pruner is a zombie of attempt 2)
    keep = _checkpoint(tmp_path, 8, attempt=2)
    removed = checkpoints.prune(tmp_path, keep=keep, keep_step=8, attempt=2)
    names = sorted(p.name for _, _, p in checkpoints.sealed(tmp_path))
    assert names == ["step-00000006-a1", "step-00000008-a2", "step-00000010-a3"]
    assert later.exists() and sorted(p.name for p in removed) == ["step-00000002-a1", "step-00000004-a1"]
