"""Provenance on screen: `gridlab show` prints it, `gridlab results` and `gridlab compare`
warn when pooled jobs ran different code or environments and say which (a warning line
and a column); names and values holding Rich markup print as text. Both backends."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from db import engine as db_engine
from db import schema
from jobs import operator
from jobs.metrics import MetricsWriter
from jobs.operator import NewJob
from jobs.queue import Queue
from tests.contract.test_provenance import CODE_A, CODE_B, ENV_1, ENV_2, worker
from tests.support import cli

pytestmark = pytest.mark.e2e


def _job(factors: dict) -> NewJob:
    spec = {"experiment": "tiny_lm", **factors}
    return NewJob(spec_hash=hashlib.sha256(repr(sorted(spec.items())).encode()).hexdigest(), spec=spec,
                  factors=factors, experiment="tiny_lm")


@pytest.fixture
def ran(db_url):
    """Grid g: four jobs, two under code A / env 1 and two under code B (dirty) / env 2."""
    eng = db_engine.create(db_url)
    schema.upgrade(eng)
    queue = Queue(eng)
    text = "name: g\naxes: {lr: [0.1, 0.2], seed: [0, 1]}\n"
    operator.enqueue(queue.engine, "g", [_job({"lr": lr, "seed": s}) for lr in (0.1, 0.2) for s in (0, 1)],
                  source_path="grids/g.yaml", source_text=text)
    ids = []
    for i in range(4):
        w = worker(f"w{i}") if i < 2 else worker(f"w{i}", code=CODE_B, env=ENV_2)
        claimed = queue.claim(w)
        MetricsWriter(eng, claimed.lease).summary({"val_loss": 1.0 + i})
        queue.complete(claimed.lease)
        ids.append(claimed.job.id)
    eng.dispose()
    return db_url, ids, text


def test_show_prints_the_provenance_of_each_attempt(ran, tmp_path):
    url, ids, text = ran
    r = cli.invoke(["show", str(ids[2]), "--db", url], tmp_path)
    assert r.code == 0, r.stderr
    out = r.stdout
    assert "grid file: version 1 of 1 (sha256 " in out and "read from grids/g.yaml" in out
    assert "attempt 1: code 11111111+dirty:dddddd (commit 111111111111, dirty, diff sha256 dddddddddddd" in out
    assert "from pinned snapshot /ckpt/code/abc" in out
    assert "environment: CPython 3.11.7; torch 2.5.1 (CUDA 12.4)" in out
    assert "machine: gpu-1 (Linux), 8 CPUs, 2 x NVIDIA H100, driver 550.54, CUDA 12.4" in out
    diff = cli.invoke(["show", str(ids[2]), "--diff", "--db", url], tmp_path)
    assert (diff.code, diff.stdout) == (0, CODE_B.diff)
    assert cli.invoke(["show", str(ids[0]), "--diff", "--db", url], tmp_path).stdout == ""  # clean tree
    assert cli.invoke(["show", str(ids[0]), "--freeze", "--db", url], tmp_path).stdout == ENV_1.freeze + "\n"
    assert cli.invoke(["show", str(ids[0]), "--grid-file", "--db", url], tmp_path).stdout == text


def test_results_warn_about_drift_and_mark_each_job(ran, tmp_path):
    url, ids, _ = ran
    r = cli.invoke(["results", "--db", url], tmp_path)
    assert r.code == 0, r.stderr
    warning = [line for line in r.stdout.splitlines() if line.startswith("warning: ")]
    assert warning == [f"warning: these 4 jobs ran under 2 code versions (11111111: jobs {ids[0]}-{ids[1]}; "
                       f"11111111+dirty:dddddd: jobs {ids[2]}-{ids[3]}) and 2 environments (torch 2.4.0, torch_cuda "
                       f"12.1: jobs {ids[0]}-{ids[1]}; torch 2.5.1, torch_cuda 12.4: jobs {ids[2]}-{ids[3]}); compare "
                       "with care, and see `gridlab show JOB` for what each ran"]
    rows = {int(line.split()[0]): line.rstrip() for line in r.stdout.splitlines()
            if line.split() and line.split()[0] in {str(i) for i in ids}}
    header = next(line for line in r.stdout.splitlines() if "val_loss" in line)
    assert header.split()[-2:] == ["code", "env"]
    assert rows[ids[0]].endswith(" 11111111              torch 2.4.0, torch_cuda 12.1")
    assert rows[ids[3]].endswith(" 11111111+dirty:dddddd torch 2.5.1, torch_cuda 12.4")
    # For programs: the same labels per job, and the warning on stderr, out of the way.
    import json

    r = cli.invoke(["results", "--format", "json", "--db", url], tmp_path)
    records = {rec["job"]: rec for rec in json.loads(r.stdout)}
    assert (records[ids[0]]["code"], records[ids[3]]["env"]) == ("11111111", "torch 2.5.1, torch_cuda 12.4")
    assert "warning: these 4 jobs ran under 2 code versions" in r.stderr


def test_results_of_jobs_that_ran_alike_have_no_warning_and_no_column(db_url, tmp_path):
    eng = db_engine.create(db_url)
    schema.upgrade(eng)
    queue = Queue(eng)
    operator.enqueue(queue.engine, "g", [_job({"lr": lr}) for lr in (0.1, 0.2)])
    for i in range(2):
        claimed = queue.claim(worker(f"w{i}"))
        MetricsWriter(eng, claimed.lease).summary({"val_loss": 1.0})
        queue.complete(claimed.lease)
    eng.dispose()
    r = cli.invoke(["results", "--db", db_url], tmp_path)
    assert r.code == 0 and "warning" not in r.stdout and "code" not in r.stdout


def test_names_and_values_holding_markup_print_as_text(db_url, tmp_path):
    """A database may hold grid names, factor values, workers and errors with Rich markup
    (older gridlabs took any name; values come from grid files): every command prints them
    literally, and never fails on them."""
    eng = db_engine.create(db_url)
    schema.upgrade(eng)
    queue = Queue(eng)
    operator.enqueue(queue.engine, "[/bold]", [_job({"tag": "[red]x[/]", "seed": s}) for s in (0, 1)])
    claimed = queue.claim(dataclasses.replace(worker("[/]w"), name="[/]w"))
    MetricsWriter(eng, claimed.lease).summary({"val_loss": 1.5})
    queue.complete(claimed.lease)
    failed = queue.claim(dataclasses.replace(worker("[/]w"), name="[/]w"))
    queue.fail(failed.lease, "RuntimeError: [/bold] broke")
    eng.dispose()
    for argv in (["status"], ["results"], ["show", str(claimed.job.id)], ["show", str(failed.job.id)],
                 ["status", "--grid", "[/bold]"], ["retry", "--grid", "[/bold]", "--where", "tag=[red]x[/]"]):
        r = cli.invoke([*argv, "--db", db_url], tmp_path)
        assert r.code == 0 and "Traceback" not in r.stderr, (argv, r.stdout, r.stderr)
        assert "[/bold]" in r.stdout or "[red]x[/]" in r.stdout or "Requeued" in r.stdout, (argv, r.stdout)
    shown = cli.invoke(["show", str(failed.job.id), "--db", db_url], tmp_path).stdout
    assert "[/]w" in shown and '"tag": "[red]x[/]"' in shown
