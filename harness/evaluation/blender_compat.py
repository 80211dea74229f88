"""The one place where llm-blender 0.0.2 (unmaintained) is made to work on transformers 5.

Two things broke, and each gets the smallest fix that keeps llm-blender's own code running:

1. ``from transformers.utils.hub import TRANSFORMERS_CACHE`` fails at import: transformers 5
   dropped the constant. It is put back, with the value transformers 4 had (the hub cache).
2. Its collators call ``tokenizer.batch_encode_plus``, which transformers 5 removed; calling
   the tokenizer does the same. ``llm_blender.pair_ranker.collator.encode_texts`` is replaced by
   a version that calls the tokenizer with the same arguments.

Call :func:`blender` (or :func:`patch`) before touching llm_blender. Both are idempotent.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_patched = False


def patch() -> None:
    """Make ``import llm_blender`` and its PairRM collator work on transformers 5."""
    global _patched
    if _patched:
        return
    import transformers.utils.hub as hf_hub

    if not hasattr(hf_hub, "TRANSFORMERS_CACHE"):
        from huggingface_hub import constants

        hf_hub.TRANSFORMERS_CACHE = constants.HF_HUB_CACHE
    collator = importlib.import_module("llm_blender.pair_ranker.collator")
    collator.encode_texts = encode_texts
    _patched = True


def encode_texts(texts, tokenizer, max_length=None):
    """llm-blender's ``encode_texts`` without ``batch_encode_plus``: (input_ids, attention_mask),
    each ``[n_texts, length]``, padded to ``max_length`` (the tokenizer's limit when None)."""
    encoded = tokenizer(list(texts), max_length=max_length, padding="max_length", return_tensors="pt", truncation=True)
    return encoded["input_ids"], encoded["attention_mask"]


def blender() -> ModuleType:
    """The ``llm_blender`` package, patched."""
    patch()
    return importlib.import_module("llm_blender")
