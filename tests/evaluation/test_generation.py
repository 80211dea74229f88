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
