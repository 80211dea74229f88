"""Terminal tables: what `gridlab status` prints per factor and for running jobs."""

from __future__ import annotations

import pytest
from rich.console import Console
from rich.table import Table

from harness import report
from jobs.records import RunningJob

pytestmark = pytest.mark.unit


def _text(renderable) -> str:
    console = Console(width=200, record=True)
    console.print(renderable)
    return console.export_text()


def test_a_factor_with_very_many_values_gets_a_line_unless_named():
    rows = [({"seed": s, "norm": "dyt" if s % 2 else "layernorm"}, "pending") for s in range(100)]
    out = report.factor_tables(rows)
    assert out[0] == "By seed: 100 values, not listed (see them with --by seed)"
    assert isinstance(out[1], Table) and "dyt" in _text(out[1]) and "layernorm" in _text(out[1])
    (named,) = report.factor_tables(rows, only=["seed"])
    assert isinstance(named, Table) and named.row_count == 100


def test_booleans_print_as_the_grid_file_writes_them():
    (table,) = report.factor_tables([({"packing": True}, "pending"), ({"packing": False}, "running")])
    text = _text(table)
    assert "true" in text and "false" in text and "True" not in text


def test_running_table_says_how_far_each_job_has_got():
    jobs = [RunningJob(id=3, grid="g", factors={"lr": 1e-3}, attempt=2, worker="vm:1", step=120, total_steps=400,
                       value=2.3456, heartbeat_age_s=4.2),
            RunningJob(id=4, grid="g", factors={"lr": 3e-3}, attempt=1, worker="vm:2", step=None, total_steps=400,
                       value=None, heartbeat_age_s=None)]
    text = _text(report.running_table(jobs))
    assert "step 120/400 (30%)" in text and "2.346" in text and "4 s ago" in text and "lr=0.001" in text
    assert "starting" in text
