"""The seed grid's arms run by a real worker (in process): T5 at the default norm keeps every norm
it has, a healed DyT swap switches its norms one at a time and refits their alphas, and every
arm's swap is evaluated before training (the model as loaded, and at step 0 after the swap)."""

from __future__ import annotations

import json

import pytest

from db import views
from db.session import scope
from harness.training import attention_log
from jobs import reports, states
from tests.support.results import metrics_of, run_dir, summaries_of
from tests.training.conftest import THIRD_PARTY_WARNINGS

pytestmark = [pytest.mark.e2e, *THIRD_PARTY_WARNINGS]

FIXED = ("steps: 6, batch_size: 4, max_length: 48, synthetic_records: 32, validation_share: 0.25, "
         "eval_every: 3, checkpoint_every: 3, lr: 3.0e-3, eval_at_start: true, eval_prompts: '', "
         "eval_lm_tasks: '', eval_references: 0")
CELLS = [
    {"model": "tiny-t5", "peft": "lora", "strategy": "frozen"},  # norm left out: the default, keep
    {"model": "tiny-gpt2", "norm": "dyt", "dyt_calibrate": True, "heal": "layerwise", "heal_steps": 5,
     "peft": "full", "strategy": "full"},
    {"model": "tiny-pythia", "norm": "none", "heal": "blend", "heal_steps": 4, "peft": "lora", "strategy": "selective"},
]


def test_seed_arms(run_grid, tmp_path):
    include = "\n".join(f"  - {json.dumps(c)}" for c in CELLS)
    queue = run_grid(f"name: arms\nexperiment: sft\nfixed: {{{FIXED}}}\ninclude:\n{include}\n")
    t5, healed, blended = sorted(reports.jobs(queue.engine), key=lambda j: j.id)
    failed = {j.id: [a.error for a in reports.attempts(queue.engine, j.id)] for j in (t5, healed, blended) if j.state != states.SUCCEEDED}
    assert not failed, failed

    summary = summaries_of(queue, t5.id)
    assert summary["norms_swapped"] == 0  # T5's RMS norms untouched under the default
    assert summary["val_loss_step0"] == pytest.approx(summary["val_loss_as_loaded"], rel=1e-6)

    summary = summaries_of(queue, healed.id)
    assert summary["norms_swapped"] == 5 and summary["heal_steps"] == 5
    assert summary["val_loss_step0"] == pytest.approx(summary["val_loss_as_loaded"], rel=1e-6)  # nothing switched yet
    points = metrics_of(queue, healed.id)
    healed_counts = [(p.step, p.value) for p in points if p.name == "norms_healed"]
    assert healed_counts[0] == (0, 0.0) and healed_counts[-1] == (5, 5.0)
    assert [p.value for p in points if p.name == "norms_healed"] == sorted(p.value for p in points if p.name == "norms_healed")
    assert {p.name for p in points if p.name.startswith("heal_alpha/")} == {
        f"heal_alpha/transformer.{n}" for n in ("h.0.ln_1", "h.0.ln_2", "h.1.ln_1", "h.1.ln_2", "ln_f")}
    assert min(p.step for p in points if p.name == "val_loss") == 0
    assert {"val_token_accuracy", "val_loss_batch_mean"} <= {p.name for p in points}
    assert not any(p.name.startswith("attn_entropy/") and ".H" in p.name for p in points)
    rows = attention_log.read(run_dir(queue, tmp_path / "runs", healed.id) / attention_log.FILE)
    assert {(r["step"], r["phase"]) for r in rows} == {(0, "eval"), (3, "eval"), (6, "eval")}
    # The same rows in the database (the run-detail page's heatmap); T5's per stack.
    with scope(queue.engine, write=False) as conn:
        last = views.attention_at_last_step(conn, healed.id, phase="eval")
        assert views.attention_phases(conn, healed.id) == {"eval": 6}
        assert {r.stack for r in views.attention_at_last_step(conn, t5.id, phase="eval")} == {"enc", "dec"}
    assert [(r.layer, list(r.entropy_norm)) for r in last] == [
        (r["layer"], r["entropy_norm"]) for r in rows if r["step"] == 6]

    summary = summaries_of(queue, blended.id)
    assert summary["norms_swapped"] == 5 and summary["steps"] == 6


def test_a_resumed_attempt_keeps_the_evaluations_before_training(run_grid, monkeypatch):
    from harness.evaluation import hook

    calls = []
    real = hook.evaluate_after_training

    def fail_once(*args, **kwargs):  # the first attempt dies after training, past its last checkpoint
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("killed after training")
        return real(*args, **kwargs)

    monkeypatch.setattr(hook, "evaluate_after_training", fail_once)
    cell = json.dumps({"model": "tiny-gpt2", "norm": "dyt", "peft": "lora", "strategy": "frozen"})
    queue = run_grid(f"name: resumed\nexperiment: sft\nfixed: {{{FIXED}}}\ninclude:\n  - {cell}\n"
                     "retry: {max_attempts: 2, backoff_s: 0}\n")
    (job,) = reports.jobs(queue.engine)
    assert job.state == states.SUCCEEDED and job.attempts == 2
    summary = summaries_of(queue, job.id)
    assert {"val_loss_as_loaded", "val_loss_step0", "val_token_accuracy_step0"} <= set(summary)  # kept
