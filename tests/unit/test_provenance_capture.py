"""Capturing provenance: the code (git and not), snapshots, the environment, the machine."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
from pathlib import Path

import pytest

from jobs import provenance
from slurm import snapshot

pytestmark = pytest.mark.unit


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "loss.py").write_text("def loss(a):\n    return a\n")
    (root / "README.md").write_text("docs are not code\n")
    (root / ".gitignore").write_text("runs/\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first")
    return root


def test_clean_checkout_is_its_commit(repo):
    code, files = provenance.capture_code_and_files(repo)
    assert code.git_commit == git(repo, "rev-parse", "HEAD").strip()
    assert (code.git_dirty, code.diff, code.diff_hash) == (False, None, None)
    assert files == ["pkg/__init__.py", "pkg/loss.py"]  # README.md and .gitignore are not code
    assert code.label() == code.git_commit[:8]


def test_edits_and_untracked_files_are_in_the_diff_and_the_index_is_left_alone(repo):
    clean = provenance.capture_code(repo)
    (repo / "pkg" / "loss.py").write_text("def loss(a):\n    return 2 * a\n")
    (repo / "pkg" / "new_term.py").write_text("WEIGHT = 0.1\n")
    (repo / "runs").mkdir()
    (repo / "runs" / "ckpt.json").write_text("{}")  # ignored: neither hashed nor in the diff
    (repo / "pkg" / "weights.bin").write_bytes(b"\x00\x01" * 100)  # untracked data: not code, not in the diff
    (repo / "pkg" / "table.json").write_bytes(b"{}\x00\xff")  # untracked binary source file: a binary patch
    objects = git(repo, "count-objects", "-v")
    dirty = provenance.capture_code(repo)
    assert git(repo, "count-objects", "-v") == objects  # nothing written into the repository
    assert dirty.git_commit == clean.git_commit and dirty.git_dirty is True
    assert "+    return 2 * a" in dirty.diff and "+WEIGHT = 0.1" in dirty.diff and "ckpt" not in dirty.diff
    assert "weights.bin" not in dirty.diff and "GIT binary patch" in dirty.diff and "b/pkg/table.json" in dirty.diff
    assert dirty.files_hash != clean.files_hash and dirty.files == clean.files + 2
    assert dirty.label() == f"{clean.git_commit[:8]}+dirty:{dirty.diff_hash[:6]}"
    assert git(repo, "diff", "--cached", "--name-only") == ""  # nothing staged by the capture
    assert "?? pkg/new_term.py" in git(repo, "status", "--porcelain")
    # The diff applies to the commit and gives the tree back.
    patch = repo.parent / "p.diff"
    patch.write_text(dirty.diff)
    other = repo.parent / "other"
    git(repo.parent, "clone", "-q", str(repo), str(other))
    git(other, "apply", str(patch))
    assert provenance.capture_code(other).files_hash == dirty.files_hash


def test_without_git_the_files_are_hashed(tmp_path):
    root = tmp_path / "plain"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "loss.py").write_text("x = 1\n")
    (root / "data").mkdir()
    (root / "data" / "big.json").write_text("[]")  # not a package: left out
    first = provenance.capture_code(root)
    assert (first.git_commit, first.git_dirty, first.files) == (None, None, 2)
    assert first.label() == f"files:{first.files_hash[:8]}"
    (root / "pkg" / "loss.py").write_text("x = 2\n")
    assert provenance.capture_code(root).files_hash != first.files_hash


def test_snapshot_copies_the_tree_records_git_and_shows_edits(repo, tmp_path):
    (repo / "pkg" / "loss.py").write_text("def loss(a):\n    return 3 * a\n")  # uncommitted: pinned too
    live = provenance.capture_code(repo)
    snap = snapshot.make(tmp_path / "runs", root=repo)
    assert snap.path.parent == (tmp_path / "runs" / "code").resolve() and not snap.reused
    assert (snap.path / "pkg" / "loss.py").read_text() == "def loss(a):\n    return 3 * a\n"
    assert not os.access(snap.path / "pkg" / "loss.py", os.W_OK) or os.getuid() == 0  # read-only (root ignores modes)
    assert oct((snap.path / "pkg" / "loss.py").stat().st_mode & 0o777) == "0o444"
    pinned = provenance.capture(snap.path)
    assert pinned.pinned and pinned.code == live  # same commit, dirty flag, diff and files
    assert snapshot.make(tmp_path / "runs", root=repo).reused  # same tree: same snapshot
    (repo / "pkg" / "loss.py").write_text("def loss(a):\n    return 4 * a\n")
    assert snapshot.make(tmp_path / "runs", root=repo).path != snap.path
    # An edited snapshot no longer claims its commit's diff.
    os.chmod(snap.path / "pkg" / "loss.py", 0o644)
    (snap.path / "pkg" / "loss.py").write_text("tampered = True\n")
    edited = provenance.capture_code(snap.path)
    assert edited.git_dirty is True and edited.diff_hash is None and edited.files_hash != live.files_hash
    manifest = json.loads((snap.path / provenance.SNAPSHOT_MANIFEST).read_text())
    assert manifest["git_commit"] == live.git_commit and manifest["files"] == ["pkg/__init__.py", "pkg/loss.py"]


def test_pythonpath_puts_the_snapshot_first_and_drops_the_live_tree(monkeypatch, tmp_path):
    live = provenance.code_root()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(live), str(tmp_path / "extra")]))
    assert snapshot.pythonpath(tmp_path / "snap") == [str(tmp_path / "snap"), str(tmp_path / "extra")]
    assert snapshot.pythonpath(None) == [str(live), str(tmp_path / "extra")]


def test_environment_lists_the_versions_that_matter():
    env = provenance.capture_environment()
    assert env.packages["torch"] == importlib.metadata.version("torch")
    assert env.packages["transformers"] == importlib.metadata.version("transformers")
    assert f"torch=={importlib.metadata.version('torch')}" in env.freeze.splitlines()
    assert env.python.startswith("CPython 3.")
    assert env.fingerprint == provenance.capture_environment().fingerprint


def test_torch_cuda_is_read_from_version_py_without_importing_torch(monkeypatch, tmp_path):
    import importlib.util
    import sys

    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise RuntimeError('torch must not be imported')\n")
    (fake / "version.py").write_text("__version__ = '2.5.1+cu124'\ncuda: Optional[str] = '12.4'\nhip = None\n")
    spec = importlib.util.spec_from_file_location("torch", fake / "__init__.py", submodule_search_locations=[str(fake)])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec if name == "torch" else None)
    assert provenance.torch_cuda_version() == "12.4"
    (fake / "version.py").write_text("cuda = None\n")
    assert provenance.torch_cuda_version() is None
    assert "torch" not in sys.modules or "RuntimeError" not in str(sys.modules["torch"])


@pytest.mark.parametrize("visible, expected", [
    (None, ["A100", "A100", "H100"]), ("", []), ("-1", []), ("2", ["H100"]), ("0,2", ["A100", "H100"]),
    ("1,-1,2", ["A100"]), ("7", []), ("GPU-3f2a,GPU-9b1c", ["A100", "A100"]),
])
def test_visible_gpus_follow_cuda_visible_devices(visible, expected):
    assert provenance.visible(["A100", "A100", "H100"], visible) == expected


def test_gpus_from_the_nvidia_kernel_module_when_nvml_is_missing(tmp_path):
    base = tmp_path / "nvidia"
    for i, model in enumerate(["NVIDIA H200", "NVIDIA H200"]):
        (base / "gpus" / f"0000:0{i}:00.0").mkdir(parents=True)
        (base / "gpus" / f"0000:0{i}:00.0" / "information").write_text(f"Model: \t {model}\nIRQ: 42\n")
    (base / "version").write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 2024\n")
    assert provenance._proc_nvidia(base) == (["NVIDIA H200", "NVIDIA H200"], "550.54.15", None)
    assert provenance._proc_nvidia(tmp_path / "none") == ([], None, None)


def test_machine_and_capture_never_raise_and_name_this_host():
    import socket

    m = provenance.capture_machine()
    assert m.host == socket.gethostname() and m.cpu_count >= 1 and m.gpu_count >= 0
    p = provenance.capture()
    assert p.code_root == str(provenance.code_root()) and p.fingerprint == provenance.capture().fingerprint


def test_text_the_database_cannot_store_is_cleaned():
    assert provenance.clean("a\x00b\udcffc") == "a\ufffdb\ufffdc"
