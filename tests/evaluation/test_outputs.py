"""The outputs store on every backend: fenced, idempotent writes and the report's reads."""

from __future__ import annotations

import pytest

from jobs import operator, outputs
from jobs.errors import LeaseLost
from jobs.queue import WorkerInfo
from tests.support.grids import make_jobs

pytestmark = pytest.mark.contract


def answer(qid: str, turn: int, output: str = "x") -> outputs.Generation:
    return outputs.Generation("demo@1", qid, "c", turn, f"q{qid}.{turn}", output, 3, 0.5, {"max_new_tokens": 4})


def test_write_and_read_back(queue, engine):
    operator.enqueue(queue.engine, "g", make_jobs(3))
    arm_a, arm_b, judge = (queue.claim(WorkerInfo.here(f"w{i}")) for i in range(3))
    for arm in (arm_a, arm_b):
        assert outputs.write_generations(engine, arm.lease, [answer("1", 1), answer("1", 2), answer("2", 1)]) == 3
        assert outputs.write_generations(engine, arm.lease, [answer("1", 1, "changed")]) == 0
    assert outputs.generations_of(engine, arm_a.job.id)[0].output == "x"

    verdicts = [outputs.Judgment(arm_a.job.id, arm_b.job.id, "pairrm", "demo@1", q, t, w, l)
                for q, t, w, l in (("1", 1, "a", 0.5), ("1", 2, "b", -0.2), ("2", 1, "tie", 0.0))]
    assert outputs.write_judgments(engine, judge.lease, verdicts) == 3
    assert outputs.write_judgments(engine, judge.lease, verdicts) == 0
    assert outputs.judged_keys(engine, judge.job.id) == {("demo@1", "1", 1), ("demo@1", "1", 2), ("demo@1", "2", 1)}
    assert [j.winner for j in outputs.judgments_of(engine, judge.job.id)] == ["a", "b", "tie"]
    with pytest.raises(ValueError, match="winner must be"):
        outputs.write_judgments(engine, judge.lease, [outputs.Judgment(1, 2, "pairrm", "s", "1", 1, "x", 0.0)])

    found = outputs.arm_jobs(engine, arm_a.job.grid_id, [arm_a.job.spec_hash, "nope"])
    assert list(found) == [arm_a.job.spec_hash] and found[arm_a.job.spec_hash].id == arm_a.job.id
    timing = outputs.grid_outputs(engine, "g")
    assert [(t.job_id, t.answers, t.new_tokens) for t in timing] == [(arm_a.job.id, 3, 9), (arm_b.job.id, 3, 9)]
    assert outputs.grid_names_with_outputs(engine) == ["g"]
    records = {r.job_id: r for r in outputs.grid_judgments(engine, "g", experiment="test")}
    assert len(records[judge.job.id].judgments) == 3 and records[arm_a.job.id].judgments == ()

    operator.cancel(queue.engine, ids=[judge.job.id])
    with pytest.raises(LeaseLost):
        outputs.write_judgments(engine, judge.lease, verdicts)
