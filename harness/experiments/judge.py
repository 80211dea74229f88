"""A judge job: PairRM compares two arms' stored answers, per prompt and turn.

gridlab enqueues one per pair of cells that differ only in a ``compare:`` factor (see
:mod:`harness.enqueue`); it depends on both arms, so it runs once they have succeeded. It
judges only what it has not judged yet (a retried or resumed attempt picks up where the last
stopped) and stores every verdict in ``judgments`` and its win rate in the summaries.
"""

from __future__ import annotations

from jobs.params import Param

PARAMS = {
    "arm_a": Param(str, help="spec hash of arm a (the compared factor's first value)"),
    "arm_b": Param(str, help="spec hash of arm b"),
    "factor": Param(str, help="the factor the arms differ in"),
    "value_a": Param(str, "", "arm a's value of the factor"),
    "value_b": Param(str, "", "arm b's value of the factor"),
    "ranker": Param(str, "tiny-pairrm", "llm-blender/PairRM (the real ranker, from gridlab's folder for it, which "
                    "`gridlab fetch` fills), a local PairRM directory, or tiny-pairrm (random, offline: for demos "
                    "and tests)", check=lambda v: _check_ranker(v)),
    "judge_batch_size": Param(int, 4, "comparisons per ranker call", minimum=1),
    "device": Param(str, "cpu", "where the ranker runs (cpu, cuda, mps)"),
}

def _check_ranker(value: str) -> str | None:
    """Checked when the grid is loaded: a judge job must not find out after its arms
    trained for hours that its ranker is not there."""
    from pathlib import Path

    from harness.evaluation import pairrm

    if value in ("tiny-pairrm", pairrm.HUB_NAME) or Path(value).expanduser().is_dir():
        return None  # the hub name's folder is `gridlab check`'s to prove (launch runs it)
    return (f"no PairRM ranker directory at {value}; download llm-blender/PairRM to a local folder and give "
            "its path, or use tiny-pairrm for a demo")


#: the settings a grid's ``judge:`` block may set
GRID_SETTINGS = ("ranker", "judge_batch_size", "device")
#: verdicts judged and stored per batch (the job can stop between batches)
CHUNK = 32


def run(ctx) -> None:
    from harness.params import InvalidSpec
    from harness.evaluation import pairrm, winrate
    from jobs.errors import Interrupted

    spec = ctx.spec
    arms = ctx.arm_jobs([spec["arm_a"], spec["arm_b"]])
    missing = [h for h in (spec["arm_a"], spec["arm_b"]) if h not in arms]
    if missing:
        raise InvalidSpec(f"judge job {ctx.job.id}: arm {missing[0][:12]} is not a job of this grid",
                           "re-enqueue the grid file so both arms exist")
    a, b = arms[spec["arm_a"]], arms[spec["arm_b"]]
    pairs = pairrm.pair_answers(ctx.generations_of(a.id), ctx.generations_of(b.id),
                                arm_a=a.id, arm_b=b.id)
    done = ctx.judged_keys()
    todo = [(x, y) for x, y in pairs if (x.prompt_set, x.question_id, x.turn) not in done]
    if todo:
        ranker = pairrm.load(spec["ranker"], device=spec["device"])
        for start in range(0, len(todo), CHUNK):
            if ctx.should_stop():
                raise Interrupted(ctx.stop_reason, ctx.stop_outcome)
            chunk = {(x.prompt_set, x.question_id, x.turn) for x, _ in todo[start : start + CHUNK]}
            verdicts = pairrm.judge_pairs(ranker, pairs, arm_a=a.id, arm_b=b.id, only=chunk,
                                          batch_size=spec["judge_batch_size"])
            ctx.store_judgments(verdicts)
    stored = ctx.judgments_of()
    # the interval resamples questions (a question's turns together), as gridlab compare and report do
    rate = winrate.win_rate([j.winner for j in stored], questions=[(j.prompt_set, j.question_id) for j in stored])
    ctx.summary({"win_rate": rate.rate, "win_rate_low": rate.low, "win_rate_high": rate.high,
                 "wins_a": rate.wins, "wins_b": rate.losses, "ties": rate.ties, "judged": rate.n})
