"""A small results database, filled the way workers fill it (the queue API), whose
figures the dashboard tests can predict exactly.

Grid "ablation": dataset {alpaca, dolly} x norm {dyt, layernorm} x seed {0, 1, 2}, all
succeeded. val_loss = BASE[dataset] - (0.2 if dyt) + 0.01 * seed, so the dyt - layernorm
gap is -0.2 for each dataset; tokens_per_s is 1000 (dyt) or 800 (layernorm) at every
step; loss = 3 - step / 100 over steps 1..200.

Grid "probe": lr {0.001, 0.003} x seed {0, 1, 2}, one job in each state: succeeded,
failed (on a Slurm node, with a traceback), diverged, running with an expired lease,
pending, cancelled.

Attention probes: the alpaca/seed-0 dyt arm probed 3 layers x 4 heads at steps 100 and 200
(training batches); head h of layer l has normalised entropy attention_norm(step, l, h) =
0.4 + 0.1 l + 0.05 h + step / 2000, and at step 200 layer 2's head 1 counted 2 NaN values. No
other job has attention rows.

Generations and judgments: the alpaca/seed-0 dyt and layernorm arms answer 5 prompts;
the probe's succeeded job judges them: a wins 3, b wins 1, 1 tie (win rate 0.7). dyt
answers take 2 s for 100 tokens (50 tokens/s), layernorm 4 s (25 tokens/s).

Device seconds: the workers see ABLATION_DEVICES GPUs (the Slurm worker that fails a probe
job, SLURM_DEVICES), so every ended attempt is charged its wall time (by the database's
clock, milliseconds here) x those; the running probe job's attempt has not ended and has none.
The probe's running and pending cells share the shape of its succeeded one (tiny_lm, 200 steps).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
BASE = {"alpaca": 1.0, "dolly": 1.5}
TOKENS_PER_S = {"dyt": 1000.0, "layernorm": 800.0}
STEPS = 200
WINNERS = ["a", "a", "b", "tie", "a"]
SLURM_JOB = "4242_7"
FAIL_HOST = "gpu-node-3"
ATTENTION_STEPS = (100, 200)
ATTENTION_LAYERS, ATTENTION_HEADS = 3, 4
ATTENTION_ARM = {"dataset": "alpaca", "norm": "dyt", "seed": 0}
ABLATION_DEVICES, SLURM_DEVICES = 1, 2  # GPUs each attempt is charged for (whatever this machine has)
FAIL_ERROR = "Traceback (most recent call last):\n  File \"train.py\", line 1\nRuntimeError: CUDA out of memory"


@dataclass
class Filled:
    url: str
    ids: dict[tuple, int] = field(default_factory=dict)  # factors (sorted items) -> job id
    by_state: dict[str, int] = field(default_factory=dict)  # probe job id per state
    arms: tuple[int, int] = (0, 0)

    def job(self, **factors) -> int:
        return self.ids[tuple(sorted(factors.items()))]


def _new_job(factors: dict, *, priority: int = 0, max_attempts: int = 3):
    from jobs.operator import NewJob

    spec = {"experiment": "tiny_lm", "steps": STEPS, **factors}
    digest = hashlib.sha256(repr(sorted(spec.items())).encode()).hexdigest()
    return NewJob(spec_hash=digest, spec=spec, factors=factors, experiment="tiny_lm",
                  priority=priority, max_attempts=max_attempts, backoff_s=0.0)


def val_loss(dataset: str, norm: str, seed: int) -> float:
    return BASE[dataset] - (0.2 if norm == "dyt" else 0.0) + 0.01 * seed


def attention_norm(step: int, layer: int, head: int) -> float:
    return round(0.4 + 0.1 * layer + 0.05 * head + step / 2000, 4)


def attention_rows(step: int) -> list[dict]:
    """One probe of the attention arm, as ``ctx.log_attention`` takes it."""
    return [{"stack": "", "layer": layer, "entropy": [2.0 * attention_norm(step, layer, h) for h in range(ATTENTION_HEADS)],
             "entropy_norm": [attention_norm(step, layer, h) for h in range(ATTENTION_HEADS)],
             "nan": [2 if (step, layer, h) == (200, 2, 1) else 0 for h in range(ATTENTION_HEADS)], "max_entropy": 2.0}
            for layer in range(ATTENTION_LAYERS)]


def fill(url: str) -> Filled:
    from sqlalchemy import insert

    from db import engine as db_engine
    from db import schema
    from db.models import generations, judgments
    from jobs.metrics import MetricsWriter
    from jobs import operator, reports
    from jobs.queue import Queue, WorkerInfo

    engine = db_engine.create(url)
    schema.upgrade(engine)
    queue = Queue(engine, lease_s=60.0)
    out = Filled(url=url)

    ablation = [{"dataset": d, "norm": n, "seed": s} for d in BASE for n in TOKENS_PER_S for s in (0, 1, 2)]
    operator.enqueue(queue.engine, "ablation", [_new_job(f, priority=10) for f in ablation])
    worker = WorkerInfo(name="w1", host="cpu-box", pid=111, devices=ABLATION_DEVICES)
    for _ in ablation:
        claimed = queue.claim(worker)
        f = claimed.job.factors
        out.ids[tuple(sorted(f.items()))] = claimed.job.id
        writer = MetricsWriter(engine, claimed.lease, flush_every=10_000)
        for step in range(1, STEPS + 1):
            values = {"loss": 3.0 - step / 100, "grad_norm": 1.0, "lr": 1e-3,
                      "tokens_per_s": TOKENS_PER_S[f["norm"]], "step_time_s": 512 / TOKENS_PER_S[f["norm"]]}
            if step % 50 == 0:
                values["val_loss"] = val_loss(**f) + (STEPS - step) / 1000
            writer.log(step, values, wall_time=1_700_000_000.0 + step)
            if f == ATTENTION_ARM and step in ATTENTION_STEPS:
                writer.log_attention(step, "train", attention_rows(step))
        writer.flush()
        writer.summary({"val_loss": val_loss(**f), "train_loss": 1.0})
        queue.complete(claimed.lease)

    probe = [{"lr": lr, "seed": s} for lr in (0.001, 0.003) for s in (0, 1, 2)]
    plan = ["succeeded", "failed", "diverged", "running", "cancelled", "pending"]
    operator.enqueue(queue.engine, "probe", [_new_job(f, priority=5 - i, max_attempts=1) for i, f in enumerate(probe)])
    slurm_worker = WorkerInfo(name=f"{FAIL_HOST}:222", host=FAIL_HOST, pid=222, slurm_job_id=SLURM_JOB,
                              slurm_array_index=7, node=FAIL_HOST, devices=SLURM_DEVICES)
    for state in plan[:4]:
        if state == "running":  # a worker that died after 3 steps of loss: its lease is long gone
            claimed = Queue(engine, lease_s=0.001).claim(worker)
            running_writer = MetricsWriter(engine, claimed.lease)
            for step in (1, 2, 3):
                running_writer.log(step, {"loss": 5.0 - step})
            running_writer.flush()
            time.sleep(0.05)
        else:
            claimed = queue.claim(slurm_worker if state == "failed" else worker)
        out.by_state[state] = claimed.job.id
        if state == "succeeded":
            MetricsWriter(engine, claimed.lease).summary({"val_loss": 2.0})
            queue.complete(claimed.lease)
        elif state == "failed":
            queue.fail(claimed.lease, FAIL_ERROR)
        elif state == "diverged":
            queue.diverged(claimed.lease, "loss=nan at step 12")
    rest = [j.id for j in reports.jobs(queue.engine, grid="probe", in_states=["pending"])]
    out.by_state["cancelled"], out.by_state["pending"] = rest
    operator.cancel(queue.engine, ids=[out.by_state["cancelled"]])

    arm_a, arm_b = out.job(dataset="alpaca", norm="dyt", seed=0), out.job(dataset="alpaca", norm="layernorm", seed=0)
    out.arms = (arm_a, arm_b)
    now = time.time()
    with engine.begin() as conn:
        conn.execute(insert(generations), [
            {"job_id": arm, "attempt": 1, "prompt_set": "mt-bench", "question_id": f"q{q}", "category": "writing",
             "turn": 1, "prompt": f"Prompt number {q}?", "output": f"{name} answer to prompt {q}",
             "new_tokens": 100, "latency_s": latency, "decoding": {"temperature": 0.0}, "created_at": now}
            for arm, name, latency in ((arm_a, "DYT", 2.0), (arm_b, "LAYERNORM", 4.0)) for q in range(5)
        ])
        conn.execute(insert(judgments), [
            {"job_id": out.by_state["succeeded"], "arm_a": arm_a, "arm_b": arm_b, "judge": "pairrm",
             "prompt_set": "mt-bench", "question_id": f"q{q}", "turn": 1, "winner": w,
             "logit": {"a": 1.5, "b": -1.5, "tie": 0.0}[w], "created_at": now}
            for q, w in enumerate(WINNERS)
        ])
    engine.dispose()
    return out


@pytest.fixture(scope="session")
def _filled_once(tmp_path_factory):
    """The small results database, filled once per backend per session: the dashboard only reads
    (a test checks a page visit leaves the SQLite file untouched), so read-only tests share it.
    A test that writes makes its own with :func:`fill`."""
    from tests import conftest as root

    made: dict[str, Filled] = {}
    databases: list[str] = []

    def get(backend: str) -> Filled:
        if backend not in made:
            if backend == "sqlite":
                url = f"sqlite:///{tmp_path_factory.mktemp('filled') / 'gridlab.db'}"
            else:
                root.require_pg()
                name = f"gridlab_test_filled_{uuid.uuid4().hex[:8]}"
                root._pg_admin(f'CREATE DATABASE "{name}"')
                databases.append(name)
                url = f"{root.PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
            made[backend] = fill(url)
        return made[backend]

    yield get
    for name in databases:
        root._pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def filled(request, _filled_once) -> Filled:
    """The small results database on each backend (shared, read-only)."""
    return _filled_once(request.param)


@pytest.fixture
def filled_sqlite(_filled_once) -> Filled:
    return _filled_once("sqlite")


@pytest.fixture
def app(monkeypatch):
    """An AppTest of the dashboard, given a database URL (through GRIDLAB_DB, as a
    user without `gridlab dashboard` would)."""
    import sys

    from streamlit.testing.v1 import AppTest

    # Streamlit's script runner installs the app as sys.modules["__main__"] and leaves it
    # there; multiprocessing's spawn then re-runs the dashboard in every worker process
    # a later test starts. Put the real __main__ back afterwards.
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])

    def make(url: str, page: str | None = None, query: dict | None = None) -> AppTest:
        monkeypatch.setenv("GRIDLAB_DB", url)
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        if page is not None:
            if query:
                at.query_params.update(query)
            at.switch_page(page).run()
            assert not at.exception, [e.value for e in at.exception]
        return at

    return make
