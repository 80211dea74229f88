"""PairRM from a local directory through llm-blender's real loadranker, and judging two arms."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from harness.evaluation import pairrm
from harness.evaluation.errors import ComparisonError, RankerError
from jobs.outputs import StoredGeneration

pytestmark = pytest.mark.unit


def gen(prompt_set, qid, turn, prompt, output):
    return StoredGeneration(prompt_set, qid, None, turn, prompt, output, 3, 0.1, {})


ARM_A = [gen("s", "1", 1, "Add 2 and 3.", "It is 5."), gen("s", "1", 2, "Double it.", "10"),
         gen("s", "2", 1, "Name a colour.", "red")]
ARM_B = [gen("s", "1", 1, "Add 2 and 3.", "No idea."), gen("s", "1", 2, "Double it.", "12"),
         gen("s", "2", 1, "Name a colour.", "red")]


def test_loads_through_llm_blender(ranker, ranker_dir):
    assert ranker.path == str(ranker_dir) and ranker.backbone == str(ranker_dir / "backbone")
    assert ranker.blender.ranker_config.ranker_type == "pairranker"
    assert type(ranker.blender.ranker).__name__ == "CrossCompareReranker"


def test_one_verdict_per_prompt_and_turn(ranker):
    pairs = pairrm.pair_answers(ARM_A, ARM_B, arm_a=1, arm_b=2)
    verdicts = pairrm.judge_pairs(ranker, pairs, arm_a=1, arm_b=2)
    assert [(v.question_id, v.turn) for v in verdicts] == [("1", 1), ("1", 2), ("2", 1)]
    assert all(math.isfinite(v.logit) and v.winner in ("a", "b", "tie") for v in verdicts)
    assert verdicts[0].winner == ("a" if verdicts[0].logit > 0 else "b")
    assert verdicts[2].winner == "tie"  # identical answers
    again = pairrm.judge_pairs(ranker, pairs, arm_a=1, arm_b=2, only={("s", "1", 2)})
    assert [(v.question_id, v.turn) for v in again] == [("1", 2)]
    assert again[0].logit == pytest.approx(verdicts[1].logit, rel=1e-4)  # batch padding differs


def test_arms_with_different_prompt_sets():
    other = [gen("t", g.question_id, g.turn, g.prompt, g.output) for g in ARM_B]
    with pytest.raises(ComparisonError, match=r"arms answered different prompt sets \(job 1: s; job 2: t\); give both"):
        pairrm.pair_answers(ARM_A, other, arm_a=1, arm_b=2)
    with pytest.raises(ComparisonError, match="different questions"):
        pairrm.pair_answers(ARM_A, ARM_B[:2], arm_a=1, arm_b=2)
    with pytest.raises(ComparisonError, match="job 2 stored no answers"):
        pairrm.pair_answers(ARM_A, [], arm_a=1, arm_b=2)


def test_paths_that_are_not_rankers(tmp_path, ranker_dir, tiny):
    model, tokenizer = tiny()
    model.save_pretrained(tmp_path / "lm")
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(ranker_dir / "config.json", no_weights / "config.json")
    no_backbone = tmp_path / "no_backbone"
    no_backbone.mkdir()
    shutil.copy(ranker_dir / "model.safetensors", no_backbone / "model.safetensors")
    broken = tmp_path / "broken"
    shutil.copytree(ranker_dir, broken)
    (broken / "model.safetensors").write_text("not weights")
    config = json.loads((ranker_dir / "config.json").read_text())
    (no_backbone / "config.json").write_text(json.dumps({**config, "model_name": "nobody/no-such-backbone"}))
    cases = {
        str(tmp_path / "missing"): "not found",
        "someone/OtherRanker": "is not a local directory (gridlab never downloads it)",
        str(tmp_path / "lm"): "is a gpt2 model, not a PairRM ranker",
        str(tmp_path): "holds no config.json",
        str(no_weights): "no weights",
        str(no_backbone): "backbone 'nobody/no-such-backbone' is not on this machine",
        str(broken): "llm-blender could not load the ranker (SafetensorError",
    }
    for path, expected in cases.items():
        with pytest.raises(RankerError) as info:
            pairrm.load(path)
        assert expected in str(info.value) and "\n" not in str(info.value), path


def test_the_hub_name_reads_gridlabs_own_folder_and_says_how_to_fill_it(tmp_path, ranker_dir):
    """``judge.ranker: llm-blender/PairRM``: a grid loads with it anywhere (gridlab check proves the
    folder), a judge on a machine without it fails as a network-class error naming `gridlab fetch`,
    and once the folder holds a ranker it loads from there."""
    from harness.evaluation.errors import RankerUnavailable
    from harness.experiments import judge
    from jobs import retry

    assert judge._check_ranker(pairrm.HUB_NAME) is None
    cache = tmp_path / "gridlab"
    assert pairrm.managed_dir(cache) == cache / "pairrm" / "llm-blender--PairRM"
    with pytest.raises(RankerUnavailable, match="gridlab fetch") as caught:
        pairrm.load(pairrm.HUB_NAME, cache_dir=cache)
    assert retry.classify(caught.value).outcome == "network"
    shutil.copytree(ranker_dir, pairrm.managed_dir(cache))
    loaded = pairrm.load(pairrm.HUB_NAME, cache_dir=cache)
    assert loaded.path == str(pairrm.managed_dir(cache))
