"""The llm-blender 0.0.2 shim: it imports on transformers 5 and its collator encodes."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit


def test_import_works_after_patch():
    from harness.evaluation import blender_compat

    llm_blender = blender_compat.blender()
    assert hasattr(llm_blender, "Blender")
    import transformers.utils.hub

    assert transformers.utils.hub.TRANSFORMERS_CACHE
    from llm_blender.pair_ranker import collator

    assert collator.encode_texts is blender_compat.encode_texts
    blender_compat.patch()  # idempotent


def test_collator_encodes_without_batch_encode_plus(ranker_dir):
    from transformers import AutoTokenizer

    from harness.evaluation import blender_compat

    blender_compat.patch()
    from llm_blender.pair_ranker.collator import CrossCompareCollator

    tokenizer = AutoTokenizer.from_pretrained(ranker_dir / "backbone")
    assert not hasattr(tokenizer, "batch_encode_plus")  # why the shim exists
    ids, mask = blender_compat.encode_texts(["a b", "a b c d e"], tokenizer, max_length=6)
    assert tuple(ids.shape) == tuple(mask.shape) == (2, 6)
    assert mask[0].sum() < mask[1].sum()
    collate = CrossCompareCollator(32, tokenizer, 32)
    batch = collate([{"source": "Add 2 and 3.", "candidates": ["5", "six"]}])
    assert batch["candidate_ids"].shape[:2] == (1, 2)
    assert batch["source_ids"].shape[0] == 1
