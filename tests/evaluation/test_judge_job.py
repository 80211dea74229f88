"""A grid with compare: on the real queue (SQLite): arms store timed answers, the judge job
waits for them, then stores one PairRM verdict per prompt and turn; the report reads it back."""

from __future__ import annotations

import math

import pytest

from harness import enqueue, experiments, grid
from harness.evaluation import winrate
from jobs import outputs, reports
from jobs.queue import Queue, WorkerInfo
from jobs.worker import Worker
from tests.support import cli

pytestmark = pytest.mark.e2e

GRID = """
name: judged
experiment: generate
fixed:
  eval_prompt_limit: 2
  eval_max_new_tokens: 4
  eval_batch_size: 2
  eval_references: 3
  synthetic_records: 30
axes:
  model: [tiny-gpt2, tiny-pythia]
compare:
  model: [tiny-gpt2, tiny-pythia]
judge: {judge_batch_size: 2}
retry: {max_attempts: 2, backoff_s: 0}
"""


def test_judge_waits_for_its_arms_then_judges_every_prompt_and_turn(sqlite_engine, tmp_path, monkeypatch):
    # The judge's first attempt stores its first batch of verdicts, then crashes; the retry
    # must judge only what is left.
    from harness.experiments import judge

    monkeypatch.setattr(judge, "CHUNK", 2)
    real_write, written = outputs.write_judgments, []

    def crashing_write(engine, lease, rows):
        if lease.attempt == 1 and written:
            raise RuntimeError("simulated crash after the first batch")
        written.append((lease.attempt, [(r.question_id, r.turn) for r in rows]))
        return real_write(engine, lease, rows)

    monkeypatch.setattr(outputs, "write_judgments", crashing_write)
    queue = Queue(sqlite_engine)
    g = grid.parse(GRID, "judged.yaml")
    assert enqueue.enqueue(queue, g).new == 3
    judge_id = next(j.id for j in reports.jobs(queue.engine) if "compare" in j.factors)

    # While the arms run, the judge job is not runnable.
    held = [queue.claim(WorkerInfo.here(f"w{i}")) for i in range(2)]
    assert {c.job.experiment for c in held} == {"generate"}
    assert queue.claim(WorkerInfo.here("w2")) is None
    for c in held:
        queue.release(c.lease, reason="test hands it back")

    stats = Worker(queue, experiments.run, runs_dir=tmp_path, heartbeat_s=5).run()
    assert (stats.succeeded, stats.failed) == (3, 1), [j.last_error for j in reports.jobs(queue.engine)]
    assert [attempt for attempt, _ in written] == [1, 2]
    assert written[0][1] == [("1", 1), ("1", 2)] and written[1][1] == [("2", 1), ("2", 2)]
    jobs = {j.id: j for j in reports.jobs(queue.engine)}
    arm_ids = [i for i in jobs if i != judge_id]

    # Each arm stored both turns of both questions, with timing, and its figures.
    for arm in arm_ids:
        answers = outputs.generations_of(sqlite_engine, arm)
        assert sorted((a.question_id, a.turn) for a in answers) == [("1", 1), ("1", 2), ("2", 1), ("2", 2)]
        assert all(a.latency_s > 0 and 1 <= a.new_tokens <= 4 for a in answers)
    figures = {r.id: {} for r in reports.summaries(queue.engine, "judged")}
    for r in reports.summaries(queue.engine, "judged"):
        figures[r.id][r.name] = r.value
    for arm in arm_ids:
        assert figures[arm]["gen_total_s"] > 0 and figures[arm]["gen_tokens_per_s"] > 0
        assert math.isfinite(figures[arm]["heldout.word_perplexity"])
        assert "ref.rougeL" in figures[arm] and "ref.bleu" in figures[arm]

    # One verdict per prompt and turn; the win rate comes from the stored rows.
    verdicts = outputs.judgments_of(sqlite_engine, judge_id)
    assert sorted((v.question_id, v.turn) for v in verdicts) == [("1", 1), ("1", 2), ("2", 1), ("2", 2)]
    assert all(v.winner in ("a", "b", "tie") and math.isfinite(v.logit) for v in verdicts)
    rate = winrate.win_rate([v.winner for v in verdicts])
    assert figures[judge_id]["win_rate"] == pytest.approx(rate.rate)
    assert figures[judge_id]["judged"] == 4

    # Re-enqueueing the grid adds nothing and leaves nothing to run.
    assert enqueue.enqueue(queue, g).new == 0
    assert reports.unfinished(queue.engine) == 0

    # The report shows win rates with intervals, timing per arm, and perplexity.
    url = sqlite_engine.url.render_as_string(hide_password=False)
    result = cli.invoke(["compare", "--db", url], tmp_path, env={"COLUMNS": "250", "GRIDLAB_DB": None})
    assert result.code == 0, result.stdout + result.stderr
    assert "PairRM win rates" in result.stdout and "model: tiny-gpt2 vs tiny-pythia" in result.stdout
    assert f"{rate.rate:.1%}" in result.stdout
    assert "Generation timing per arm" in result.stdout and "heldout.word_perplexity" in result.stdout
