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


def test_effects_table_prints_each_factors_levels_most_important_first():
    from collections import namedtuple

    from db import stats

    Row = namedtuple("Row", "id factors state name value")
    rows = [Row(i, {"norm": n, "seed": s}, "succeeded", "val_loss", (1.0 if n == "dyt" else 2.0) + 0.01 * s)
            for i, (n, s) in enumerate((n, s) for n in ("dyt", "layernorm") for s in (0, 1, 2))]
    rows.append(Row(99, {"norm": "dyt", "seed": 0}, "failed", "val_loss", 50.0))  # not succeeded: left out
    text = _text(report.effects_table(rows, "val_loss"))
    lines = [line for line in text.splitlines() if "│" in line]
    assert "norm" in lines[0] and "seed" not in lines[0]  # norm explains nearly all of it: first
    effect = stats.factor_effect([(r.factors, r.value) for r in rows if r.state == "succeeded"], "norm",
                                 stats.quantity_range("val_loss"))
    dyt = dict(effect.levels)["dyt"]
    assert f"[{dyt.low:.4g}, {dyt.high:.4g}]" in lines[0] and " 1.01 " in lines[0] and " 3 " in lines[0]
    assert any(" seed " in line for line in lines)
    assert report.effects_table(rows[:1], "val_loss").startswith("Effects on val_loss: no factor varies")
