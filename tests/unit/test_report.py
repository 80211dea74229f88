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


def _summary_rows():
    from collections import namedtuple

    Row = namedtuple("Row", "id experiment factors state name value")
    rows = []
    for i, (data, lr) in enumerate([('a,"b"\tc', 1e-3), ('a,"b"\tc', 3e-3), ("plain", 1e-3)], start=1):
        factors = {"seed": 0, "data": data, "lr": lr, "packing": False}
        rows += [Row(i, "sft", factors, "succeeded", "val_loss", 1.0 / 3 + i),
                 Row(i, "sft", factors, "succeeded", "gen_total_s", float("nan") if i == 3 else 0.5)]
    rows.append(Row(4, "judge", {"seed": 0, "compare": "lr: 0.001 vs 0.003"}, "succeeded", "win_rate_a", 0.6))
    return rows


def test_results_put_shared_factors_in_the_heading_and_leave_judges_out():
    view = report.results(_summary_rows(), ["val_loss", "gen_total_s"])
    assert view.constant == {"seed": 0, "packing": False} and view.varying == ("data", "lr")
    assert view.jobs == (1, 2, 3) and view.judges == 1 and view.metrics == ("val_loss", "gen_total_s")
    text = _text(report.results_table(view, width=100))
    heading, header = text.splitlines()[:2]
    assert heading.startswith("Results  every job: seed=0, packing=false")
    assert header.split() == ["job", "data", "lr", "val_loss", "gen_total_s"]  # whole headings: they fit
    assert "0.001 vs" not in text and "win_rate_a" not in text and "1 judge job(s) left out" in text
    assert ' a,"b" c 0.001 ' in text  # the value as it is (a tab as a space), not markup or a repr


def test_results_as_csv_tsv_and_json_read_back_whole():
    import csv
    import io
    import json

    view = report.results(_summary_rows(), every_figure=True)
    expected_columns = ["job", "state", "seed", "packing", "data", "lr", "val_loss", "gen_total_s"]
    for fmt, dialect in (("csv", "excel"), ("tsv", "excel-tab")):
        rows = list(csv.reader(io.StringIO(report.results_text(view, fmt)), dialect=dialect))
        assert rows[0] == expected_columns
        assert rows[1] == ["1", "succeeded", "0", "false", 'a,"b"\tc', "0.001", repr(1.0 / 3 + 1), "0.5"]
        assert rows[3][-1] == ""  # not finite: empty, not "nan"
    records = json.loads(report.results_text(view, "json"))
    assert [list(r) for r in records] == [expected_columns] * 3
    assert records[0] == {"job": 1, "state": "succeeded", "seed": 0, "packing": False, "data": 'a,"b"\tc', "lr": 0.001,
                          "val_loss": 1.0 / 3 + 1, "gen_total_s": 0.5}
    assert records[2]["gen_total_s"] is None
    assert json.loads(report.results_text(report.results([]), "json")) == []
