"""GPU-hours (db.costs): spent per grid and per factor level, and the estimate for the cells left
from the succeeded cells of their shape; and the terminal tables `gridlab status` draws from them."""

from __future__ import annotations

from collections import namedtuple

import pytest
from rich.console import Console

from db import costs, states
from harness import report

pytestmark = pytest.mark.unit

Row = namedtuple("Row", "grid factors spec state seconds")  # as db.views.job_device_seconds gives them


def _row(grid, state, seconds, *, steps=10, model="m", **factors):
    return Row(grid, factors, {"experiment": "lm", "model": model, "steps": steps, **factors}, state, seconds)


ROWS = [
    _row("g", states.SUCCEEDED, 3600.0, lr=0.1),           # 1 h
    _row("g", states.SUCCEEDED, 3 * 3600.0, lr=0.2),       # 3 h: shape (lm, m, 10) costs 2 h on average
    _row("g", states.FAILED, 1800.0, lr=0.3),               # spent, but no guide to the estimate
    _row("g", states.PENDING, 0.0, lr=0.4),                 # estimated at 2 h
    _row("g", states.RUNNING, 0.0, lr=0.5),                 # so is a running cell (nothing charged yet)
    _row("g", states.PENDING, 0.0, lr=0.6, steps=99),       # a shape never run: no estimate
    _row("g", states.CANCELLED, 0.0, lr=0.7),               # not left to run
    _row("h", states.PENDING, None, lr=0.1),                # another grid: g's cells are no guide
]


def test_spent_per_grid_and_factor_level_and_the_estimate_for_cells_left():
    hours = costs.gpu_hours(ROWS)
    assert hours["spent"] == pytest.approx({"g": 4.5, "h": 0.0})
    assert hours["by_factor"]["lr"] == pytest.approx({"0.1": 1.0, "0.2": 3.0, "0.3": 0.5, "0.4": 0.0, "0.5": 0.0,
                                                      "0.6": 0.0, "0.7": 0.0})
    assert hours["pending"] == {"g": 3, "h": 1}
    assert hours["estimate"] == pytest.approx({"g": 4.0})
    assert hours["unestimated"] == {"g": 1, "h": 1}
    assert costs.any_spent(hours) and not costs.any_spent(costs.gpu_hours(ROWS[-1:]))
    assert costs.grid_rows(hours) == [("g", pytest.approx(4.5), 3, pytest.approx(4.0), 1), ("h", 0.0, 1, 0.0, 1)]


def test_the_shape_is_the_settings_that_set_the_cost():
    assert costs.shape_of({"model": "m", "steps": 10, "lr": 0.1, "seed": 3}) == (("model", "m"), ("steps", "10"))
    assert costs.shape_of({"lr": 0.1}) == ()
    # cells that differ in model are not each other's guide
    hours = costs.gpu_hours([_row("g", states.SUCCEEDED, 3600.0), _row("g", states.PENDING, 0.0, model="big")])
    assert hours["estimate"] == {} and hours["unestimated"] == {"g": 1}


def test_factor_rows_most_spent_first_leave_out_what_spent_nothing():
    hours = costs.gpu_hours([_row("g", states.SUCCEEDED, 3600.0, lr=0.1, seed=0),
                             _row("g", states.SUCCEEDED, 7200.0, lr=0.2, seed=0)]
                            + [_row("g", states.PENDING, 0.0, lr=0.3, seed=0, wd=w) for w in range(3)])
    rows = costs.factor_rows(hours)
    assert list(rows) == ["lr", "seed"]  # wd spent nothing
    assert rows["lr"] == [("0.2", pytest.approx(2.0)), ("0.1", pytest.approx(1.0)), ("0.3", 0.0)]
    assert list(costs.factor_rows(hours, only=["seed"])) == ["seed"]
    assert list(costs.factor_rows(hours, max_values=2)) == ["seed"]  # lr has 3 values


def test_the_terminal_tables_print_the_figures_db_costs_computes():
    hours = costs.gpu_hours(ROWS)
    console = Console(width=200, record=True)
    console.print(report.gpu_hours_table(hours))
    for table in report.gpu_hours_by_factor(hours):
        console.print(table)
    text = console.export_text()
    grid_line = next(line for line in text.splitlines() if line.strip().startswith("│ g "))
    assert [c.strip() for c in grid_line.split("│")[1:6]] == ["g", "4.50", "3", "4.00", "1"]
    assert "GPU-hours by lr" in text and "3.00" in text
