"""The gridlab command, run as a user runs it: a small grid end to end, and bad inputs."""

from __future__ import annotations

import hashlib

import pytest

from tests.support import cli

pytestmark = pytest.mark.e2e

SMALL_GRID = """
name: small
experiment: tiny_lm
fixed: {steps: 6, batch_size: 4, seq_len: 32, checkpoint_every: 3, eval_batches: 1}
axes:
  activation: [gelu, relu]
  lr: [1.0e-3, 3.0e-3]
"""


def test_small_grid_end_to_end(db_url, tmp_path):
    grid = tmp_path / "small.yaml"
    grid.write_text(SMALL_GRID)
    r = cli.run(["enqueue", str(grid)], cwd=tmp_path, db=db_url)
    assert r.returncode == 0, r.stderr
    assert "4 cells, 4 new, 0 already queued" in r.stdout
    r = cli.run(["enqueue", str(grid)], cwd=tmp_path, db=db_url)
    assert "4 cells, 0 new, 4 already queued" in r.stdout
    r = cli.run(["work", "--workers", "2"], cwd=tmp_path, db=db_url)
    assert r.returncode == 0, r.stderr
    r = cli.run(["status"], cwd=tmp_path, db=db_url)
    assert r.returncode == 0, r.stderr
    assert "By activation" in r.stdout and "By lr" in r.stdout
    row = next(line for line in r.stdout.splitlines() if line.strip("│ ").startswith("small"))
    assert [c.strip() for c in row.split("│")[2:9]] == ["0", "0", "4", "0", "0", "0", "4"]
    r = cli.run(["results"], cwd=tmp_path, db=db_url)
    assert r.returncode == 0 and "val_loss" in r.stdout

    from sqlalchemy import func, select

    from db import engine as db_engine
    from db.models import metrics

    eng = db_engine.create(db_url)
    with eng.connect() as conn:
        counts = conn.execute(select(metrics.c.job_id, func.count()).where(metrics.c.name == "loss")
                              .group_by(metrics.c.job_id)).all()
    eng.dispose()
    assert sorted(n for _, n in counts) == [6, 6, 6, 6]


def test_help_on_every_command(tmp_path):
    """Every command and sub-command, found by walking the command group, answers --help
    (in process; the real command once)."""
    import click

    from harness.cli import cli as group

    r = cli.run(["--help"], cwd=tmp_path)
    assert r.returncode == 0 and "Usage:" in r.stdout

    def paths(command, prefix=()):
        for name, sub in getattr(command, "commands", {}).items():
            yield (*prefix, name)
            if isinstance(sub, click.Group):
                yield from paths(sub, (*prefix, name))

    found = list(paths(group))
    assert {("enqueue",), ("work",), ("status",), ("launch",), ("db", "upgrade")} <= set(found), found
    for path in found:
        r = cli.invoke([*path, "--help"], cwd=tmp_path)
        assert r.returncode == 0 and "Usage:" in r.stdout, path


def test_params_lists_what_a_grid_may_set(tmp_path):
    r = cli.run(["params"], cwd=tmp_path)
    assert r.returncode == 0 and all(name in r.stdout for name in ("sft", "tiny_lm", "judge", "generate"))
    r = cli.run(["params", "sft"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = {line.split("│")[1].strip(): line for line in r.stdout.splitlines() if line.count("│") >= 5}
    assert {"model", "norm", "peft", "strategy", "packing", "torch_compile", "bf16"} <= set(rows)
    assert "layernorm, dyt, rmsnorm, none" in rows["norm"] and "false" in rows["packing"]
    cli.assert_one_line_error(cli.run(["params", "nope"], cwd=tmp_path), "unknown experiment 'nope'", "sft")


BAD_GRIDS = {
    "malformed YAML": ("name: x\naxes:\n  lr: [1, 2\n", ["YAML syntax error", "line "]),
    "unknown axis": ("name: x\naxes: {colour: [red]}\n", ["unknown setting 'colour'", "valid: model"]),
    "unknown model": ("name: x\naxes: {model: [gpt-17]}\n", ["'gpt-17' is not one of: tiny-gpt2"]),
}


@pytest.mark.parametrize("case", list(BAD_GRIDS))
def test_bad_grid_is_one_line_and_writes_nothing(case, tmp_path):
    text, needles = BAD_GRIDS[case]
    grid = tmp_path / "bad.yaml"
    grid.write_text(text)
    r = cli.run(["enqueue", str(grid)], cwd=tmp_path)
    cli.assert_one_line_error(r, "bad.yaml", *needles)
    assert not (tmp_path / "gridlab.db").exists()


def test_missing_grid_file(tmp_path):
    cli.assert_one_line_error(cli.run(["enqueue", "nope.yaml"], cwd=tmp_path), "nope.yaml: file not found")


@pytest.mark.parametrize(
    ("url", "needles"),
    [
        ("postgresql://postgres@127.0.0.1:1/gridlab", ["cannot reach database", "check that the server is running"]),
        ("mysql://root@127.0.0.1/gridlab", ["unsupported scheme 'mysql'", "postgresql://"]),
        ("sqlite:////nonexistent-dir/x/gridlab.db", ["does not exist"]),
    ],
)
def test_bad_database_url_is_one_line(url, needles, tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text(SMALL_GRID)
    cli.assert_one_line_error(cli.run(["enqueue", str(grid), "--db", url], cwd=tmp_path), *needles)


def test_non_gridlab_database_is_refused_and_untouched(tmp_path):
    import sqlite3

    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers VALUES (1, 'ada')")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    grid = tmp_path / "g.yaml"
    grid.write_text(SMALL_GRID)
    r = cli.run(["enqueue", str(grid), "--db", f"sqlite:///{path}"], cwd=tmp_path)
    cli.assert_one_line_error(r, "holds tables gridlab did not make", "customers")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_status_without_database_says_what_to_do(tmp_path):
    cli.assert_one_line_error(cli.run(["status"], cwd=tmp_path), "no database at gridlab.db", "gridlab enqueue")


def test_cancel_needs_a_selection(tmp_path):
    cli.assert_one_line_error(cli.run(["cancel"], cwd=tmp_path), "no jobs selected")


def _loss_steps(db_url: str, grid: str) -> dict[int, list[tuple[int, int]]]:
    """job id -> [(step, attempt)] of its loss curve."""
    from db import engine as db_engine
    from db.session import scope
    from jobs import queries, reports
    from jobs.queue import Queue

    eng = db_engine.create(db_url)
    try:
        queue = Queue(eng)
        with scope(eng, write=False) as conn:
            return {j.id: [(r.step, r.attempt) for r in queries.job_metrics(conn, j.id, "loss")]
                    for j in reports.jobs(queue.engine, grid=grid)}
    finally:
        eng.dispose()


@pytest.mark.parametrize("grids", [("a", "b"), ("same", "same")], ids=["two grids", "one grid in two databases"])
def test_two_databases_sharing_a_runs_folder_never_share_a_run(tmp_path, grids):
    """gridlab enqueue a.yaml --db a.db && gridlab work --db a.db, then the same with b: job ids
    restart at 1 in the new database, and once its job 1 found grid a's checkpoints under
    runs/job-1 and trained nothing. Each database's jobs now train their own steps from step 1."""
    grid_text = """
name: {name}
experiment: tiny_lm
fixed: {{steps: 6, batch_size: 4, seq_len: 32, checkpoint_every: 2, eval_batches: 1}}
axes: {{lr: [1.0e-3]}}
"""
    for name, db_name in zip(grids, ("a", "b")):
        (tmp_path / f"{name}.yaml").write_text(grid_text.format(name=name))
        db = f"sqlite:///{tmp_path / (db_name + '.db')}"
        r = cli.run(["enqueue", f"{name}.yaml", "--db", db], cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        r = cli.run(["work", "--db", db], cwd=tmp_path)  # default --runs-dir runs, shared
        assert r.returncode == 0, r.stderr
        (curve,) = _loss_steps(db, name).values()
        assert [s for s, _ in curve] == list(range(1, 7)), f"grid {name}'s job trained its own 6 steps"
    folders = sorted(p.relative_to(tmp_path / "runs").as_posix() for p in (tmp_path / "runs").glob("*/job-*"))
    assert len(folders) == 2 and all(f.split("-")[0] == n for f, n in zip(folders, sorted(grids))), folders


def _finish_demo_with_figures(db_url: str, tmp_path) -> dict[int, dict]:
    """The demo grid enqueued by the CLI, then each job finished through the queue as a
    worker would, with headline figures (no training): job id -> its figures."""
    from jobs.metrics import MetricsWriter
    from jobs.queue import Queue, WorkerInfo
    from tests.conftest import migrated_engine

    r = cli.run(["enqueue", str(cli.REPO / "grids" / "demo.yaml")], cwd=tmp_path, db=db_url)
    assert r.returncode == 0, r.stderr
    engine = migrated_engine(db_url)
    queue = Queue(engine)
    figures = {}
    while (claimed := queue.claim(WorkerInfo.here("w"))) is not None:
        job_id = claimed.job.id
        figures[job_id] = ({"win_rate_a": 0.55} if claimed.job.experiment == "judge" else
                           {"val_loss": 4.0 + job_id / 7, "val_perplexity": 50.0 + job_id, "trainable_params": 1536.0 * job_id,
                            "params": 123456.0, "gen_total_s": 0.25})
        MetricsWriter(engine, claimed.lease).summary(figures[job_id])
        queue.complete(claimed.lease)
    engine.dispose()
    return figures


def test_results_of_the_demo_fit_100_columns_and_parse_back_as_csv_tsv_json(db_url, tmp_path):
    import csv
    import io
    import json

    figures = _finish_demo_with_figures(db_url, tmp_path)
    judge = next(j for j, f in figures.items() if "win_rate_a" in f)
    cells = {j: f for j, f in figures.items() if j != judge}

    r = cli.run(["results"], cwd=tmp_path, db=db_url, env={"COLUMNS": "100"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(map(len, lines)) <= 100 and "…" not in r.stdout  # nothing cut: factor values, headings, figures
    rows = {int(line.split()[0]): line.split() for line in lines if " tiny-" in line}
    assert set(rows) == set(cells)  # the judge job is not a row ...
    assert "dyt vs layernorm" not in r.stdout and "1 judge job(s) left out" in " ".join(r.stdout.split())  # ... but said
    assert {row[1] for row in rows.values()} == {"tiny-gpt2", "tiny-pythia", "tiny-t5"}  # whole model names
    assert all(row[-1] == f"{int(cells[j]['trainable_params']):,}" for j, row in rows.items())
    assert "params: no room at this width" in " ".join(r.stdout.split())  # the fourth figure: named, not cut

    for fmt, dialect in (("csv", "excel"), ("tsv", "excel-tab")):
        r = cli.run(["results", "--format", fmt], cwd=tmp_path, db=db_url, env={"COLUMNS": "100"})
        assert r.returncode == 0, r.stderr
        parsed = list(csv.DictReader(io.StringIO(r.stdout), dialect=dialect))
        assert {int(p["job"]) for p in parsed} == set(cells)
        for p in parsed:
            job = int(p["job"])
            assert p["state"] == "succeeded" and p["model"].startswith("tiny-") and p["dyt_calibrate"] in ("true", "false")
            assert float(p["val_loss"]) == cells[job]["val_loss"]  # full precision, not 4 digits
            assert float(p["gen_total_s"]) == 0.25  # every figure, not only the headline ones
            assert "win_rate_a" not in p
    by_job = {p["job"]: p for p in parsed}
    first = min(cells)
    assert by_job[str(first)]["norm"] == "layernorm" and by_job[str(first)]["lr"] == "0.003"

    r = cli.run(["results", "--format", "json", "--metric", "val_loss"], cwd=tmp_path, db=db_url)
    assert r.returncode == 0, r.stderr
    records = json.loads(r.stdout)
    assert [rec["job"] for rec in records] == sorted(cells)
    assert records[0] == {"job": first, "state": "succeeded", "model": "tiny-gpt2", "norm": "layernorm",
                          "dyt_calibrate": False, "activation": "keep", "peft": "lora", "strategy": "frozen",
                          "lr": 0.003, "val_loss": cells[first]["val_loss"]}


def test_commands_that_read_grids_and_the_database_import_no_training_stack(tmp_path):
    """``gridlab enqueue``, ``check`` and ``status`` (and ``launch``, whose readiness check is
    ``check``'s) know model names and cache paths without torch or transformers: importing
    them once cost each of these commands about 3 s."""
    code = (
        "import sys\nfrom harness.cli import main\n"
        f"for argv in (['enqueue', {str(cli.REPO / 'grids' / 'demo.yaml')!r}], ['check', {str(cli.REPO / 'grids' / 'demo.yaml')!r}],"
        " ['status']):\n"
        "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code in (0, None), (argv, e.code)\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'peft', 'datasets') if m in sys.modules))\n"
    )
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env=cli.environment(db=f"sqlite:///{tmp_path / 'gridlab.db'}"))
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout, r.stdout[-500:]
