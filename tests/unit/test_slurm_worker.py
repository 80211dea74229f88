"""The Slurm-side worker (slurm.worker): its lease-owner names, and a node that cannot
reach the database; sbatch's refusal as one line (slurm.launch)."""

from __future__ import annotations

import pytest

from jobs.worker import WorkerOptions
from slurm.launch import sbatch_error
from slurm.worker import DatabaseUnreachableFromNode, open_queue, parse_worker_name, worker_name

pytestmark = pytest.mark.unit


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
