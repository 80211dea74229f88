"""One cell's story: each attempt's output in a file of its own (``gridlab logs``), the whole
traceback of a failure in the database, and one job run in the foreground (``gridlab run``)."""

from __future__ import annotations

import pytest

from db import views
from db.session import scope
from jobs import operator, reports, states
from jobs.pool import start
from jobs.worker import WorkerOptions
from jobs.queue import Queue
from tests.support import cli, results
from tests.support.grids import make_jobs

pytestmark = pytest.mark.e2e

GRID = """
name: one
experiment: tiny_lm
fixed: {steps: 4, batch_size: 4, seq_len: 32, checkpoint_every: 2, eval_batches: 1}
axes: {lr: [1.0e-3]}
"""


def test_gridlab_run_then_logs(db_url, tmp_path):
    (tmp_path / "one.yaml").write_text(GRID)
    assert cli.run(["enqueue", "one.yaml", "--db", db_url], cwd=tmp_path).returncode == 0
    r = cli.run(["run", "1", "--db", db_url, "--heartbeat", "2"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "job 1: succeeded (attempt 1)" in r.stdout
    r = cli.run(["logs", "1", "--db", db_url], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "job 1 attempt 1" in r.stdout and "starting fresh" in r.stdout and "job 1 succeeded" in r.stdout
    again = cli.run(["run", "1", "--db", db_url], cwd=tmp_path)
    cli.assert_one_line_error(again, "job 1 is succeeded, not pending")
    missing = cli.run(["logs", "1", "--db", db_url, "--runs-dir", "elsewhere"], cwd=tmp_path)
    cli.assert_one_line_error(missing, "pass the --runs-dir its workers used")


def test_each_attempt_keeps_its_own_output_and_the_whole_traceback(db_url, tmp_path):
    """A worker process's attempt prints (stdout, stderr, a C-level write) and fails with a long
    traceback: everything lands in that attempt's output.log, and the attempt's error in the
    database is the whole traceback, not its last 4,000 characters."""
    from db import engine as db_engine
    from db import schema

    eng = db_engine.create(db_url)
    schema.upgrade(eng)
    queue = Queue(eng)
    operator.enqueue(queue.engine, "noisy", make_jobs(1, max_attempts=2, backoff_s=0))
    procs = start(WorkerOptions(url=db_url, runner="tests.support.runners:noisy_failure",
                              runs_dir=str(tmp_path / "runs"), heartbeat_s=1.0, poll_s=0.05), 1)
    for p in procs:
        p.join(timeout=120)
    attempts = reports.attempts(queue.engine, 1)
    assert [a.outcome for a in attempts] == [states.OUTCOME_ERROR, states.OUTCOME_ERROR]
    error = attempts[0].error  # the innermost cause comes first, the outermost error last: both kept
    assert len(error) > 6000 and error.index("x" * 200) < error.index("RuntimeError: depth 0")
    run = results.run_dir(queue, tmp_path / "runs", 1)
    for n in (1, 2):
        text = (run / "attempts" / f"a{n}" / "output.log").read_text()
        assert f"printed by attempt {n} on stdout" in text
        assert f"printed by attempt {n} on stderr" in text
        assert f"written by attempt {n} to fd 1" in text
        assert f"job 1 attempt {n}: the failure in full" in text
        assert f"attempt {3 - n}" not in text.replace(f"attempt {n}", ""), "another attempt's output leaked in"
    r = cli.run(["logs", "1", "--attempt", "1", "--db", db_url, "--runs-dir", str(tmp_path / "runs")], cwd=tmp_path)
    assert r.returncode == 0 and "printed by attempt 1 on stdout" in r.stdout and "attempt 2" not in r.stdout
    with scope(eng, write=False) as conn:
        assert views.job(conn, 1).state == states.FAILED
    eng.dispose()


def test_gridlab_work_shares_the_device_between_cells(tmp_path):
    db = f"sqlite:///{tmp_path / 'share.db'}"
    (tmp_path / "two.yaml").write_text(GRID.replace("lr: [1.0e-3]", "lr: [1.0e-3, 2.0e-3, 3.0e-3]").replace("one", "two"))
    assert cli.run(["enqueue", "two.yaml", "--db", db], cwd=tmp_path).returncode == 0
    r = cli.run(["work", "--cells-per-device", "2", "--cell-mem", "1", "--db", db], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Sharing the device between up to 2 cells for 3 job(s)" in r.stdout
    assert "succeeded 3" in r.stdout
