"""A tiny, randomly initialised PairRM-shaped ranker, built offline (for the demo and tests).

It has PairRM's layout, so it loads through llm-blender's real ``Blender.loadranker`` path:

    <dir>/config.json         llm-blender's ranker config (ranker_type pairranker, model_type deberta)
    <dir>/model.safetensors   the whole ranker: DeBERTa-v2 backbone and comparison head
    <dir>/backbone/           the DeBERTa-v2 backbone (config, weights, tokenizer) ``model_name`` names

The backbone is a 2-layer DeBERTa-v2 with hidden size 32 and a Unigram DeBERTa-v2 tokenizer
over characters and a few words. Its verdicts are random but deterministic (fixed seed): it
exercises the pipeline, it does not judge quality. ``tiny-pairrm`` names it in grid files.
"""

from __future__ import annotations

import json
import shutil
import string
import tempfile
from pathlib import Path

NAME = "tiny-pairrm"
VERSION = 1
SEED = 0

RANKER_CONFIG = {
    "ranker_type": "pairranker",
    "model_type": "deberta",
    "model_name": "backbone",  # relative to the ranker directory (see harness.evaluation.pairrm)
    "source_maxlength": 128,
    "candidate_maxlength": 128,
    "n_tasks": 1,
    "num_pos": 1,
    "num_neg": 1,
    "sub_sampling_mode": "all_pair",
    "sub_sampling_ratio": 0.4,
    "loss_type": "instructgpt",
    "reduce_type": "linear",
    "inference_mode": "bubble",
    "drop_out": 0.05,
    "fp16": False,
}

_WORDS = ("the", "a", "is", "and", "of", "to", "in", "you", "answer", "number", "word", "response", "user",
          "assistant", "sentence", "write", "which", "how", "many")  # fmt: skip


def ensure(cache_dir: str | Path | None = None) -> Path:
    """The tiny ranker's directory under the gridlab cache, built first if missing."""
    from harness.models import tiny

    root = Path(cache_dir) if cache_dir is not None else tiny.default_cache_dir()
    target = root / "tiny" / f"{NAME}-v{VERSION}"
    if (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{NAME}-", dir=target.parent))
    try:
        build(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build(target: str | Path) -> Path:
    """Write the tiny ranker into ``target`` (an empty or new directory)."""
    import safetensors.torch
    import torch
    from transformers import DebertaV2Config, DebertaV2Model, DebertaV2Tokenizer

    from harness.evaluation import blender_compat

    target = Path(target)
    backbone = target / "backbone"
    backbone.mkdir(parents=True, exist_ok=True)
    tokenizer = DebertaV2Tokenizer(vocab=_vocab(), model_max_length=512)
    config = DebertaV2Config(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        DebertaV2Model(config).save_pretrained(backbone)
        tokenizer.save_pretrained(backbone)
        # Build the full ranker exactly as llm-blender loads one (its collator adds tokens,
        # the backbone's embeddings are resized to match), then save its weights.
        blender_compat.patch()
        from llm_blender.blender.blender_utils import load_ranker
        from llm_blender.pair_ranker.config import RankerConfig

        ranker, _, _ = load_ranker(RankerConfig(**{**RANKER_CONFIG, "model_name": str(backbone)}))
        safetensors.torch.save_model(ranker, str(target / "model.safetensors"))
    (target / "config.json").write_text(json.dumps(RANKER_CONFIG, indent=2) + "\n", encoding="utf-8")
    return target


def _vocab() -> list[tuple[str, float]]:
    specials = [(t, 0.0) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")]
    words = [("▁" + w, -3.0) for w in _WORDS]
    chars = sorted(set(string.ascii_letters + string.digits + string.punctuation))
    return specials + [("▁", -2.0)] + words + [(c, -5.0) for c in chars] + [("▁" + c, -4.0) for c in chars]
