"""Reading sacct: one row per start, array ranges, failure classes; worker names;
a node that cannot reach the database."""

from __future__ import annotations

import pytest

from jobs import states
from slurm import accounting
from slurm.launch import sbatch_error
from slurm.worker import DatabaseUnreachableFromNode, WorkerOptions, open_queue, parse_worker_name, worker_name

pytestmark = pytest.mark.unit

SACCT = """\
15|NODE_FAIL|vm|2026-11-23T00:48:07|2026-11-23T00:48:13|None
14|CANCELLED by 0|vm|2026-11-23T00:48:04|2026-11-23T00:48:07|None
15|RUNNING|vm|2026-11-23T00:48:36|Unknown|None
17_[2-3%2]|PENDING|None assigned|Unknown|Unknown|JobArrayTaskLimit
17_0|RUNNING|vm|2026-11-23T00:50:00|Unknown|None
"""


def test_runs_per_start_oldest_first_with_pending_array_ranges_expanded():
    runs = accounting.parse_runs(SACCT)
    assert [r.state for r in runs["15"]] == ["NODE_FAIL", "RUNNING"]
    assert runs["14"][0].state == "CANCELLED" and runs["14"][0].end == "2026-11-23T00:48:07"
    assert runs["17_2"][0].state == "PENDING" and runs["17_3"][0].reason == "JobArrayTaskLimit"
    assert runs["17_2"][0].node is None
    latest = accounting.current(runs)
    assert latest["15"].active and not latest["14"].active


@pytest.mark.parametrize("state, outcome", [
    ("PREEMPTED", states.OUTCOME_PREEMPTED), ("REQUEUED", states.OUTCOME_PREEMPTED), ("TIMEOUT", states.OUTCOME_TIMEOUT),
    ("NODE_FAIL", states.OUTCOME_NODE_FAIL), ("OUT_OF_MEMORY", states.OUTCOME_OOM),
    ("CANCELLED by 0", states.OUTCOME_CANCELLED), ("FAILED", states.OUTCOME_ERROR), ("COMPLETED", states.OUTCOME_ERROR),
])
def test_failure_classes(state, outcome):
    assert accounting.outcome_of(state) == outcome


def test_worker_names_round_trip():
    assert parse_worker_name(worker_name("12_3", 2, "node7", 99)) == ("12_3", 2)
    assert parse_worker_name("vm:1234") is None


def test_sbatch_error_is_its_last_line_without_prefix():
    text = ("sbatch: error: invalid partition specified: nosuch\n"
            "sbatch: error: Batch job submission failed: Invalid partition name specified\n")
    assert sbatch_error(text) == "Invalid partition name specified"
    assert sbatch_error("sbatch: error: Memory specification can not be satisfied") == "Memory specification can not be satisfied"


def test_a_node_without_the_database_fails_early_with_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURMD_NODENAME", "node7")
    with pytest.raises(DatabaseUnreachableFromNode) as err:
        open_queue(WorkerOptions(url=f"sqlite:///{tmp_path / 'missing.db'}"))
    text = str(err.value)
    assert text.startswith("worker on node node7: cannot use database sqlite:///") and "\n" not in text
    assert "missing.db: no such file on this node; give a database" in text
    assert "every compute node can reach" in text
    assert not (tmp_path / "missing.db").exists()


def test_an_unreachable_postgresql_is_named_too(monkeypatch):
    monkeypatch.setenv("SLURMD_NODENAME", "node7")
    with pytest.raises(DatabaseUnreachableFromNode, match=r"^worker on node node7: cannot reach database postgresql\+psycopg://gridlab@127\.0\.0\.1:1/gridlab: .*Connection refused; give a database every compute node can reach"):
        open_queue(WorkerOptions(url="postgresql://gridlab@127.0.0.1:1/gridlab"))
