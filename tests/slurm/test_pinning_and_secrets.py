"""On the real cluster: a Slurm launch's cells run the code pinned at launch though the
checkout is edited before they start, and the database password and an --env token
leak nowhere. The secrets test greps every file under the test's folder (runs folder,
submitit pickles and logs, the snapshot), every output of every gridlab command it ran,
the batch script as Slurm stored it, the process lists sampled while the workers ran,
and every row of the database.

PostgreSQL runs with trust authentication here, so a URL with any password connects:
the password is a real part of the URL the workers use, never checked by the server.
"""

from __future__ import annotations

import hashlib
import stat
import subprocess
import threading
import uuid
import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from db import engine as db_engine
from db import provenance as reads
from db import schema
from db.session import scope
from jobs import operator, reports, states, workers as worker_jobs
from jobs.queue import Queue
from slurm import secrets
from tests.slurm.conftest import wait_gone
from tests.support.grids import make_jobs
from tests.support.project import edit_value, git, gridlab, make_project, wait_for
from tests.support.results import summaries_of

pytestmark = [pytest.mark.slurm, pytest.mark.postgres]

# Made at run time: the test's own source (copied into the project and its snapshot) must
# not hold them, or the grep below would find them there.
PASSWORD = "Pw-" + uuid.uuid4().hex
QUERY_PASSWORD = "Qpw-" + uuid.uuid4().hex
TOKEN = "hf_" + uuid.uuid4().hex + "Tk"


class ProcessWatch(threading.Thread):
    """Samples every process's command line (what any user's `ps` shows) until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.seen: list[str] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            self.seen.append(out)
            self._done.wait(0.2)

    def stop(self) -> str:
        self._done.set()
        self.join(5)
        return "\n".join(self.seen)


def _database_text(url: str) -> str:
    eng = db_engine.create(url)
    try:
        with scope(eng, write=False) as conn:
            return "\n".join(repr(conn.execute(text(f'SELECT * FROM "{t}"')).fetchall())
                             for t in inspect(conn).get_table_names())
    finally:
        eng.dispose()


@pytest.mark.parametrize("where", ["userinfo", "query"])
def test_slurm_cells_run_the_pinned_code_and_no_secret_leaks(tmp_path, slurm_cluster, pg_url, where):
    project = make_project(tmp_path / "proj")
    bare = make_url(pg_url)
    if where == "userinfo":
        secret, url = PASSWORD, bare.set(password=PASSWORD).render_as_string(hide_password=False)
    else:
        secret, url = QUERY_PASSWORD, bare.update_query_dict({"password": QUERY_PASSWORD}).render_as_string(hide_password=False)
    eng = db_engine.create(url)
    schema.upgrade(eng)
    queue = Queue(eng)
    go = tmp_path / "go"
    operator.enqueue(queue.engine, "g", make_jobs(2, experiment="probe", go=str(go), token_sha=hashlib.sha256(TOKEN.encode()).hexdigest()))
    runs = tmp_path / "runs"
    outputs: list[str] = []
    watch = ProcessWatch()
    watch.start()
    worker_ids: list[str] = []
    try:
        # As a user keeps secrets off the command line (where `ps` shows them): the URL in
        # GRIDLAB_DB, the token in the environment, passed on by name.
        env = {"GRIDLAB_DB": url}
        r = gridlab(project, "launch", "--workers", "2", "--runner", "pinprobe:run", "--runs-dir", str(runs),
                    "--heartbeat", "2", "--time", "5", "--env", "PINPROBE_TOKEN", "--env", "HF_HOME=/tmp/hf",
                    env={**env, "PINPROBE_TOKEN": TOKEN})
        outputs += [r.stdout, r.stderr]
        assert r.returncode == 0, r.stderr
        worker_ids = [w.external_id for w in worker_jobs.dispatched(queue.engine, executor="slurm")]
        assert len(worker_ids) == 2
        # The cells are submitted; before (or while) they start, the researcher edits the checkout.
        edit_value(project, 2)
        go.touch()
        wait_for(lambda: reports.counts(queue.engine)[states.SUCCEEDED] == 2 or reports.counts(queue.engine)[states.FAILED] > 0,
                 timeout_s=150, what="both cells to finish")
        wait_gone(worker_ids, timeout_s=60)
        for args in (["status"], ["results"], ["show", "1"], ["supervise", "--once"]):
            r = gridlab(project, *args, env=env)
            outputs += [r.stdout, r.stderr]
            assert r.returncode == 0, (args, r.stderr)
        scripts = [subprocess.run(["scontrol", "write", "batch_script", w.split("_")[0], "-"], capture_output=True,
                                  text=True).stdout for w in worker_ids]
    finally:
        seen_ps = watch.stop()
        for w in worker_ids:
            subprocess.run(["scancel", w], capture_output=True)
    assert reports.counts(queue.engine)[states.SUCCEEDED] == 2, [a.error for j in (1, 2) for a in reports.attempts(queue.engine, j)]

    # --- queued code stayed queued code ---------------------------------------------------
    assert [summaries_of(queue, j)["value"] for j in (1, 2)] == [1.0, 1.0]
    assert [summaries_of(queue, j)["token_ok"] for j in (1, 2)] == [1.0, 1.0], "the worker must get the --env token"
    (snapshot,) = (runs / "code").iterdir()
    with scope(queue.engine, write=False) as conn:
        ran = [reads.job_provenance(conn, j).attempts[0] for j in (1, 2)]
    assert all(a.pinned and a.code_root == str(snapshot) and a.slurm_job_id in worker_ids for a in ran)
    assert {(a.code.git_commit, a.code.git_dirty) for a in ran} == {(git(project, "rev-parse", "HEAD").strip(), False)}
    assert all(a.machine.host and a.environment.packages["torch"] for a in ran)
    queue.engine.dispose()

    # --- no secret anywhere ------------------------------------------------------------------
    holders = []
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if secret.encode() in data or TOKEN.encode() in data:
                holders.append(path)
    assert [p.name for p in holders] == [secrets.SECRETS_FILE], "only the launch's secrets file may hold a secret"
    assert stat.S_IMODE(holders[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(holders[0].parent.stat().st_mode) == 0o700
    for name, blob in (("command output", "\n".join(outputs)), ("batch script", "\n".join(scripts)),
                       ("process list", seen_ps), ("database", _database_text(pg_url))):
        found = sorted({line for line in blob.splitlines() if secret in line or TOKEN in line})
        assert not found, f"a secret leaked into the {name}: {found}"
    assert all("export PINPROBE_TOKEN" not in s and "export HF_HOME=/tmp/hf" in s for s in scripts)
    assert all(str(snapshot) in s and "PYTHONSAFEPATH=1" in s for s in scripts)
    # Pickles and logs live in an owner-only folder.
    for launch in (runs / "slurm").iterdir():
        assert stat.S_IMODE(launch.stat().st_mode) == 0o700 and secrets.is_own_launch_folder(launch)
    assert any(p.suffix == ".pkl" for p in (runs / "slurm").rglob("*"))
