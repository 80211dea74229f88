"""Provenance on both backends: each attempt names its code, environment and machine,
stored once and shared; each enqueue keeps the grid file text it read; drift among jobs
is reported with which job ran what; the 0007 migration keeps existing rows."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import func, select, text

from db import provenance as reads
from db.models import attempts, code_versions, environments, grid_versions, grids, jobs, machines, provenances
from db.session import scope
from jobs import operator, provenance
from jobs.queue import Queue, WorkerInfo
from tests.support.grids import make_jobs

pytestmark = pytest.mark.contract

CODE_A = provenance.Code(files_hash="a" * 64, files=10, git_commit="1" * 40, git_dirty=False)
CODE_B = provenance.Code(files_hash="b" * 64, files=11, git_commit="1" * 40, git_dirty=True, diff_hash="d" * 64,
                         diff="--- a/loss.py\n+++ b/loss.py\n@@ -1 +1 @@\n-return a\n+return 2 * a\n")
ENV_1 = provenance.Environment(python="CPython 3.11.7", packages={"torch": "2.4.0", "torch_cuda": "12.1"},
                               freeze="numpy==1.26.0\ntorch==2.4.0")
ENV_2 = provenance.Environment(python="CPython 3.11.7", packages={"torch": "2.5.1", "torch_cuda": "12.4"},
                               freeze="numpy==1.26.0\ntorch==2.5.1")
MACHINE = provenance.Machine(host="gpu-1", platform="Linux", cpu_count=8, gpu_count=2, gpu_name="NVIDIA H100",
                             gpu_driver="550.54", cuda_driver="12.4")


def worker(name: str, code=CODE_A, env=ENV_1, machine=MACHINE, root="/ckpt/code/abc", pinned=True) -> WorkerInfo:
    p = provenance.Provenance(code=code, environment=env, machine=machine, code_root=root, pinned=pinned)
    return WorkerInfo(name=name, host=machine.host, pid=1, provenance=p)


def counts(engine) -> list[int]:
    with scope(engine, write=False) as conn:
        return [conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (provenances, code_versions, environments, machines)]


def run_all(queue: Queue, w: WorkerInfo, n: int) -> list[int]:
    done = []
    for _ in range(n):
        claimed = queue.claim(w)
        queue.complete(claimed.lease)
        done.append(claimed.job.id)
    return done


def test_claims_record_provenance_once_and_share_it(queue, engine):
    operator.enqueue(queue.engine, "g", make_jobs(6))
    w = worker("w1")
    run_all(queue, w, 2)
    # A new process (a new Queue: empty cache) with the same provenance finds the rows.
    run_all(Queue(engine), dataclasses.replace(w, name="w2", pid=2), 2)
    assert counts(engine) == [1, 1, 1, 1]
    # Another environment on the same code and machine: one new environment and provenance row.
    run_all(queue, worker("w3", env=ENV_2), 2)
    assert counts(engine) == [2, 1, 2, 1]
    with scope(engine, write=False) as conn:
        ids = conn.execute(select(attempts.c.job_id, attempts.c.provenance_id).order_by(attempts.c.job_id)).all()
        stored = conn.execute(select(code_versions.c.git_commit, code_versions.c.git_dirty, code_versions.c.files_hash,
                                     environments.c.packages, environments.c.freeze, machines.c.gpu_name,
                                     machines.c.gpu_count, provenances.c.code_root, provenances.c.pinned)
                              .select_from(provenances).join(code_versions).join(environments).join(machines)
                              .where(provenances.c.id == ids[0].provenance_id)).one()
    assert len({p for _, p in ids[:4]}) == 1 and ids[4].provenance_id == ids[5].provenance_id != ids[0].provenance_id
    assert stored == ("1" * 40, False, "a" * 64, {"torch": "2.4.0", "torch_cuda": "12.1"}, ENV_1.freeze,
                      "NVIDIA H100", 2, "/ckpt/code/abc", True)


def test_a_worker_without_provenance_leaves_it_unrecorded(queue, engine):
    operator.enqueue(queue.engine, "g", make_jobs(1))
    claimed = queue.claim(WorkerInfo(name="old", host="h", pid=1))
    with scope(engine, write=False) as conn:
        jp = reads.job_provenance(conn, claimed.job.id)
    assert [a.code for a in jp.attempts] == [None]
    assert counts(engine) == [0, 0, 0, 0]


def test_job_provenance_and_drift_name_what_each_job_ran(queue, engine):
    operator.enqueue(queue.engine, "g", make_jobs(5))
    a = run_all(queue, worker("wa"), 2)
    b = run_all(queue, worker("wb", code=CODE_B, env=ENV_2), 2)
    # One job resumed under the other code: it is its own mix.
    claimed = queue.claim(worker("wa2"))
    queue.release(claimed.lease, reason="preempted", outcome="preempted")
    mixed = claimed.job.id
    claimed = queue.claim(worker("wb2", code=CODE_B))
    queue.complete(claimed.lease)
    with scope(engine, write=False) as conn:
        jp = reads.job_provenance(conn, mixed)
        drift = reads.drift(conn, [*a, *b, mixed])
        same = reads.drift(conn, a)
        diff = reads.code_diff(conn, b[0])
        clean = reads.code_diff(conn, a[0])
        frozen = reads.freeze(conn, b[0])
    assert [(x.number, x.code.label, x.environment.packages["torch"]) for x in jp.attempts] == [
        (1, "11111111", "2.4.0"), (2, "11111111+dirty:dddddd", "2.4.0")]
    assert jp.attempts[0].machine.gpus == "2 x NVIDIA H100" and jp.attempts[0].pinned is True
    assert diff == CODE_B.diff and clean == "" and frozen == ENV_2.freeze
    assert not same.any and same.warning() is None
    assert drift.code_drift and drift.environment_drift
    assert drift.code_of == {a[0]: "11111111", a[1]: "11111111", b[0]: "11111111+dirty:dddddd",
                             b[1]: "11111111+dirty:dddddd", mixed: "11111111+11111111+dirty:dddddd"}
    assert drift.environment_of[a[0]] == "torch 2.4.0, torch_cuda 12.1"
    assert drift.environment_of[b[0]] == "torch 2.5.1, torch_cuda 12.4"
    warning = drift.warning()
    assert f"these 5 jobs ran under 3 code versions (11111111: jobs {a[0]}-{a[1]}" in warning
    assert f"11111111+dirty:dddddd: jobs {b[0]}-{b[1]}" in warning and "2 environments" in warning


def test_drift_says_when_some_pooled_jobs_have_no_recorded_provenance(queue, engine):
    operator.enqueue(queue.engine, "g", make_jobs(3))
    known = run_all(queue, worker("w1"), 2)
    old = run_all(queue, WorkerInfo(name="old", host="h", pid=1), 1)
    with scope(engine, write=False) as conn:
        drift = reads.drift(conn, known + old)
        alone = reads.drift(conn, old)
    assert drift.unknown == tuple(old) and drift.any and not drift.code_drift
    assert drift.warning() == (f"job {old[0]} ran with no recorded provenance (before gridlab recorded it), the other 2 "
                               "under one code and environment; compare with care")
    assert not alone.any and alone.warning() is None  # nothing known to compare against


def test_drift_tells_environments_apart_by_packages_outside_the_key_list(queue, engine):
    operator.enqueue(queue.engine, "g", make_jobs(2))
    other = dataclasses.replace(ENV_1, freeze="numpy==2.0.0\ntorch==2.4.0")
    ids = run_all(queue, worker("w1"), 1) + run_all(queue, worker("w2", env=other), 1)
    with scope(engine, write=False) as conn:
        drift = reads.drift(conn, ids)
    assert drift.environment_of == {ids[0]: "numpy 1.26.0", ids[1]: "numpy 2.0.0"}
    assert not drift.code_drift


def test_every_grid_file_version_is_kept_and_each_job_knows_its_own(queue, engine):
    text_1 = "name: g\naxes: {i: [0, 1]}\n"
    text_2 = "name: g\naxes: {i: [0, 1, 2]}\n"
    operator.enqueue(queue.engine, "g", make_jobs(2), source_path="g.yaml", source_text=text_1)
    operator.enqueue(queue.engine, "g", make_jobs(3), source_path="g.yaml", source_text=text_2)
    operator.enqueue(queue.engine, "g", make_jobs(3), source_path="g-copy.yaml", source_text=text_1)  # same text: no new version
    with scope(engine, write=False) as conn:
        versions = conn.execute(select(grid_versions.c.number, grid_versions.c.source_text, grid_versions.c.source_path)
                                .order_by(grid_versions.c.number)).all()
        per_job = conn.execute(select(jobs.c.id, grid_versions.c.number).join(grid_versions)
                               .order_by(jobs.c.id)).all()
        texts = [reads.grid_text(conn, job_id) for job_id, _ in per_job]
        info = reads.job_provenance(conn, per_job[2][0]).grid_version
        latest = conn.execute(select(grids.c.source_text)).scalar_one()
    assert versions == [(1, text_1, "g.yaml"), (2, text_2, "g.yaml")]
    assert [n for _, n in per_job] == [1, 1, 2]
    assert texts == [text_1, text_1, text_2]
    assert (info.number, info.of, info.source_path) == (2, 2, "g.yaml")
    assert latest == text_1  # the grid row holds the last text read, as before; versions hold all


def test_upgrade_to_0007_keeps_rows_and_makes_version_1_from_the_stored_text(db_url):
    from alembic import command

    from db import engine as db_engine
    from db import schema

    eng = db_engine.create(db_url)
    cfg = schema.alembic_config(eng.url.render_as_string(hide_password=False))
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")
    with eng.begin() as conn:
        conn.execute(text("INSERT INTO grids (id, name, source_path, source_text, created_at) "
                          "VALUES (1, 'old', 'old.yaml', 'name: old', 1.0)"))
        conn.execute(text("INSERT INTO jobs (id, grid_id, spec_hash, spec, factors, experiment, state, priority, "
                          "attempts, max_attempts, backoff_s, created_at, updated_at) VALUES (1, 1, 'h', '{}', '{}', "
                          "'x', 'succeeded', 0, 1, 3, 1.0, 1.0, 1.0)"))
        conn.execute(text("INSERT INTO attempts (id, job_id, number, worker, host, pid, started_at) "
                          "VALUES (1, 1, 1, 'w', 'h', 1, 1.0)"))
        conn.execute(text("INSERT INTO events (job_id, at, to_state, actor) VALUES (1, 1.0, 'pending', 'a')"))
        conn.execute(text("INSERT INTO metrics (job_id, attempt, name, step, value, wall_time) "
                          "VALUES (1, 1, 'loss', 1, 0.5, 1.0)"))
    assert schema.upgrade(eng) == ("0005", schema.HEAD)
    with eng.connect() as conn:
        kept = [conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
                for t in ("jobs", "attempts", "events", "metrics")]
        version = conn.execute(text("SELECT grid_id, number, source_text FROM grid_versions")).one()
        stamps = conn.execute(text("SELECT grid_version_id FROM jobs")).scalar_one(), conn.execute(
            text("SELECT provenance_id FROM attempts")).scalar_one()
    eng.dispose()
    assert kept == [1, 1, 1, 1], "recreating jobs/attempts must not cascade-delete their rows"
    assert tuple(version) == (1, 1, "name: old")
    assert stamps == (None, None)  # which text made the old job, and what ran it, was never recorded
