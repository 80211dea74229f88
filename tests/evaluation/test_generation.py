"""Answers to both turns, timed and stored through the fenced writer."""

from __future__ import annotations

import pytest

from harness.evaluation import generation
from jobs import operator, outputs
from jobs.errors import LeaseLost
from jobs.queue import Queue, WorkerInfo
from tests.support.grids import make_jobs

pytestmark = pytest.mark.unit

DECODING = generation.Decoding(max_new_tokens=4, batch_size=2)


def test_both_turns_answered_and_timed(tiny, small_prompts):
    model, tokenizer = tiny("tiny-pythia")
    result = generation.generate(model, tokenizer, small_prompts, DECODING)
    keys = [(a.question_id, a.turn) for a in result.answers]
    assert keys == [("7", 1), ("w1", 1), ("7", 2)]  # turn 1 of every question first, then turn 2
    assert [a.prompt for a in result.answers] == ["Add 2 and 3.", "Name a colour.", "Now double it."]
    assert all(1 <= a.new_tokens <= 4 and a.latency_s > 0 for a in result.answers)
    assert all(a.decoding == {**DECODING.record()} and a.decoding["do_sample"] is False for a in result.answers)
    # The two turn-1 answers shared a batch, so they share its wall time.
    assert result.answers[0].latency_s == result.answers[1].latency_s
    t = result.timing
    assert t.answers == 3 and t.new_tokens == sum(a.new_tokens for a in result.answers)
    assert t.total_s == pytest.approx(result.answers[0].latency_s + result.answers[2].latency_s)
    assert t.figures()["gen_tokens_per_s"] == pytest.approx(t.new_tokens / t.total_s)
    assert not model.training


def test_second_turn_prompt_holds_first_answer(tiny, small_prompts):
    model, tokenizer = tiny()
    runner = generation._Runner(model, tokenizer, DECODING)
    question = small_prompts.questions[0]
    ids = runner.prompt_ids(generation._conversation(question, 2, {"7": "FIVE"}))
    text = tokenizer.decode(ids)
    assert text.index("Add 2 and 3.") < text.index("FIVE") < text.index("Now double it.")
    assert text.endswith("### Assistant:\n")
    assert tokenizer.eos_token_id in ids  # the first answer is closed as in training


def test_model_object_and_saved_path_give_the_same_answers(tiny, small_prompts, tmp_path):
    model, tokenizer = tiny()
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    from_object = generation.generate(model, tokenizer, small_prompts, DECODING)
    from_path = generation.generate(str(tmp_path / "m"), None, small_prompts, DECODING)
    assert [a.output for a in from_object.answers] == [a.output for a in from_path.answers]


def test_seq2seq_model(tiny, small_prompts):
    model, tokenizer = tiny("tiny-t5")
    result = generation.generate(model, tokenizer, small_prompts, generation.Decoding(max_new_tokens=2))
    assert len(result.answers) == 3 and all(a.new_tokens <= 2 for a in result.answers)


def test_stored_once_and_fenced(tiny, small_prompts, sqlite_engine):
    model, tokenizer = tiny()
    answers = generation.generate(model, tokenizer, small_prompts, DECODING).answers
    queue = Queue(sqlite_engine)
    operator.enqueue(queue.engine, "g", make_jobs(1))
    claimed = queue.claim(WorkerInfo.here("w"))
    assert outputs.write_generations(sqlite_engine, claimed.lease, answers) == 3
    assert outputs.write_generations(sqlite_engine, claimed.lease, answers) == 0  # a retry keeps the first
    stored = outputs.generations_of(sqlite_engine, claimed.job.id)
    assert {(g.question_id, g.turn, g.output) for g in stored} == {(a.question_id, a.turn, a.output) for a in answers}
    assert outputs.prompt_sets_of(sqlite_engine, claimed.job.id) == {small_prompts.name: 3}
    operator.cancel(queue.engine, ids=[claimed.job.id])
    with pytest.raises(LeaseLost, match="lease lost, 1 generations refused"):
        outputs.write_generations(sqlite_engine, claimed.lease, answers[:1])


def _stops_at_once(model, tokenizer, letter: str = "a") -> int:
    """Make tiny-pythia what 60 steps on one-word answers make of the demo's models: its
    first choice is end-of-sequence everywhere, then padding, then ``letter`` (every final
    hidden state is the same vector; the output rows decide the order). Returns the
    letter's token id."""
    import torch

    (token,) = tokenizer(letter, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        norm = model.gpt_neox.final_layer_norm
        norm.weight.zero_()
        norm.bias.fill_(1.0)
        head = model.get_output_embeddings().weight
        head.zero_()
        head[tokenizer.eos_token_id] = 3.0
        head[tokenizer.pad_token_id] = 2.0
        head[token] = 1.0
    return token


def test_min_new_tokens_holds_end_of_sequence_and_padding_back(tiny, small_prompts):
    model, tokenizer = tiny("tiny-pythia")
    _stops_at_once(model, tokenizer)
    stopped = generation.generate(model, tokenizer, small_prompts, generation.Decoding(max_new_tokens=8, batch_size=2))
    assert [(a.new_tokens, a.output) for a in stopped.answers] == [(1, "")] * 3  # what the demo stored

    fixed = generation.Decoding(max_new_tokens=8, min_new_tokens=8, batch_size=2)
    assert fixed.fixed_length
    result = generation.generate(model, tokenizer, small_prompts, fixed)
    assert [(a.new_tokens, a.output) for a in result.answers] == [(8, "a" * 8)] * 3  # neither EOS nor padding
    assert all(a.decoding["min_new_tokens"] == 8 == a.decoding["max_new_tokens"] for a in result.answers)
    assert result.timing.new_tokens == 3 * 8  # the same work for every arm

    at_least = generation.generate(model, tokenizer, small_prompts,
                                   generation.Decoding(max_new_tokens=8, min_new_tokens=3, batch_size=2))
    assert [(a.new_tokens, a.output) for a in at_least.answers] == [(4, "aaa")] * 3  # then it stops, as it wants
    with pytest.raises(ValueError, match="min_new_tokens=9 must be between 0 and max_new_tokens=8"):
        generation.Decoding(max_new_tokens=8, min_new_tokens=9)


def test_seq2seq_min_new_tokens(tiny, small_prompts):
    model, tokenizer = tiny("tiny-t5")
    result = generation.generate(model, tokenizer, small_prompts,
                                 generation.Decoding(max_new_tokens=5, min_new_tokens=5, batch_size=2))
    assert all(a.new_tokens == 5 for a in result.answers)


def test_eval_min_new_tokens_is_checked_with_the_cell():
    from harness.evaluation import hook
    from harness.experiments import sft

    assert hook.check_spec({"eval_max_new_tokens": 24, "eval_min_new_tokens": 24}) is None
    problem = hook.check_spec({"eval_max_new_tokens": 24, "eval_min_new_tokens": 32})
    assert problem == ("eval_min_new_tokens (32) is more than eval_max_new_tokens (24); make it at most that "
                       "(equal: every answer exactly that long)")
    spec = {name: p.default for name, p in sft.PARAMS.items()} | {"eval_max_new_tokens": 24, "eval_min_new_tokens": 32}
    assert sft.check_spec(spec) == problem


def test_a_grid_asking_for_more_than_max_is_refused_at_load():
    from harness import grid
    from harness.grid import GridFileError

    with pytest.raises(GridFileError, match=r"eval_min_new_tokens \(32\) is more than eval_max_new_tokens \(24\)"):
        grid.parse("name: g\nexperiment: sft\nfixed: {eval_max_new_tokens: 24, eval_min_new_tokens: 32}\n"
                   "axes: {lr: [1.0e-3]}\n")
