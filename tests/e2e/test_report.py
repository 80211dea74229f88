"""`gridlab report` and `gridlab export` on a database filled the way workers fill it
(tests/dashboards/conftest.py's ``fill``: dataset x norm x seed, val_loss known exactly, one
PairRM judge of 5 prompts, timed answers): the Markdown tables' numbers are checked against
values computed here independently (scipy), the PNGs are opened, and the exported tables are
read back with pandas."""

from __future__ import annotations

import math
import re
import uuid

import pytest

from tests.dashboards import conftest as filled_db
from tests.support import cli

pytestmark = pytest.mark.e2e
import scipy.stats as scipy_stats  # noqa: E402  (a dev dependency)
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def filled(request, tmp_path_factory):
    from tests import conftest as root

    if request.param == "sqlite":
        yield filled_db.fill(f"sqlite:///{tmp_path_factory.mktemp('report') / 'gridlab.db'}")
        return
    root.require_pg()
    name = f"gridlab_test_report_{uuid.uuid4().hex[:8]}"
    root._pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield filled_db.fill(f"{root.PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}")
    finally:
        root._pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def table(markdown: str, title_start: str) -> list[dict[str, str]]:
    """The rows of the Markdown table whose bold title begins with ``title_start``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"**{title_start}"))
    header = [c.strip() for c in lines[start + 2].strip("|").split("|")]
    rows = []
    for line in lines[start + 4:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def numbers(text: str) -> list[float]:
    return [float(x) for x in NUMBER.findall(text.replace(",", ""))]


def close(text: str, expected: list[float], rel: float = 2e-3) -> None:
    """``text`` (mean [low, high], 4 significant digits) holds ``expected``."""
    got = numbers(text)
    assert len(got) == len(expected), (text, expected)
    for g, e in zip(got, expected):
        assert g == pytest.approx(e, rel=rel, abs=1e-3), (text, expected)


def t_interval(values: list[float]) -> list[float]:
    n = len(values)
    mean = sum(values) / n
    half = scipy_stats.t.ppf(0.975, n - 1) * scipy_stats.tstd(values) / math.sqrt(n)
    return [mean, mean - half, mean + half]


def test_report_tables_match_the_database(filled, tmp_path):
    from PIL import Image

    out = tmp_path / "report"
    from harness import terminal

    r = cli.invoke(["report", "ablation", "--out", str(out), "--db", filled.url], cwd=tmp_path,
                   patches={(terminal.console, "width"): 100})  # a 100-column terminal
    assert r.code == 0, r.stderr
    assert "Key results" in r.stdout and "PairRM head-to-head" in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 100
    md = (out / "report.md").read_text()

    # Key Results: layernorm vs dyt per dataset, paired over seeds 0..2.
    key = {row["group"]: row for row in table(md, "Key results")}
    assert set(key) == {"dataset=alpaca", "dataset=dolly"}
    for dataset in ("alpaca", "dolly"):
        row = key[f"dataset={dataset}"]
        ln = [filled_db.val_loss(dataset, "layernorm", s) for s in (0, 1, 2)]
        dyt = [filled_db.val_loss(dataset, "dyt", s) for s in (0, 1, 2)]
        assert row["arm"] == "dyt" and row["pairs"] == "3"
        close(row["layernorm"], t_interval(ln))
        close(row["arm's"], t_interval(dyt))
        close(row["gap"], [-0.2, -0.2, -0.2])  # the same gap at every seed: a zero-width interval
        close(row["gap %"], t_interval([100 * (d / b - 1) for d, b in zip(dyt, ln)]), rel=5e-3)
        assert row["paired t p"] == "<0.0001"

    # PairRM: a (dyt) wins 3, loses 1, ties 1 on 5 questions (one turn each).
    from db import stats

    (h2h,) = table(md, "PairRM head-to-head")
    assert h2h["a vs b"].startswith("dyt vs layernorm, seed=0 (judge job ")
    assert h2h["group"] == "dataset=alpaca" and h2h["judged"] == "5" and h2h["a-b-tie"] == "3-1-1"
    rate, low, high = stats.bootstrap_win_rate(filled_db.WINNERS)
    close(h2h["win rate a [95%]"], [0.7, low, high])
    assert low < 0.7 < high
    assert float(h2h["binomial p"]) == pytest.approx(scipy_stats.binomtest(3, 4).pvalue, abs=1e-4)

    # Timing: dyt 100 tokens in 2 s per answer, layernorm in 4 s: +100 %, equal work.
    timing = table(md, "Inference timing per arm")
    per_arm = {row["arm"]: row for row in timing if row["answers"]}
    assert set(per_arm) == {"dyt seed=0", "layernorm seed=0"}
    close(per_arm["dyt seed=0"]["tokens/s [95%]"], [50, 50, 50])
    close(per_arm["layernorm seed=0"]["tokens/s [95%]"], [25, 25, 25])
    (change,) = [row for row in timing if row["arm"] == "dyt over layernorm, 1 seed(s)"]
    assert change["cell"] == "dataset=alpaca"
    close(change["change [95%]"], [100, 100, 100])
    assert "Equal work: every prompt got the same number of new tokens" in md

    # Losses per dataset and arm over the seeds.
    quality = {(row["cell"], row["arm"]): row for row in table(md, "Loss and reference metrics")}
    close(quality[("dataset=dolly", "layernorm")]["val loss"],
          t_interval([filled_db.val_loss("dolly", "layernorm", s) for s in (0, 1, 2)]))
    assert quality[("dataset=dolly", "layernorm")]["train loss"].startswith("1 ")

    # Figures: the curves the fill logged, valid PNGs, and the attention heatmap from the attention rows.
    for name in ("loss", "val_loss", "grad_norm"):
        path = out / "figures" / f"{name}.png"
        assert f"](figures/{name}.png)" in md
        assert path.stat().st_size > 1000
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 200
    assert "No token_accuracy curve in this database." in md
    assert "](figures/attention_entropy.png)" in md and "From the attention rows" in md
    assert (out / "figures" / "attention_entropy.png").stat().st_size > 1000


def test_the_report_heatmap_averages_each_layers_heads_at_the_last_probed_step(filled):
    """The one job with attention rows (alpaca, dyt, seed 0): its row of the heatmap is each layer's
    heads averaged at step 200, the last it probed; no other arm has a row."""
    from db import engine as db_engine
    from harness.reporting import arms, document
    from jobs import reports

    engine = db_engine.create(filled.url)
    try:
        results = reports.grid_results(engine, "ablation")
    finally:
        engine.dispose()
    cells = arms.cells(results.jobs, results.summaries)
    entropy = document.entropy_from_rows(results.attention, cells, arms.layout(cells))
    assert entropy.layers == ("L0", "L1", "L2") and entropy.step == "last probed train step"
    (row,) = entropy.values
    heads = range(filled_db.ATTENTION_HEADS)
    for layer, value in enumerate(row):
        assert math.isclose(value, sum(filled_db.attention_norm(200, layer, h) for h in heads) / len(heads))
    assert entropy.rows == (next(r for r in entropy.rows if "dyt" in r),)


def test_report_without_a_norm_factor_or_with_one_seed_says_so(filled, tmp_path):
    from harness.reporting import arms, tables

    r = cli.invoke(["report", "probe", "--out", str(tmp_path / "probe"), "--db", filled.url], cwd=tmp_path)
    assert r.code == 0, r.stderr
    md = (tmp_path / "probe" / "report.md").read_text()
    assert "No norm factor in this grid" in md and "no attention data in this database" in md

    one_seed = [arms.Cell(1, {"norm": "layernorm", "seed": 0}, "succeeded", {"val_loss": 2.0}),
                arms.Cell(2, {"norm": "dyt", "seed": 0}, "succeeded", {"val_loss": 2.1})]
    (row,) = tables.key_results(one_seed, arms.layout(one_seed)).rows
    assert row[2] == "1" and row[-1] == "n/a"
    close(row[5], [0.1])


def test_report_of_an_unknown_grid_is_a_one_line_error(filled, tmp_path):
    r = cli.invoke(["report", "nope", "--db", filled.url], cwd=tmp_path)
    cli.assert_one_line_error(r, "no grid named 'nope'", "ablation")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_round_trips_through_pandas(filled, tmp_path, fmt):
    import pandas as pd

    from db import database
    from jobs import reports

    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / fmt
    r = cli.invoke(["export", "ablation", "--format", fmt, "--out", str(out), "--db", filled.url], cwd=tmp_path)
    assert r.code == 0, r.stderr
    read = (lambda p: pd.read_csv(p, dtype={"question_id": str})) if fmt == "csv" else pd.read_parquet
    frames = {name: read(out / f"{name}.{fmt}") for name in ("jobs", "summaries", "curves", "generations", "judgments")}

    jobs = frames["jobs"]
    assert len(jobs) == 12 and set(jobs["state"]) == {"succeeded"}
    for row in jobs.itertuples():
        assert filled.job(dataset=row.dataset, norm=row.norm, seed=int(row.seed)) == row.job_id

    engine = database.open_engine(filled.url)
    try:
        expected = {(r.id, r.name): r.value for r in reports.summaries(engine, "ablation")}
        results = reports.grid_results(engine, "ablation")
    finally:
        engine.dispose()
    got = {(int(j), n): v for j, n, v in frames["summaries"][["job_id", "name", "value"]].itertuples(index=False)}
    assert got == pytest.approx(expected)

    curves = frames["curves"]
    assert len(curves) == len(results.curves) == 12 * (5 * filled_db.STEPS + 4)
    val = curves[(curves["name"] == "val_loss") & (curves["job_id"] == filled.job(dataset="dolly", norm="dyt", seed=2))]
    assert list(val["step"]) == [50, 100, 150, 200]
    assert list(val["value"]) == pytest.approx([filled_db.val_loss("dolly", "dyt", 2) + (200 - s) / 1000
                                                for s in (50, 100, 150, 200)])

    verdicts = frames["judgments"].sort_values("question_id")
    assert list(verdicts["winner"]) == filled_db.WINNERS
    assert set(verdicts["arm_a"]) == {filled.arms[0]} and set(verdicts["arm_b"]) == {filled.arms[1]}
    gens = frames["generations"]
    assert len(gens) == 10 and gens.groupby("job_id")["latency_s"].sum().to_dict() == {
        filled.arms[0]: 10.0, filled.arms[1]: 20.0}


def test_head_to_head_pools_seeds_and_groups_resampling_questions():
    """Two datasets x two seeds, a judge per (dataset, seed) on 3 questions of 2 turns: one row per
    judge, one per dataset over its seeds, one over everything; each interval resamples questions."""
    from db import stats, views
    from harness.reporting import arms, tables

    cells, verdicts, job = [], [], 100
    plan = {"a": ["a", "a", "b", "tie", "a", "a"], "b": ["b", "b", "a", "a", "tie", "b"]}
    for d in ("alpaca", "dolly"):
        for seed in (0, 1):
            dyt = arms.Cell(job, {"dataset": d, "norm": "dyt", "seed": seed}, "succeeded", {"val_loss": 1.0})
            ln = arms.Cell(job + 1, {"dataset": d, "norm": "layernorm", "seed": seed}, "succeeded", {"val_loss": 1.1})
            cells += [dyt, ln]
            winners = plan["a" if d == "alpaca" else "b"]
            verdicts += [views.StoredJudgment(arm_a=dyt.id, arm_b=ln.id, judge="pairrm", prompt_set="mt", question_id=f"q{i // 2}",
                                              turn=1 + i % 2, winner=w, logit=0.0, job_id=job + 2)
                         for i, w in enumerate(winners)]
            job += 3
    rows = tables.head_to_head(verdicts, cells, arms.layout(cells)).rows
    assert [(r[0], r[2]) for r in rows] == [("dataset=alpaca", "6")] * 2 + [("dataset=alpaca", "12")] + [
        ("dataset=dolly", "6")] * 2 + [("dataset=dolly", "12"), ("all 2 groups", "24")]
    assert rows[2][1] == "dyt vs layernorm, 2 judge jobs pooled" and rows[2][3] == "8-2-2"
    assert rows[6][1] == "dyt vs layernorm, 4 judge jobs pooled" and rows[6][3] == "12-8-4"
    every = [v for v in verdicts]
    rate, low, high = stats.bootstrap_win_rate_by_question([v.winner for v in every],
                                                           [(v.prompt_set, v.question_id) for v in every])
    close(rows[6][5], [rate, low, high], rel=5e-3)
    assert float(rows[6][6]) == pytest.approx(scipy_stats.binomtest(12, 20).pvalue, abs=1e-4)
