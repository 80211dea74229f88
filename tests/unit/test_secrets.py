"""Secrets stay secret: URL passwords (userinfo and query), token-like --env values, the
launch's owner-only files, and supervise never unpickling from a folder it did not make."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import pytest

from db import engine as db_engine
from slurm import secrets
from jobs.worker import WorkerOptions

pytestmark = pytest.mark.unit

URLS = [
    ("postgresql://alice:hunter2@db.example.org:5432/grid", ["hunter2"]),
    ("postgresql://alice@db.example.org/grid?password=hunter3&sslmode=require", ["hunter3"]),
    ("postgresql://alice:hunter4@h/grid?sslpassword=hunter5", ["hunter4", "hunter5"]),
]


@pytest.mark.parametrize("url, hidden", URLS)
def test_redact_hides_passwords_in_userinfo_and_query(url, hidden):
    shown = db_engine.redact(url)
    assert all(h not in shown for h in hidden) and "***" in shown and "alice" in shown
    assert "sslmode=require" in shown or "sslmode" not in url
    assert db_engine.has_secret(url)
    bare, found = db_engine.split_secrets(url)
    assert all(h not in bare for h in hidden)
    assert db_engine.resolve_url(db_engine.join_secrets(bare, found)) == db_engine.resolve_url(url)


def test_a_url_without_secrets_is_left_alone():
    url = "postgresql://alice@h:5432/grid?sslmode=require"
    assert not db_engine.has_secret(url) and db_engine.split_secrets(url) == (url, {})
    assert db_engine.redact(url) == url


@pytest.mark.parametrize("name, value, secret", [
    ("HF_TOKEN", "anything", True), ("WANDB_API_KEY", "x", True), ("MY_PASSWORD", "x", True),
    ("AWS_SECRET_ACCESS_KEY", "x", True), ("HUB", "hf_AbCdEfGhIjKlMnOpQrSt", True),
    ("X", "ghp_0123456789abcdefghijABCDEFGHIJ", True), ("X", "sk-proj-abcdefgh12345678", True),
    ("X", "0123456789abcdef0123456789abcdef01234567", True), ("X", "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==", True),
    ("DB", "postgresql://u:pw@h/d", True),
    ("HF_HOME", "/scratch/hf", False), ("OMP_NUM_THREADS", "4", False), ("CUDA_VISIBLE_DEVICES", "0,1", False),
    ("TOKENIZERS_PARALLELISM", "false", True),  # a name with TOKEN in it is treated as a secret: safe side
    ("DB", "postgresql://u@h/d", False), ("NOTE", "a plain sentence of many words", False),
])
def test_token_like_env_values_are_recognised(name, value, secret):
    assert secrets.looks_secret(name, value) is secret


def test_secrets_go_to_an_owner_only_file_and_come_back(tmp_path, monkeypatch):
    folder = secrets.new_launch_folder(tmp_path / "launch")
    url, path, public = secrets.write(folder, url="postgresql://alice:hunter2@h/grid?password=x2",
                                      env={"HF_TOKEN": "hf_abcdefghijklmnop", "HF_HOME": "/scratch"})
    assert "hunter2" not in url and "x2" not in url and public == {"HF_HOME": "/scratch"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    options = WorkerOptions(url=url, secrets_file=path)
    assert b"hunter2" not in pickle.dumps(options) and b"hf_abcdefghijklmnop" not in pickle.dumps(options)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    loaded = secrets.load(options)
    assert db_engine.resolve_url(loaded.url).password == "hunter2" and os.environ["HF_TOKEN"] == "hf_abcdefghijklmnop"
    assert loaded.secrets_file is None
    os.chmod(path, 0o644)
    with pytest.raises(secrets.SecretsRefused, match="others may read it"):
        secrets.load(options)


def test_no_secrets_no_file(tmp_path):
    folder = secrets.new_launch_folder(tmp_path / "launch")
    assert secrets.write(folder, url="sqlite:////x/y.db", env={"A": "b"}) == ("sqlite:////x/y.db", None, {"A": "b"})
    assert not (folder / secrets.SECRETS_FILE).exists()


class _Planted:
    """Unpickling this writes a file: proof that a pickle was loaded."""

    def __init__(self, proof: Path) -> None:
        self.proof = proof

    def __reduce__(self):
        return (Path.write_text, (self.proof, "unpickled"))


def _plant(folder: Path, job_id: str, proof: Path) -> None:
    from submitit.core.utils import JobPaths

    path = JobPaths(folder / "%j", job_id=job_id, task_id=0).result_pickle
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(("error", _Planted(proof))))


def test_supervise_reads_results_only_from_launch_folders_it_made(tmp_path):
    from slurm.launch import worker_error

    proof = tmp_path / "proof"
    foreign = tmp_path / "foreign"  # named in the database, but not made by gridlab
    foreign.mkdir()
    _plant(foreign, "12_0", proof)
    assert worker_error(foreign, "12_0") is None and not proof.exists()

    made = secrets.new_launch_folder(tmp_path / "made")
    os.chmod(made, 0o777)  # others may write into it now: no longer trusted
    _plant(made, "13_0", proof)
    assert worker_error(made, "13_0") is None and not proof.exists()

    linked = tmp_path / "linked"
    os.chmod(made, 0o700)
    linked.symlink_to(made)
    assert worker_error(linked, "13_0") is None and not proof.exists()

    # Its own folder is read (this is what gridlab wrote there itself).
    from submitit.core.utils import JobPaths

    path = JobPaths(made / "%j", job_id="14_0", task_id=0).result_pickle
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(("error", "Traceback...\nRuntimeError: worker died")))
    assert worker_error(made, "14_0") == "RuntimeError: worker died"
