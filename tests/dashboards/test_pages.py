"""Every dashboard page, driven by Streamlit's AppTest against a database the tests fill
(tests/dashboards/conftest.py says what is in it and which figures follow)."""

from __future__ import annotations

import json
import math

import pytest

from tests.dashboards.conftest import FAIL_HOST, SLURM_JOB, STEPS, WINNERS

pytestmark = pytest.mark.contract


def _frames(at):
    return [d.value for d in at.dataframe]


def _frame_with(at, *columns):
    for df in _frames(at):
        if all(c in df.columns for c in columns):
            return df
    raise AssertionError(f"no table with columns {columns}: {[list(d.columns) for d in _frames(at)]}")


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _select(at, label):
    return next(s for s in at.selectbox if s.label == label)


def _downloads(at) -> list[str]:
    return [b.label for b in at.download_button]


def test_overview_counts_progress_heatmap_and_stale_leases(filled, app):
    at = app(filled.url)  # the default page
    assert at.title[0].value == "Overview"
    assert _metrics(at) == {"jobs": "18", "pending": "1", "running": "1", "succeeded": "13", "failed": "1",
                            "diverged": "1", "cancelled": "1"}
    progress = _frame_with(at, "grid", "% finished").set_index("grid")
    assert progress.loc["ablation", "succeeded"] == 12 and progress.loc["ablation", "% finished"] == 100.0
    assert progress.loc["probe", "finished"] == 4 and progress.loc["probe", "total"] == 6
    assert any("ablation" in p.proto.text and "12 of 12 finished" in p.proto.text for p in at.get("progress"))

    running = _frame_with(at, "cell", "step", "steps", "progress", "loss")
    assert running["id"].tolist() == [filled.by_state["running"]]
    (row,) = running.itertuples()
    assert (row.step, row.loss, row.attempt) == (3, 2.0, 1) and "lr=0.003" in row.cell and "seed=0" in row.cell
    assert row.steps == STEPS and row.progress == pytest.approx(3 / STEPS)

    stale = _frame_with(at, "lease_owner", "expired")
    assert stale["id"].tolist() == [filled.by_state["running"]]
    assert stale["expired_s_ago"].iloc[0] > 0
    assert "1 running job(s) have an expired lease" in at.warning[0].value

    # The heatmap by two picked factors: the probe grid's lr x seed, a state per cell.
    _select(at, "Grid").set_value("probe").run()
    _select(at, "Columns").set_value("lr").run()
    _select(at, "Rows").set_value("seed").run()
    cells = _frame_with(at, "lr", "seed", "state", "jobs")
    by_cell = {(r.lr, r.seed): r.state for r in cells.itertuples()}
    assert by_cell == {("0.001", "0"): "succeeded", ("0.001", "1"): "failed", ("0.001", "2"): "diverged",
                       ("0.003", "0"): "running", ("0.003", "1"): "cancelled", ("0.003", "2"): "pending"}
    assert {"Download grid_progress.csv", "Download running.csv", "Download cells_by_factor.csv",
            "Download stale_leases.csv"} <= set(_downloads(at))


def _status_hours(url: str, grid: str | None = None) -> dict:
    """What `gridlab status [--grid GRID]` computes: db.costs over jobs.reports.device_seconds."""
    from db import costs
    from db import engine as db_engine
    from jobs import reports

    engine = db_engine.create(url)
    try:
        hours = costs.gpu_hours(reports.device_seconds(engine, grid))
    finally:
        engine.dispose()
    return hours


def test_overview_gpu_hours_are_what_gridlab_status_computes(filled, app):
    from db import costs
    from tests.dashboards.conftest import ABLATION_DEVICES

    at = app(filled.url)
    assert any(h.value == "GPU-hours" for h in at.subheader)
    hours = _status_hours(filled.url)
    by_grid = _frame_with(at, "grid", "spent", "cells left", "estimate left", "no estimate")
    assert [tuple(r) for r in by_grid.itertuples(index=False)] == costs.grid_rows(hours)
    assert list(by_grid["grid"]) == ["ablation", "probe"]
    spent = by_grid.set_index("grid")
    assert spent.loc["ablation", "spent"] > 0 and ABLATION_DEVICES == 1
    # the probe's running and pending cells, at what its succeeded cell (same shape) cost
    assert spent.loc["probe", "cells left"] == 2 and spent.loc["probe", "no estimate"] == 0
    probe_rows = {r.id: r for r in _device_rows(filled.url)}
    succeeded = probe_rows[filled.by_state["succeeded"]].seconds / 3600
    assert spent.loc["probe", "estimate left"] == pytest.approx(2 * succeeded)
    assert spent.loc["ablation", "cells left"] == 0 and spent.loc["ablation", "estimate left"] == 0.0
    by_factor = _frame_with(at, "factor", "value", "GPU-hours")
    expected = [(f, v, h) for f, values in costs.factor_rows(hours).items() for v, h in values]
    assert [tuple(r) for r in by_factor.itertuples(index=False)] == expected

    # one grid picked: its rows only, and its factor levels
    _select(at, "Grid").set_value("ablation").run()
    hours = _status_hours(filled.url, "ablation")
    by_grid = _frame_with(at, "grid", "spent", "cells left", "estimate left", "no estimate")
    assert [tuple(r) for r in by_grid.itertuples(index=False)] == costs.grid_rows(hours)
    by_factor = _frame_with(at, "factor", "value", "GPU-hours")
    assert set(by_factor["factor"]) == {"dataset", "norm", "seed"}
    expected = [(f, v, h) for f, values in costs.factor_rows(hours).items() for v, h in values]
    assert [tuple(r) for r in by_factor.itertuples(index=False)] == expected
    dyt = by_factor[(by_factor["factor"] == "norm") & (by_factor["value"] == "dyt")]["GPU-hours"].iloc[0]
    assert dyt == pytest.approx(sum(r.seconds for r in _device_rows(filled.url)
                                    if r.grid == "ablation" and r.factors["norm"] == "dyt") / 3600)
    assert {"Download gpu_hours.csv", "Download gpu_hours_by_factor.csv"} <= set(_downloads(at))


def _device_rows(url: str):
    from db import engine as db_engine
    from db import views
    from db.session import scope

    engine = db_engine.create(url)
    try:
        with scope(engine, write=False) as conn:
            return views.job_device_seconds(conn)
    finally:
        engine.dispose()


def test_overview_without_device_seconds_says_so_in_one_caption(app, tmp_path):
    from db import engine as db_engine
    from db import schema
    from jobs import operator
    from tests.dashboards.conftest import _new_job

    url = f"sqlite:///{tmp_path / 'cpu.db'}"
    engine = db_engine.create(url)
    schema.upgrade(engine)
    operator.enqueue(engine, "cpu", [_new_job({"seed": s}) for s in (0, 1)])
    engine.dispose()
    at = app(url)
    assert any(h.value == "GPU-hours" for h in at.subheader)
    said = [c.value for c in at.caption if "device seconds" in c.value]
    assert len(said) == 1 and said[0].startswith("No device seconds recorded")
    assert not any("estimate left" in df.columns for df in _frames(at))


def test_curves_overlay_coloured_by_a_factor_and_filtered(filled, app):
    at = app(filled.url, "curves.py")
    assert not at.exception
    _select(at, "Grid").set_value("ablation").run()
    _select(at, "Colour by").set_value("norm").run()
    loss = _frame_with(at, "job_id", "step", "value", "colour")
    assert loss["job_id"].nunique() == 12
    assert set(loss["colour"]) == {"dyt", "layernorm"}
    row = loss[(loss["job_id"] == filled.job(dataset="alpaca", norm="dyt", seed=0)) & (loss["step"] == 37)].iloc[0]
    assert row["value"] == pytest.approx(3.0 - 37 / 100)  # 200 steps < 400 buckets: exact points
    assert any(f"12 runs, 2,400 points drawn from 2,400 logged points" in c.value for c in at.caption)

    # Filter one factor, mean per colour, coarser resolution: two lines, fewer points.
    next(m for m in at.multiselect if m.label == "dataset").set_value(["dolly"]).run()
    next(r for r in at.radio if r.label == "Lines").set_value("mean per colour").run()
    next(s for s in at.select_slider if s.label == "Points per curve").set_value(50).run()
    loss = _frame_with(at, "step", "value", "colour", "runs")
    assert set(loss["line"]) == {"dyt", "layernorm"} and set(loss["runs"]) == {3}
    assert len(loss) == 2 * 50
    # a bucket of 4 steps: its mean is the mean of 3 - s/100 over those steps
    last = loss[(loss["line"] == "dyt")].sort_values("step").iloc[-1]
    assert last["step"] == STEPS and last["value"] == pytest.approx(3.0 - (197 + 198 + 199 + 200) / 4 / 100)


def test_curves_mean_per_colour_draws_a_band_over_the_seeds(filled, app):
    from db import stats
    from tests.dashboards.conftest import val_loss

    at = app(filled.url, "curves.py")
    _select(at, "Grid").set_value("ablation").run()
    next(m for m in at.multiselect if m.label == "Metrics").set_value(["val_loss", "loss"]).run()
    _select(at, "Colour by").set_value("norm").run()
    next(m for m in at.multiselect if m.label == "dataset").set_value(["alpaca"]).run()
    next(r for r in at.radio if r.label == "Lines").set_value("mean per colour").run()
    assert not at.exception
    val, loss = (df for df in _frames(at) if {"line", "low", "high", "runs"} <= set(df.columns))
    # val_loss at step 50 of the alpaca dyt runs: base 0.8 + 0.01 * seed + (200 - 50) / 1000 over seeds 0, 1, 2:
    # mean 0.96, sd 0.01, half-width t(2) * 0.01 / sqrt(3)
    at_50 = val[(val["line"] == "dyt") & (val["step"] == 50)].iloc[0]
    seeds = [val_loss("alpaca", "dyt", s) + (STEPS - 50) / 1000 for s in (0, 1, 2)]
    half = stats.t975(2) * 0.01 / 3 ** 0.5
    assert at_50["runs"] == 3 and at_50["value"] == pytest.approx(0.96)
    assert (at_50["low"], at_50["high"]) == pytest.approx((0.96 - half, 0.96 + half))
    assert at_50["low"] == pytest.approx(stats.mean_interval(seeds).low)  # db.stats' interval, the one implementation
    assert set(val["line"]) == {"dyt", "layernorm"} and val["low"].notna().all()
    # loss is the same for every seed: a band of no width, on the line
    assert loss["low"].tolist() == pytest.approx(loss["value"].tolist())
    assert loss["high"].tolist() == pytest.approx(loss["value"].tolist())
    spec = next(json.loads(c.proto.spec) for c in at.get("vega_lite_chart") if "val_loss" in c.proto.spec)
    marks = [layer["mark"]["type"] for layer in spec["layer"]]
    assert marks == ["area", "line"]  # the band under the mean lines
    assert spec["layer"][0]["encoding"]["y2"]["field"] == "high"
    assert any("the band, its 95% t interval" in c.value for c in at.caption)


def test_a_band_is_clipped_to_what_the_quantity_can_be_and_needs_three_runs():
    import pandas as pd

    from dashboards import curves

    jobs = pd.DataFrame({"id": [1, 2, 3, 4, 5], "norm": ["dyt", "dyt", "dyt", "ln", "ln"]})
    points = pd.DataFrame({"job_id": [1, 2, 3, 4, 5], "step": [10] * 5, "value": [0.01, 0.02, 0.9, 1.0, 1.1],
                           "min": 0.0, "max": 2.0, "points": 1, "stride": 1})
    data = curves.shape(points, jobs, "norm", smoothing=0.0, mean_per_colour=True, quantity="loss").set_index("line")
    assert data.loc["dyt", "low"] == 0.0 and data.loc["dyt", "high"] > data.loc["dyt", "value"]  # no negative loss
    assert math.isnan(data.loc["ln", "low"]) and data.loc["ln", "runs"] == 2  # two runs: no band (charts.py's rule)
    free = curves.shape(points, jobs, "norm", smoothing=0.0, mean_per_colour=True, quantity="custom").set_index("line")
    assert free.loc["dyt", "low"] < 0  # a quantity of unknown range is not clipped


def test_curves_log_scale_and_smoothing_render(filled_sqlite, app):
    at = app(filled_sqlite.url, "curves.py")
    next(c for c in at.checkbox if c.label == "Log scale").check().run()
    next(s for s in at.slider if s.label.startswith("Smoothing")).set_value(0.9).run()
    assert not at.exception
    data = _frame_with(at, "value", "raw")  # smoothed values keep the raw ones beside them
    assert (data["value"] != data["raw"]).any()
    charts = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    assert charts and all(c["encoding"]["y"]["scale"]["type"] == "log" for c in charts)


def test_results_pivot_with_seed_intervals_and_variant_difference(filled, app):
    at = app(filled.url, "results.py")
    _select(at, "Grid").set_value("ablation").run()
    _select(at, "Metric").set_value("val_loss").run()
    _select(at, "Columns").set_value("norm").run()
    next(m for m in at.multiselect if m.label == "Rows").set_value(["dataset"]).run()
    _select(at, "Difference: A").set_value("dyt").run()
    _select(at, "minus B").set_value("layernorm").run()
    table = _frame_with(at, "dataset", "dyt mean", "layernorm mean", "dyt - layernorm").set_index("dataset")
    # mean ± t interval over 3 seeds (values base + 0.00/0.01/0.02: sd 0.01, t(2) = 4.303)
    assert table.loc["alpaca", "dyt mean"] == "0.8100 ± 0.0248"
    assert table.loc["dolly", "layernorm mean"] == "1.5100 ± 0.0248"
    assert table.loc["alpaca", "dyt - layernorm"].startswith("-0.2000 ± ")
    assert table.loc["dolly", "dyt - layernorm"].startswith("-0.2000 ± ")
    assert table.loc["alpaca", "dyt n"] == 3
    assert any("over seed" in c.value for c in at.caption)
    assert "Download results_val_loss.csv" in _downloads(at)


def test_results_from_the_last_logged_value_of_a_curve(filled_sqlite, app):
    at = app(filled_sqlite.url, "results.py")
    _select(at, "Grid").set_value("ablation").run()
    _select(at, "Metric").set_value("loss (last logged)").run()
    _select(at, "Columns").set_value("(none)").run()
    next(m for m in at.multiselect if m.label == "Rows").set_value(["norm"]).run()
    table = _frame_with(at, "norm", "mean").set_index("norm")
    assert table.loc["dyt", "mean"] == f"{3.0 - STEPS / 100:.4f} ± 0.0000"


def test_comparisons_win_rate_with_interval_and_outputs_side_by_side(filled, app):
    at = app(filled.url, "comparisons.py")
    rates = _frame_with(at, "win_rate_a", "ci95_low", "ci95_high")
    (row,) = rates.itertuples()
    assert (row.arm_a, row.arm_b) == filled.arms
    assert (row.prompts, row.a_wins, row.b_wins, row.ties) == (5, WINNERS.count("a"), WINNERS.count("b"), WINNERS.count("tie"))
    assert row.win_rate_a == pytest.approx(0.7)
    assert 0.0 <= row.ci95_low < 0.7 < row.ci95_high <= 1.0
    assert row.a == f"job {filled.arms[0]}: norm=dyt" and row.b == f"job {filled.arms[1]}: norm=layernorm"

    _select(at, "Prompt").set_value(2).run()
    texts = [t.value for t in at.text]
    assert texts == ["Prompt number 2?", "DYT answer to prompt 2", "LAYERNORM answer to prompt 2"]
    assert any("Verdict: b wins" in c.value for c in at.caption)


def test_timing_inference_and_training_throughput_by_variant(filled, app):
    at = app(filled.url, "timing.py")
    _select(at, "Grid").set_value("ablation").run()
    _select(at, "By").set_value("norm").run()
    inference = _frame_with(at, "norm", "tokens_per_s", "mean_latency_s").set_index("norm")
    assert inference.loc["dyt", "tokens_per_s"] == pytest.approx(50.0)
    assert inference.loc["layernorm", "tokens_per_s"] == pytest.approx(25.0)
    assert inference.loc["layernorm", "mean_latency_s"] == pytest.approx(4.0)
    training = _frame_with(at, "norm", "tokens_per_s", "step_time_s").set_index("norm")
    assert training.loc["dyt", "tokens_per_s"] == pytest.approx(1000.0)
    assert training.loc["layernorm", "tokens_per_s"] == pytest.approx(800.0)
    assert training.loc["dyt", "jobs"] == 6


def test_failures_show_error_host_slurm_job_and_retry_command(filled, app):
    at = app(filled.url, "failures.py")
    failed = _frame_with(at, "job_id", "outcome", "error_line", "retry")
    row = failed[failed["job_id"] == filled.by_state["failed"]].iloc[0]
    assert row["error_line"] == "RuntimeError: CUDA out of memory"
    assert row["host"] == FAIL_HOST and row["slurm_job"] == SLURM_JOB
    assert row["retry"].startswith(f"gridlab retry {filled.by_state['failed']} --db ")
    assert set(failed["state"]) == {"failed", "diverged"}
    assert _metrics(at)["failed attempts"] == "2"

    pick = list(failed["job_id"]).index(filled.by_state["failed"])
    _select(at, "Attempt").set_value(pick).run()
    codes = [c.value for c in at.code]
    assert any("Traceback (most recent call last)" in c and "CUDA out of memory" in c for c in codes)
    assert f"gridlab retry {filled.by_state['failed']} --db " in "\n".join(codes)
    assert any("gridlab retry --grid probe --state failed --state diverged" in c for c in codes)


def test_failures_never_show_the_database_password(filled_sqlite, app, monkeypatch):
    from dashboards import failures

    assert failures.retry_command(7, "postgresql://alice:s3cret@db.example/grid") == "gridlab retry 7"
    assert "s3cret" not in failures.db_option("postgresql://alice:s3cret@db.example/grid")
    assert failures.db_option("sqlite:///runs/gridlab.db") == " --db sqlite:///runs/gridlab.db"


def test_run_detail_shows_spec_summaries_curves_attempts_and_generations(filled, app):
    job_id = filled.arms[0]
    at = app(filled.url, "run_detail.py", query={"job": str(job_id)})
    assert _select(at, "Job").value == job_id
    assert _metrics(at)["state"] == "succeeded" and _metrics(at)["grid"] == "ablation"
    spec = at.json[0].value
    assert '"norm": "dyt"' in spec and f'"steps": {STEPS}' in spec
    summaries = _frame_with(at, "name", "value", "attempt").set_index("name")
    assert summaries.loc["val_loss", "value"] == pytest.approx(0.8)
    captions = [c.value for c in at.caption]
    assert f"loss: {STEPS} points from {STEPS} logged" in captions
    assert "val_loss: 4 points from 4 logged" in captions
    generations = _frame_with(at, "question_id", "output", "latency_s")
    assert len(generations) == 5 and generations["output"].iloc[0] == "DYT answer to prompt 0"
    events = _frame_with(at, "from_state", "to_state")
    assert events["to_state"].tolist() == ["pending", "running", "succeeded"]


def test_run_detail_of_a_failed_job_shows_its_last_error(filled_sqlite, app):
    at = app(filled_sqlite.url, "run_detail.py", query={"job": str(filled_sqlite.by_state["failed"])})
    assert at.error[0].value == "Last error: RuntimeError: CUDA out of memory"
    attempts = _frame_with(at, "number", "outcome", "slurm_job_id")
    assert attempts["slurm_job_id"].tolist() == [SLURM_JOB]


def _charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


def _chart_data(at, title: str):
    """The rows the chart titled ``title`` draws (all its datasets, concatenated)."""
    import pandas as pd
    import pyarrow as pa

    for c in at.get("vega_lite_chart"):
        if json.loads(c.proto.spec).get("title") == title:
            return pd.concat([pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in c.proto.datasets])
    raise AssertionError(f"no chart titled {title!r}")


def test_run_detail_draws_the_attention_heatmap_layer_by_head_at_the_last_probed_step(filled, app):
    """The job's attention rows (stored through its writer, conftest's fill) as the paper's
    heatmap: a cell per layer and head at step 200 with its normalised entropy, and the
    chosen layer's heads over the probed steps."""
    from dashboards import attention
    from tests.dashboards import geometry
    from tests.dashboards.conftest import (ATTENTION_HEADS, ATTENTION_LAYERS, ATTENTION_STEPS, attention_norm)

    at = app(filled.url, "run_detail.py", query={"job": str(filled.job(dataset="alpaca", norm="dyt", seed=0))})
    cells = _chart_data(at, attention.layer_head_title(200, "train"))
    assert len(cells) == ATTENTION_LAYERS * ATTENTION_HEADS and set(cells["step"]) == {200}
    got = {(r.layer, r.head): r.entropy_norm for r in cells.itertuples()}
    assert got == pytest.approx({(f"L{layer}", f"H{h}"): attention_norm(200, layer, h)
                                 for layer in range(ATTENTION_LAYERS) for h in range(ATTENTION_HEADS)})
    assert cells.set_index(["layer", "head"]).loc[("L2", "H1"), "nan"] == 2
    spec = next(c for c in _charts(at) if c.get("title") == attention.layer_head_title(200, "train"))
    rect, text = spec["layer"]
    assert rect["mark"]["type"] == "rect" and rect["encoding"]["color"]["field"] == "entropy_norm"
    assert rect["encoding"]["color"]["scale"]["domain"] == [0, 1]
    assert rect["encoding"]["y"]["sort"] == ["L0", "L1", "L2"] and rect["encoding"]["x"]["sort"] == ["H0", "H1", "H2", "H3"]
    assert text["mark"]["type"] == "text"
    assert "Step 200: 12 heads in 3 layers; 33% at 3/4 of their maximum entropy or more (entropic overload); " \
           "2 NaN values in the attention matrices." in [c.value for c in at.caption]
    over = _chart_data(at, attention.layer_steps_title("L0", "train"))
    assert sorted(set(over["step"])) == [str(s) for s in ATTENTION_STEPS] and len(over) == 2 * ATTENTION_HEADS
    _select(at, "Layer over the steps").set_value("L2").run()
    over = _chart_data(at, attention.layer_steps_title("L2", "train"))
    assert {(r.step, r.head): r.entropy_norm for r in over.itertuples()} == pytest.approx(
        {(str(s), f"H{h}"): attention_norm(s, 2, h) for s in ATTENTION_STEPS for h in range(ATTENTION_HEADS)})
    for element in at.get("vega_lite_chart"):
        import pyarrow as pa

        data = {d.name: pa.ipc.open_stream(d.data.data).read_all().to_pylist() for d in element.proto.datasets}
        assert geometry.spec_problems(json.loads(element.proto.spec), data) == []


def test_run_detail_of_a_job_without_attention_probes_says_so(filled_sqlite, app):
    at = app(filled_sqlite.url, "run_detail.py", query={"job": str(filled_sqlite.arms[1])})
    assert "No attention probes stored for this job." in [c.value for c in at.caption]
    assert not any("attention entropy" in str(c.get("title", "")) for c in _charts(at))


def test_factor_effects_panels_per_factor_and_interaction(filled, app):
    at = app(filled.url, "effects.py")
    _select(at, "Grid").set_value("ablation").run()
    _select(at, "Metric").set_value("val_loss").run()
    # val_loss = 1.0 (alpaca) / 1.5 (dolly) - 0.2 (dyt) + 0.01 * seed, 3 seeds per cell
    ranked = _frame_with(at, "factor", "eta_squared", "spread")
    assert ranked["factor"].tolist() == ["dataset", "norm", "seed"]
    assert ranked.set_index("factor").loc["norm", "spread"] == pytest.approx(0.2)
    assert ranked.set_index("factor").loc["norm", "lowest"] == "dyt"
    levels = _frame_with(at, "factor", "level", "mean", "low", "high", "n")
    dyt = levels[(levels["factor"] == "norm") & (levels["level"] == "dyt")].iloc[0]
    assert dyt["mean"] == pytest.approx(1.06) and dyt["n"] == 6  # over both datasets and every seed
    assert dyt["low"] < 1.06 < dyt["high"]
    assert [c.get("title") for c in _charts(at)][:3] == [
        f"{f} (η² = {e:.2f})" for f, e in zip(ranked["factor"], ranked["eta_squared"])]

    _select(at, "Rows").set_value("norm").run()
    _select(at, "Columns").set_value("dataset").run()
    cells = _frame_with(at, "norm", "dataset", "mean", "n").set_index(["norm", "dataset"])
    assert cells.loc[("dyt", "alpaca"), "mean"] == pytest.approx(0.81)
    assert cells.loc[("layernorm", "dolly"), "mean"] == pytest.approx(1.51)
    assert cells["n"].tolist() == [3, 3, 3, 3]
    heatmap = _charts(at)[-1]
    assert heatmap["title"] == "val_loss: norm × dataset" and heatmap["height"] == {"step": 28}


def test_factor_effects_match_what_the_cli_prints(filled_sqlite, app, tmp_path):
    from tests.support import cli

    at = app(filled_sqlite.url, "effects.py")
    _select(at, "Grid").set_value("ablation").run()
    _select(at, "Metric").set_value("val_loss").run()
    levels = _frame_with(at, "factor", "level", "mean", "low", "high", "n")
    out = cli.invoke(["results", "--grid", "ablation", "--metric", "val_loss", "--effects", "--db", filled_sqlite.url],
                     tmp_path, env={"COLUMNS": "200", "GRIDLAB_DB": None})
    assert out.code == 0, out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if "│" in line]
    for row in levels.itertuples():
        printed = next(line for line in lines if f" {row.level} " in line and f"[{row.low:.4g}, {row.high:.4g}]" in line)
        assert f" {row.mean:.4g} " in printed and f" {row.n} " in printed


def test_compare_two_runs_curves_figures_and_the_settings_that_differ(filled, app):
    a, b = filled.job(dataset="alpaca", norm="dyt", seed=0), filled.job(dataset="alpaca", norm="layernorm", seed=0)
    at = app(filled.url, "run_compare.py", query={"jobs": f"{a},{b}"})
    picked = next(m for m in at.multiselect if m.label.startswith("Runs to compare"))
    assert picked.value == [f"job {a}", f"job {b}"]  # from ?jobs= in the link
    figures = _frame_with(at, "figure").set_index("figure")
    first, second = f"job {a} (norm=dyt)", f"job {b} (norm=layernorm)"
    assert figures.loc["val_loss", first] == pytest.approx(0.8) and figures.loc["val_loss", second] == pytest.approx(1.0)
    assert figures.loc["val_loss", f"{second} − {first}"] == pytest.approx(0.2)
    settings = _frame_with(at, "setting")
    assert settings["setting"].tolist() == ["norm"] and settings[first].tolist() == ["dyt"]
    loss = _chart_data(at, "loss")
    assert set(loss["job_id"]) == {a, b} and set(loss["colour"]) == {first, second}
    assert len(loss) == 2 * STEPS and loss["value"].min() == pytest.approx(3.0 - STEPS / 100)
    charts = _charts(at)
    assert [c["title"] for c in charts] == ["loss", "val_loss"]
    assert charts[1]["mark"]["point"]  # val_loss every 50 steps: its points are drawn

    next(c for c in at.checkbox if c.label == "Show every setting").check().run()
    assert set(_frame_with(at, "setting")["setting"]) == {"dataset", "experiment", "norm", "seed", "steps"}


def test_compare_two_cells_pools_their_seeds(filled, app):
    at = app(filled.url, "run_compare.py")
    _select(at, "Grid").set_value("ablation").run()
    next(r for r in at.radio if r.label == "Compare").set_value("cells (seeds pooled)").run()
    pooled = next(m for m in at.multiselect if m.label == "Pool over")
    assert pooled.value == ["seed"]
    cells = next(m for m in at.multiselect if m.label.startswith("Cells to compare"))
    assert len(cells.options) == 4
    cells.set_value(["ablation: dataset=alpaca, norm=dyt", "ablation: dataset=alpaca, norm=layernorm"]).run()
    figures = _frame_with(at, "figure").set_index("figure")
    assert figures.loc["val_loss", "norm=dyt"] == pytest.approx(0.81)
    assert figures.loc["val_loss", "norm=layernorm"] == pytest.approx(1.01)
    assert figures.loc["val_loss", "norm=dyt n"] == 3
    assert figures.loc["val_loss", "norm=layernorm − norm=dyt"] == pytest.approx(0.2)
    assert figures.loc["val_loss", "norm=layernorm − norm=dyt ci95"] == pytest.approx(2.776 * 0.01 * (2 / 3) ** 0.5, rel=1e-3)  # Welch, df = 4
    settings = _frame_with(at, "setting").set_index("setting")
    assert settings.loc["norm", "norm=dyt"] == "dyt" and settings.loc["seed", "norm=dyt"] == "varies: 0, 1, 2"
    loss = _chart_data(at, "loss")
    assert set(loss["runs"]) == {3} and set(loss["colour"]) == {"norm=dyt", "norm=layernorm"}
    assert len(loss) == 2 * STEPS  # one line per cell: the mean over its three runs at each step


def test_empty_database_pages_say_what_to_do(sqlite_url, app):
    from db import engine as db_engine
    from db import schema

    eng = db_engine.create(sqlite_url)
    schema.upgrade(eng)
    eng.dispose()
    for page in ("overview.py", "curves.py", "results.py", "comparisons.py", "effects.py", "run_compare.py", "timing.py",
                 "failures.py", "run_detail.py"):
        at = app(sqlite_url, page)
        assert not at.exception, page
        assert at.info or at.success, page


def test_a_database_that_is_not_there_is_one_clear_error(tmp_path, app, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.dashboards.conftest import APP

    monkeypatch.setenv("GRIDLAB_DB", f"sqlite:///{tmp_path / 'missing.db'}")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert "does not exist" in at.error[0].value
