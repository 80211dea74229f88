"""Tiny offline variants of every family, built locally and cached on disk.

Each tiny model has 2 layers and hidden size 64 and shares one byte-level BPE tokenizer (512
tokens) trained on text gridlab generates itself (the synthetic dataset rendered with the prompt
template), so nothing is downloaded. A built model is written with `save_pretrained` under
``<cache_dir>/tiny/<name>-v<VERSION>`` and from then on loaded from that directory like any local
model. Weights are initialised from a fixed seed, so every machine builds the same model.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from harness.data import formats, synthetic, template
from harness.models import families

if TYPE_CHECKING:
    import transformers
    from tokenizers import Tokenizer

# torch, transformers and tokenizers are imported where a model or tokenizer is built: the
# registry imports this module to know the tiny names, and so does every command that checks a
# grid's model names or finds the caches (`gridlab enqueue`, `check`, `launch`), which would
# otherwise pay about 3 s of imports for a dictionary and a path.

# Bump when the recipe below changes, so stale caches are not reused.
VERSION = 1
VOCAB_SIZE = 512
EOS = "<|endoftext|>"
PAD = "<pad>"
SEED = 0
CORPUS_RECORDS = 2000

TINY = {"tiny-gpt2": families.GPT2, "tiny-pythia": families.GPT_NEOX, "tiny-t5": families.T5}

# Class names, looked up on first use: importing the model classes is slow, and checking a
# grid's model names needs only `TINY`.
_CONFIG_CLASSES = {"gpt2": "GPT2Config", "gpt_neox": "GPTNeoXConfig", "t5": "T5Config"}
_MODEL_CLASSES = {"gpt2": "GPT2LMHeadModel", "gpt_neox": "GPTNeoXForCausalLM", "t5": "T5ForConditionalGeneration"}


def default_cache_dir() -> Path:
    """``$GRIDLAB_CACHE`` or ``~/.cache/gridlab``."""
    return Path(os.environ.get("GRIDLAB_CACHE") or Path.home() / ".cache" / "gridlab")


def ensure(name: str, cache_dir: str | Path | None = None) -> Path:
    """The directory holding tiny model `name`, building it first if it is not cached."""
    family = TINY[name]
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / "tiny" / f"{name}-v{VERSION}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename into place, so a crash or a concurrent builder never
    # leaves a half-written model where `load` would find it.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        tokenizer = build_tokenizer()
        build_model(family, tokenizer).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def corpus() -> list[str]:
    """The tokenizer's training text: synthetic conversations rendered with the prompt template."""
    return [template.render(formats.alpaca(record), EOS) for record in synthetic.records(CORPUS_RECORDS, SEED)]


def build_tokenizer() -> transformers.PreTrainedTokenizerFast:
    import transformers
    from tokenizers import Tokenizer

    # A copy, so that callers may change padding or truncation without touching the cached one.
    tokenizer = Tokenizer.from_str(_trained_tokenizer().to_str())
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=EOS, bos_token=EOS, unk_token=EOS, pad_token=PAD
    )


@functools.cache
def _trained_tokenizer() -> Tokenizer:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(), trainer)
    return tokenizer


def build_model(family: families.Family, tokenizer) -> transformers.PreTrainedModel:
    import torch
    import transformers

    special = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if family.seq2seq:
        special["decoder_start_token_id"] = tokenizer.pad_token_id
    else:
        special["bos_token_id"] = tokenizer.bos_token_id
    config = getattr(transformers, _CONFIG_CLASSES[family.name])(**family.tiny_config, **special)
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        return getattr(transformers, _MODEL_CLASSES[family.name])(config)
