"""The pages' arithmetic: intervals, win rates, smoothing, factor columns."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dashboards import comparisons, factors
from db import stats

pytestmark = pytest.mark.unit


def test_t_quantiles_and_mean_interval():
    assert stats.t975(1) == 12.706 and stats.t975(2) == 4.303
    assert stats.t975(30) == 2.042 and 1.96 < stats.t975(1000) < 1.965
    assert math.isnan(stats.t975(0))
    mean, ci, n = stats.mean_ci(pd.Series([1.0, 2.0, 3.0]))
    assert (mean, n) == (2.0, 3) and ci == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    mean, ci, n = stats.mean_ci(pd.Series([5.0, float("nan")]))
    assert (mean, n) == (5.0, 1) and math.isnan(ci)


def test_difference_interval_is_welch():
    d, ci = stats.diff_ci(pd.Series([1.0, 2.0, 3.0]), pd.Series([0.0, 0.0, 0.0, 0.0]))
    assert d == 2.0 and ci == pytest.approx(4.303 * math.sqrt(1 / 3))  # df = 2 when one side has no variance


def test_bootstrap_win_rate_is_reproducible_and_brackets_the_rate():
    winners = pd.Series(["a"] * 30 + ["b"] * 10 + ["tie"] * 10)
    rate, lo, hi = stats.bootstrap_win_rate(winners)
    assert rate == pytest.approx(0.7) and lo < rate < hi
    assert stats.bootstrap_win_rate(winners) == (rate, lo, hi)
    assert stats.win_rate(winners) == pytest.approx(0.7)


def test_verdicts_recorded_either_way_round_are_merged():
    verdicts = pd.DataFrame({"judge": ["pairrm"] * 3, "arm_a": [1, 2, 1], "arm_b": [2, 1, 2],
                             "winner": ["a", "a", "tie"], "question_id": ["q1", "q2", "q3"]})
    (row,) = comparisons.win_rates(verdicts, resamples=200).itertuples()
    assert (row.arm_a, row.arm_b, row.a_wins, row.b_wins, row.ties) == (1, 2, 1, 1, 1)
    assert row.win_rate_a == pytest.approx(0.5)


def test_ema_smooths_with_debiasing_and_keeps_nans():
    s = pd.Series([1.0, 1.0, float("nan"), 3.0])
    out = pd.Series(stats.ema(s, 0.5))
    assert out.iloc[0] == 1.0 and out.iloc[1] == 1.0 and math.isnan(out.iloc[2])
    assert out.iloc[3] == pytest.approx((0.5 * 0.75 + 0.5 * 3) / (0.5 * 0.75 + 0.5))
    assert pd.Series(stats.ema(s, 0.0)).equals(s)


def test_factor_columns_order_filter_and_labels():
    table = pd.DataFrame({"id": [1, 2, 3], "state": ["succeeded"] * 3,
                          "factors": [{"lr": 3e-3, "norm": "dyt", "state": "x"}, {"lr": 1e-3, "norm": "dyt"},
                                      {"lr": 1e-3, "norm": "layernorm", "layers": [1, 2]}]})
    out, names = factors.expand(table)
    assert names == ["lr", "norm", "factor.state", "layers"]
    assert out["layers"].tolist()[2] == "[1, 2]" and out["state"].tolist() == ["succeeded"] * 3
    assert factors.ordered(out["lr"]) == [1e-3, 3e-3]
    assert factors.varying(out, names) == ["lr", "norm", "factor.state", "layers"]
    assert factors.filter_jobs(out, {"lr": ["0.001"]})["id"].tolist() == [2, 3]
    assert factors.labels(out, ["lr", "norm"]).tolist() == ["lr=0.003, norm=dyt", "lr=0.001, norm=dyt",
                                                            "lr=0.001, norm=layernorm"]


def test_db_url_comes_from_the_command_line_then_the_environment():
    from dashboards import ui

    assert ui.db_url_from(["--db", "sqlite:///a.db"], {}) == "sqlite:///a.db"
    assert ui.db_url_from(["--db=sqlite:///b.db"], {"GRIDLAB_DB": "x"}) == "sqlite:///b.db"
    assert ui.db_url_from(["-q", "tests"], {"GRIDLAB_DB": "sqlite:///c.db"}) == "sqlite:///c.db"
    assert ui.db_url_from([], {}) is None


# --- db.stats: the one statistics module of the dashboard, the CLI and the judge ----------


def test_intervals_are_clipped_to_what_the_quantity_can_be():
    assert stats.quantity_range("tokens_per_s") == (0.0, None)
    assert stats.quantity_range("gen_tokens_per_s") == (0.0, None)
    assert stats.quantity_range("token_accuracy") == (0.0, 1.0)
    assert stats.quantity_range("heldout.perplexity") == (1.0, None)
    assert stats.quantity_range("attn_entropy/L0.H0") == (None, None)
    wide = stats.mean_interval([50.0, 5000.0, 50.0], stats.quantity_range("tokens_per_s"))
    mean, half, n = stats.mean_ci([50.0, 5000.0, 50.0])
    assert mean - half < 0 and wide.low == 0.0 and wide.high == pytest.approx(mean + half) and wide.n == 3
    assert stats.mean_interval([0.99, 0.999, 0.95], (0.0, 1.0)).high == 1.0
    assert not stats.mean_interval([1.0, 2.0]).drawable and stats.mean_interval([1.0, 2.0, 3.0]).drawable
    assert math.isnan(stats.mean_interval([4.0]).low)


def test_bootstrap_is_seeded_and_does_not_depend_on_the_order_of_the_verdicts():
    winners = ["a"] * 7 + ["b"] * 2 + ["tie"]
    forward = stats.bootstrap_win_rate(winners, resamples=2000)
    assert forward == stats.bootstrap_win_rate(list(reversed(winners)), resamples=2000)
    values = [float(i * i % 17) for i in range(40)]
    assert stats.bootstrap(values) == stats.bootstrap(values[::-1])
    assert stats.bootstrap(values) != stats.bootstrap(values, seed=1)  # the seed is what fixes it
    assert forward[0] == pytest.approx(0.75) and 0.0 <= forward[1] < 0.75 < forward[2] <= 1.0
    with pytest.raises(ValueError, match="confidence"):
        stats.bootstrap([1.0], confidence=1.5)


def test_cli_judge_and_dashboard_print_the_same_win_rate_interval():
    from harness.evaluation import winrate

    winners = ["a", "tie", "b", "a", "a", "b", "tie", "a"]
    cli = winrate.win_rate(winners)  # `gridlab compare` and the judge job's summary
    verdicts = pd.DataFrame({"judge": "pairrm", "arm_a": 1, "arm_b": 2, "winner": winners[::-1],
                             "question_id": [f"q{i}" for i in range(len(winners))]})
    (row,) = comparisons.win_rates(verdicts).itertuples()  # the dashboard, rows in another order
    assert (row.win_rate_a, row.ci95_low, row.ci95_high) == (cli.rate, cli.low, cli.high)


def test_factor_effects_are_the_mean_per_level_over_the_rest_of_the_grid():
    # val_loss = 1.0 (alpaca) / 1.5 (dolly), - 0.2 for dyt, + 0.01 per seed
    rows = [({"dataset": d, "norm": n, "seed": s}, base - (0.2 if n == "dyt" else 0.0) + 0.01 * s)
            for d, base in (("alpaca", 1.0), ("dolly", 1.5)) for n in ("dyt", "layernorm") for s in (0, 1, 2)]
    effects = stats.factor_effects(rows)
    assert [e.factor for e in effects] == ["dataset", "norm", "seed"]  # by eta squared
    dataset, norm, seed = effects
    levels = {level: i for level, i in norm.levels}
    assert levels["dyt"].mean == pytest.approx(1.06) and levels["layernorm"].mean == pytest.approx(1.26)
    assert levels["dyt"].n == 6 and norm.spread == pytest.approx(0.2)
    x = [v for _, v in rows]
    grand = sum(x) / len(x)
    total = sum((v - grand) ** 2 for v in x)
    assert norm.eta_squared == pytest.approx(12 * 0.1**2 / total)
    assert dataset.eta_squared > norm.eta_squared > seed.eta_squared >= 0
    assert [level for level, _ in seed.levels] == [0, 1, 2]
    cells = stats.interaction(rows, "norm", "dataset")
    assert list(cells) == [("dyt", "alpaca"), ("dyt", "dolly"), ("layernorm", "alpaca"), ("layernorm", "dolly")]
    assert cells[("dyt", "dolly")].mean == pytest.approx(1.31) and cells[("dyt", "dolly")].n == 3
    # A factor with one level says nothing; a named one without values is left out.
    assert stats.factor_effects([({"a": 1}, 1.0), ({"a": 1}, 2.0)]) == []


def test_layers_talk_downward_only_dashboards_import_db_and_db_imports_no_torch():
    import ast
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]

    def imported(folder: str) -> dict[str, set[str]]:
        out = {}
        for path in sorted((repo / folder).glob("*.py")):
            names = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
            out[path.name] = names
        return out

    for page, names in imported("dashboards").items():
        assert not names & {"jobs", "harness", "slurm", "torch"}, (page, names)
    stats_imports = imported("db")["stats.py"]
    assert stats_imports <= {"__future__", "json", "math", "collections", "dataclasses", "typing", "numpy"}, stats_imports
    for module, names in imported("db").items():
        assert not names & {"jobs", "harness", "slurm", "dashboards", "torch"}, (module, names)


def test_bootstrap_interval_is_about_the_normal_one_for_many_verdicts():
    import numpy as np

    winners = ["a"] * 60 + ["b"] * 20 + ["tie"] * 20  # few distinct scores: drawn as multinomial counts
    scores = np.array([1.0] * 60 + [0.0] * 20 + [0.5] * 20)
    rate, low, high = stats.bootstrap_win_rate(winners)
    se = scores.std() / math.sqrt(len(scores))
    assert rate == pytest.approx(0.7)
    assert low == pytest.approx(0.7 - 1.96 * se, abs=0.01) and high == pytest.approx(0.7 + 1.96 * se, abs=0.01)
    # Many distinct values take the other path (indices into the sorted values): the same interval, about.
    x = np.random.default_rng(3).normal(0.0, 1.0, 400)
    mean, lo, hi = stats.bootstrap(x)
    se = x.std() / math.sqrt(len(x))
    assert lo == pytest.approx(mean - 1.96 * se, abs=0.02) and hi == pytest.approx(mean + 1.96 * se, abs=0.02)


def test_booleans_print_as_the_grid_file_and_the_cli_write_them():
    import numpy as np

    assert [factors.fmt(v) for v in (True, False, np.bool_(True), 1, 1.0, 3e-3)] == ["true", "false", "true", "1",
                                                                                      "1", "0.003"]


def test_the_cli_and_the_comparisons_page_give_the_same_interval_for_the_same_verdicts():
    """One bootstrap (db/stats.py) behind `gridlab compare` (harness.evaluation.winrate) and the
    Comparisons page (dashboards/comparisons.py): the same verdicts, the same figures."""
    import pandas as pd

    from dashboards import comparisons
    from harness.evaluation import winrate

    winners = ["a"] * 11 + ["b"] * 6 + ["tie"] * 3
    cli = winrate.win_rate(winners)
    page = comparisons.win_rates(pd.DataFrame({"judge": "pairrm", "arm_a": 1, "arm_b": 2, "winner": winners}))
    row = page.iloc[0]
    assert (row.win_rate_a, row.ci95_low, row.ci95_high) == (cli.rate, cli.low, cli.high)
    assert cli.low < cli.rate < cli.high
