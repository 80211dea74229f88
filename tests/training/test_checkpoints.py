"""Sealed checkpoint directories: a torn or corrupted newest one falls back to the one before."""

from __future__ import annotations

import pytest

from harness.training import checkpoints

pytestmark = pytest.mark.unit


def _checkpoint(root, step: int, *, sealed: bool = True):
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"w" * 64 + bytes([step % 256]))
    (path / "optimizer.pt").write_bytes(b"o" * 32)
    if sealed:
        checkpoints.seal(path, step)
    return path


def test_newest_sealed_wins_and_torn_ones_are_removed(tmp_path):
    _checkpoint(tmp_path, 4)
    good = _checkpoint(tmp_path, 8)
    torn = _checkpoint(tmp_path, 12, sealed=False)
    assert checkpoints.newest_complete(tmp_path) == good
    assert not torn.exists()


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "delete a file", "garble the manifest"])
def test_corrupted_newest_falls_back_to_previous(tmp_path, damage):
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
    else:
        (newest / checkpoints.MANIFEST).write_text("{not json")
    assert checkpoints.newest_complete(tmp_path) == previous


def test_nothing_usable_means_a_fresh_start(tmp_path):
    _checkpoint(tmp_path, 4, sealed=False)
    assert checkpoints.newest_complete(tmp_path) is None
    assert checkpoints.newest_complete(tmp_path / "missing") is None


def test_prune_keeps_two_sealed_and_anything_newer(tmp_path):
    for step in (2, 4, 6):
        _checkpoint(tmp_path, step)
    in_progress = _checkpoint(tmp_path, 8, sealed=False)
    checkpoints.prune(tmp_path)
    assert [p.name for p in checkpoints.candidates(tmp_path)] == ["checkpoint-8", "checkpoint-6", "checkpoint-4"]
    assert in_progress.exists()
