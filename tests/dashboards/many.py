"""A results database with many categories, filled through the queue API as workers fill
it, for checking that every chart stays legible at 1, 4 and 30 levels of a factor.

- grid "wide": model (30 levels, some with long names) x norm (4): 120 jobs.
- grid "four": model (3) x norm (4) x seed (2): 24 jobs, the demo's models and norms in full.
- grid "pair": norm (2) x seed (2): 4 jobs, two per norm (too few for an interval).
- grid "single": one job (one category wherever a page draws one).

Every job logs loss at steps 1..30, val_loss every 10 steps (a sparse curve),
tokens_per_s and step_time_s that vary so much between jobs that an unclipped 95% t
interval of the mean falls below zero, and summaries val_loss and token_accuracy (close
to 1, so an unclipped interval passes 1). Jobs of "four" and "pair" answer two prompts;
two arms of "four" are judged against each other.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

NORMS = ("dyt", "layernorm", "none", "rmsnorm")
WIDE_MODELS = tuple(f"tiny-model-{i:02d}" if i % 7 else f"an-unusually-long-model-name-that-would-eat-the-plot-{i:02d}"
                    for i in range(30))
FOUR_MODELS = ("tiny-gpt2", "tiny-pythia", "tiny-t5")
STEPS = 30


@dataclass
class Many:
    url: str
    ids: dict[str, list[int]] = field(default_factory=dict)  # grid -> job ids


def _job(factors: dict):
    from jobs.operator import NewJob

    spec = {"experiment": "tiny_lm", "steps": STEPS, "lr": 1e-3, "batch_size": 8, **factors}
    digest = hashlib.sha256(repr(sorted(spec.items())).encode()).hexdigest()
    return NewJob(spec_hash=digest, spec=spec, factors=factors, experiment="tiny_lm", priority=0,
                  max_attempts=1, backoff_s=0.0)


def grids() -> dict[str, list[dict]]:
    return {
        "wide": [{"model": m, "norm": n} for m in WIDE_MODELS for n in NORMS],
        "four": [{"model": m, "norm": n, "seed": s} for m in FOUR_MODELS for n in NORMS for s in (0, 1)],
        "pair": [{"norm": n, "seed": s} for n in ("dyt", "layernorm") for s in (0, 1)],
        "single": [{"norm": "dyt"}],
    }


def fill(url: str, only: tuple[str, ...] | None = None) -> Many:
    """The database at ``url`` (all grids, or those in ``only``)."""
    from sqlalchemy import insert

    from db import engine as db_engine
    from db import schema
    from db.models import generations, judgments
    from jobs.metrics import MetricsWriter
    from jobs import operator
    from jobs.queue import Queue, WorkerInfo

    engine = db_engine.create(url)
    schema.upgrade(engine)
    queue = Queue(engine, lease_s=60.0)
    worker = WorkerInfo(name="w1", host="cpu-box", pid=111)
    out = Many(url=url)
    answers = []
    for grid, cells in grids().items():
        if only is not None and grid not in only:
            continue
        operator.enqueue(queue.engine, grid, [_job(f) for f in cells])
        out.ids[grid] = []
        for k in range(len(cells)):
            claimed = queue.claim(worker)
            job_id = claimed.job.id
            out.ids[grid].append(job_id)
            speed = 50.0 if k % 2 else 5000.0  # alternate: a mean's t interval reaches below zero
            writer = MetricsWriter(engine, claimed.lease, flush_every=10_000)
            for step in range(1, STEPS + 1):
                values = {"loss": 3.0 - step / 20 + 0.01 * k, "tokens_per_s": speed, "step_time_s": 512 / speed}
                if step % 10 == 0:
                    values["val_loss"] = 2.0 - step / 60 + 0.01 * k
                writer.log(step, values, wall_time=1_700_000_000.0 + step)
            writer.flush()
            writer.summary({"val_loss": 1.5 + 0.01 * k + (0.2 if claimed.job.factors.get("norm") == "dyt" else 0.0),
                            "token_accuracy": 0.999 if k % 2 else 0.9})
            queue.complete(claimed.lease)
            if grid in ("four", "pair"):
                answers += [{"job_id": job_id, "attempt": 1, "prompt_set": "mt-bench", "question_id": f"q{q}",
                             "category": "writing", "turn": 1, "prompt": f"Prompt {q}?", "output": f"answer {q}",
                             "new_tokens": 100, "latency_s": 100 / speed, "decoding": {}, "created_at": time.time()}
                            for q in range(2)]
    if answers:
        with engine.begin() as conn:
            conn.execute(insert(generations), answers)
    if "four" in out.ids and "single" in out.ids:
        a, b = out.ids["four"][:2]
        with engine.begin() as conn:
            conn.execute(insert(judgments), [
                {"job_id": out.ids["single"][0], "arm_a": a, "arm_b": b, "judge": "pairrm", "prompt_set": "mt-bench",
                 "question_id": f"q{q}", "turn": 1, "winner": w, "logit": 0.0, "created_at": time.time()}
                for q, w in enumerate(["a", "tie"])
            ])
    engine.dispose()
    return out
