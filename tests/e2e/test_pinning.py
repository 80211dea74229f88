"""Queued code stays queued code: a launch's workers import a snapshot of the source tree
made at launch, so an edit to the checkout after `gridlab launch` does not change cells
already launched. The control (--no-pin) shows the same test catching the edit.

Runs a copy of this checkout (tests/support/project.py), never the checkout itself."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from db import engine as db_engine
from db import provenance as reads
from db import schema
from db.session import scope
from jobs import operator, reports
from jobs.queue import Queue
from tests.support.grids import make_jobs
from tests.support.project import edit_value, git, gridlab, make_project, wait_for
from tests.support.results import summaries_of

pytestmark = pytest.mark.e2e


@pytest.fixture
def project(tmp_path) -> Path:
    return make_project(tmp_path / "proj")


def _queue(url: str) -> Queue:
    eng = db_engine.create(url)
    schema.upgrade(eng)
    return Queue(eng)


@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "unpinned-control"])
def test_editing_the_checkout_after_a_local_launch(project, tmp_path, pin):
    url = f"sqlite:///{tmp_path / 'gridlab.db'}"
    queue = _queue(url)
    go = tmp_path / "go"
    operator.enqueue(queue.engine, "g", make_jobs(2, experiment="probe", go=str(go), token_sha=""))
    launch = gridlab(project, "launch", "--executor", "local", "--workers", "1", "--runner", "pinprobe:run",
                     "--runs-dir", str(tmp_path / "runs"), "--heartbeat", "1", "--db", url,
                     *([] if pin else ["--no-pin"]), popen=True)
    try:
        wait_for(lambda: reports.attempts(queue.engine, 1) or launch.poll() is not None, what="the first cell to start")
        edit_value(project, 2)  # the cells are launched, one is running: now the researcher edits
        go.touch()
        out, err = launch.communicate(timeout=180)
    finally:
        if launch.poll() is None:
            launch.kill()
    assert launch.returncode == 0, err
    values = [summaries_of(queue, j)["value"] for j in (1, 2)]
    with scope(queue.engine, write=False) as conn:
        ran = [reads.job_provenance(conn, j).attempts[0] for j in (1, 2)]
    head = git(project, "rev-parse", "HEAD").strip()
    if pin:
        assert values == [1.0, 1.0], "the launched cells must run the code as it was at launch"
        (snapshot,) = (tmp_path / "runs" / "code").iterdir()
        assert "Pinned code" in out and str(snapshot) in out
        assert all(a.pinned and a.code_root == str(snapshot) for a in ran)
        assert {(a.code.git_commit, a.code.git_dirty) for a in ran} == {(head, False)}
        assert (snapshot / "harness" / "pin_probe_value.py").read_text() == "VALUE = 1\n"
    else:
        assert values == [2.0, 2.0], "without a pin the edit reaches the launched cells (this is what pinning stops)"
        assert all(not a.pinned and a.code_root == str(project) for a in ran)
        assert not (tmp_path / "runs" / "code").exists()
    queue.engine.dispose()


def test_a_second_launch_after_the_edit_pins_the_new_code_and_shows_the_drift(project, tmp_path):
    url = f"sqlite:///{tmp_path / 'gridlab.db'}"
    queue = _queue(url)
    go = tmp_path / "go"
    go.touch()
    args = ("launch", "--executor", "local", "--workers", "1", "--runner", "pinprobe:run", "--runs-dir",
            str(tmp_path / "runs"), "--heartbeat", "1", "--db", url)
    operator.enqueue(queue.engine, "g", make_jobs(1, experiment="probe", go=str(go), token_sha=""))
    assert gridlab(project, *args).returncode == 0
    edit_value(project, 3)
    operator.enqueue(queue.engine, "g", make_jobs(2, experiment="probe", go=str(go), token_sha="")[1:])
    second = gridlab(project, *args)
    assert second.returncode == 0, second.stderr
    assert [summaries_of(queue, j)["value"] for j in (1, 2)] == [1.0, 3.0]
    assert len(list((tmp_path / "runs" / "code").iterdir())) == 2
    r = gridlab(project, "results", "--db", url)
    assert r.returncode == 0
    warning = next(line for line in r.stdout.splitlines() if line.startswith("warning: "))
    head = git(project, "rev-parse", "HEAD").strip()[:8]
    assert f"2 code versions ({head}: job 1; {head}+dirty:" in warning and ": job 2)" in warning
    diff = gridlab(project, "show", "2", "--diff", "--db", url).stdout
    assert "-VALUE = 1" in diff and "+VALUE = 3" in diff
    queue.engine.dispose()


def test_dry_run_shows_the_pinned_path_and_copies_nothing(project, tmp_path):
    r = gridlab(project, "launch", "--dry-run", "--workers", "2", "--runs-dir", str(tmp_path / "runs"),
                "--db", f"sqlite:///{tmp_path / 'g.db'}")
    assert r.returncode == 0, r.stderr
    assert f"export PYTHONPATH={tmp_path / 'runs' / 'code'}/" in r.stdout and "export PYTHONSAFEPATH=1" in r.stdout
    assert str(project) not in r.stdout.split("# setup", 1)[1].split("# command", 1)[0]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "g.db").exists()
    token = "hf_" + hashlib.sha256(b"x").hexdigest()[:30]
    r = gridlab(project, "launch", "--dry-run", "--no-pin", "--env", f"HF_TOKEN={token}", "--env", "HF_HOME=/scratch",
                "--db", "postgresql://alice:Dry-Run-Pw@db.example.org/grid?sslpassword=Other-Pw", "--runs-dir",
                str(tmp_path / "runs"))
    assert r.returncode == 0, r.stderr
    assert token not in r.stdout and "Dry-Run-Pw" not in r.stdout and "Other-Pw" not in r.stdout
    assert "export HF_HOME=/scratch" in r.stdout and "# not written here: HF_TOKEN" in r.stdout
    assert "GRIDLAB_DB" not in r.stdout and f"export PYTHONPATH={project}" in r.stdout
