"""The sft experiment run by a real worker (in process) on the tiny models: every norm with
every PEFT method and strategy trains, a divergent run ends as diverged, and a corrupted data
file fails with a clear error."""

from __future__ import annotations

import itertools
import json

import pytest

from jobs import reports, states
from tests.support.results import metrics_of, summaries_of
from tests.training.conftest import THIRD_PARTY_WARNINGS

pytestmark = [pytest.mark.e2e, *THIRD_PARTY_WARNINGS]

FIXED = ("steps: 2, batch_size: 4, max_length: 48, synthetic_records: 24, validation_share: 0.2, "
         "eval_every: 2, checkpoint_every: 2, lr: 1.0e-3")
#: Every part of the evaluation runs on every combination, each on a sliver: one prompt, four
#: tokens, two reference examples (the defaults, every demo prompt at 64 tokens, made generation
#: two thirds of this test's time; what the answers say is tests/evaluation's business).
SMALL_EVAL = "eval_prompt_limit: 1, eval_max_new_tokens: 4, eval_references: 2"
MODELS = ("tiny-gpt2", "tiny-pythia", "tiny-t5")
NORMS = ("layernorm", "dyt", "rmsnorm", "none")
METHODS = (("lora", "frozen"), ("lora", "selective"), ("lora", "full"),
           ("ia3", "frozen"), ("ia3", "selective"), ("ia3", "full"), ("full", "full"))


def _combos():
    """Every norm x (method, strategy) pair once, the models taking turns."""
    models = itertools.cycle(MODELS)
    return [{"model": next(models), "norm": n, "peft": p, "strategy": s} for n in NORMS for p, s in METHODS]


def test_every_norm_method_and_strategy_trains(run_grid):
    cells = _combos()
    cells[8]["dyt_calibrate"] = True  # a calibrated DyT too
    assert cells[8]["norm"] == "dyt"
    include = "\n".join(f"  - {json.dumps(c)}" for c in cells)
    queue = run_grid(f"name: combos\nexperiment: sft\nfixed: {{{FIXED}, {SMALL_EVAL}}}\ninclude:\n{include}\n")
    jobs = reports.jobs(queue.engine)
    assert len(jobs) == len(cells) == 28
    failed = {j.id: [a.error for a in reports.attempts(queue.engine, j.id)] for j in jobs if j.state != states.SUCCEEDED}
    assert not failed, failed
    for job in jobs:
        names = {m.name for m in metrics_of(queue, job.id)}
        assert {"loss", "grad_norm", "learning_rate", "token_accuracy", "tokens_per_s", "step_time_s",
                "val_loss", "val_perplexity"} <= names, job.factors
        assert any(n.startswith("attn_entropy/") for n in names) and any(n.startswith("nonfinite/") for n in names)
        summary = summaries_of(queue, job.id)
        assert 0 < summary["trainable_params"] <= summary["total_params"], job.factors
        assert summary["steps"] == 2 and "val_loss" in summary
        assert "heldout.word_perplexity" in summary and any(k.startswith("ref.") for k in summary), sorted(summary)
        if job.factors.get("dyt_calibrate"):
            assert any(k.startswith("dyt_alpha/") for k in summary) and any(k.startswith("dyt_fit_mse/") for k in summary)


def test_divergence_ends_as_diverged_and_is_not_retried(run_grid):
    queue = run_grid("name: boom\nexperiment: sft\nfixed: {steps: 6, batch_size: 4, max_length: 48, "
                     "synthetic_records: 24, peft: full, strategy: full, lr: 1.0e6, max_grad_norm: 0.0}\n"
                     "axes: {seed: [0]}\n")
    (job,) = reports.jobs(queue.engine)
    assert job.state == states.DIVERGED
    attempts = reports.attempts(queue.engine, job.id)
    assert len(attempts) == 1 and "loss diverged at step" in attempts[0].error


def test_corrupted_data_file_fails_with_a_clear_error(run_grid, tmp_path, monkeypatch):
    """A file that goes bad after enqueue (enqueue itself refuses a bad one): the job
    fails at once as invalid input, with the loader's one-line report."""
    from harness.grid import GridFileError

    bad = tmp_path / "broken.jsonl"
    good = [json.dumps({"instruction": "Say hi.", "output": "hi"})] * 7
    lines = [json.dumps({"instruction": "Say hi.", "output": "hi"})] * 3 + ['{"instruction": "cut', 'not json at all'] * 2
    text = (f"name: bad\nexperiment: sft\nfixed: {{dataset: alpaca, data_path: '{bad}', steps: 1}}\n"
            "retry: {max_attempts: 3}\naxes: {seed: [0]}\n")
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(GridFileError, match="3 of 7 records used, 4 skipped"):
        run_grid(text)

    bad.write_text("\n".join(good) + "\n")
    from harness import experiments

    original = experiments.run

    def corrupt_then_run(ctx):  # the file is damaged between enqueue and the run
        bad.write_text("\n".join(lines) + "\n")
        original(ctx)

    monkeypatch.setattr(experiments, "run", corrupt_then_run)
    queue = run_grid(text)
    (job,) = reports.jobs(queue.engine)
    assert job.state == states.FAILED
    (attempt,) = reports.attempts(queue.engine, job.id)  # invalid input: failed at once, not retried
    assert attempt.outcome == states.OUTCOME_INVALID
    error = attempt.error.strip().splitlines()[-1]
    assert "broken.jsonl: 3 of 7 records used, 4 skipped" in error
    assert "repair the file or raise max_bad_share" in error


def test_packing_trains_the_same_curve_without_pad_tokens(run_grid):
    """Packing changes how a micro-batch is laid out, not what it learns: the same examples per
    step, so the per-step losses match the padded run's. Pythia has no dropout; GPT-2's dropout
    draws other masks for other tensor shapes, so its curves are compared for shape only."""
    queue = run_grid("name: packing\nexperiment: sft\n"
                     "fixed: {steps: 4, batch_size: 4, max_length: 48, synthetic_records: 40, validation_share: 0.2, "
                     "eval_every: 4, checkpoint_every: 4, peft: full, strategy: full, lr: 1.0e-3, "
                     "eval_prompts: '', eval_lm_tasks: '', eval_references: 0}\n"
                     "axes: {model: [tiny-gpt2, tiny-pythia], packing: [false, true]}\n")
    jobs = reports.jobs(queue.engine)
    assert len(jobs) == 4 and all(j.state == states.SUCCEEDED for j in jobs), [(j.factors, j.state) for j in jobs]
    curves = {}
    for job in jobs:
        points = metrics_of(queue, job.id)
        curves[(job.factors["model"], job.factors["packing"])] = {
            name: [p.value for p in points if p.name == name] for name in ("loss", "val_loss", "token_accuracy")}
    padded, packed = curves[("tiny-pythia", False)], curves[("tiny-pythia", True)]
    assert len(packed["loss"]) == 4 and len(packed["val_loss"]) == 1
    assert packed["loss"] == pytest.approx(padded["loss"], rel=1e-4)
    assert packed["val_loss"] == pytest.approx(padded["val_loss"], rel=1e-4)
    assert packed["token_accuracy"] == pytest.approx(padded["token_accuracy"], abs=1e-6)
    assert len(curves[("tiny-gpt2", True)]["loss"]) == 4
