"""Grid files with compare:: validation with the other problems, and judge jobs per pair of arms."""

from __future__ import annotations

import pytest

from harness import enqueue, grid
from harness.grid import GridFileError
from jobs.queue import Queue

pytestmark = pytest.mark.unit

GRID = """
name: cmp
experiment: generate
fixed: {eval_prompt_limit: 2}
axes:
  model: [tiny-gpt2, tiny-pythia, tiny-t5]
  seed: [0, 1]
compare:
  model: [tiny-gpt2, tiny-pythia]
judge: {judge_batch_size: 2}
"""


def test_one_judge_job_per_pair_depending_on_both_arms():
    g = grid.parse(GRID, "cmp.yaml")
    assert g.compare == {"model": ("tiny-gpt2", "tiny-pythia")} and g.judge == {"judge_batch_size": 2}
    jobs = enqueue.new_jobs(g)
    arms = {j.spec_hash: j for j in jobs if j.experiment == "generate"}
    judges = [j for j in jobs if j.experiment == "judge"]
    assert len(arms) == 6 and len(judges) == 2
    for judge in judges:
        a, b = (arms[h] for h in judge.depends_on)
        assert (a.factors["model"], b.factors["model"]) == ("tiny-gpt2", "tiny-pythia")
        assert a.factors["seed"] == b.factors["seed"] == judge.factors["seed"]
        assert judge.spec["arm_a"] == a.spec_hash and judge.spec["arm_b"] == b.spec_hash
        assert judge.spec["judge_batch_size"] == 2 and judge.spec["ranker"] == "tiny-pairrm"
        assert judge.factors["compare"] == "model: tiny-gpt2 vs tiny-pythia"


def test_reenqueue_adds_nothing(sqlite_engine):
    g = grid.parse(GRID, "cmp.yaml")
    queue = Queue(sqlite_engine)
    first = enqueue.enqueue(queue, g)
    again = enqueue.enqueue(queue, g)
    assert (first.new, again.new, again.existing) == (8, 0, 8)


def test_problems_are_reported_together_with_locations():
    text = GRID.replace("model: [tiny-gpt2, tiny-pythia]\n", "model: [tiny-gpt2]\n  norm: [dyt, layernorm]\n  seed: [0, 7]\n")
    text = text.replace("judge: {judge_batch_size: 2}", "judge: {judge_batch_size: 0, colour: red}")
    with pytest.raises(GridFileError) as info:
        grid.parse(text, "cmp.yaml")
    problems = info.value.problems
    assert "compare.model: expected two values of model (arm a, arm b), like [tiny-gpt2, tiny-pythia]" in problems
    assert any(p.startswith("compare.norm: not a factor of this grid") for p in problems)
    assert any(p.startswith("compare.seed: 7 is not a value of seed") for p in problems)
    assert "judge.judge_batch_size: must be at least 1, got 0" in problems
    assert any(p.startswith("judge.colour: unknown setting (valid: ranker, judge_batch_size, device)") for p in problems)


def test_experiment_must_store_answers():
    text = "name: t\nexperiment: tiny_lm\naxes: {activation: [gelu, relu]}\ncompare: {activation: [gelu, relu]}\n"
    with pytest.raises(GridFileError, match="compare: experiment 'tiny_lm' stores no answers to judge"):
        grid.parse(text, "t.yaml")


def test_no_pair_differs_only_in_the_factor():
    text = GRID.replace("axes:\n  model: [tiny-gpt2, tiny-pythia, tiny-t5]\n  seed: [0, 1]\n",
                        "zip:\n  - {model: [tiny-gpt2, tiny-pythia], seed: [0, 1]}\n")
    g = grid.parse(text, "cmp.yaml")
    with pytest.raises(GridFileError, match="compare.model: no two cells differ only in model"):
        enqueue.new_jobs(g)
