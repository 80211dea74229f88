"""Padding-free packing: a packed micro-batch is the padded one without its pad tokens.

The packed row holds the batch's examples end to end with ``position_ids`` restarting at each;
transformers builds a block-diagonal causal mask from them. If attention leaked across
examples, or positions did not restart, the loss and the per-token logits would differ.
"""

from __future__ import annotations

import pytest
import torch

from harness.data import formats, synthetic, tokenization
from harness.experiments import sft
from harness.params import defaults
from harness.training import recipe

pytestmark = pytest.mark.unit

CAUSAL = ("tiny-gpt2", "tiny-pythia")


def _rows(tokenizer, family, n: int = 6) -> list[dict]:
    conversations = [formats.alpaca(r) for r in synthetic.records(n, seed=3)]
    dataset = tokenization.tokenize(conversations, tokenizer, seq2seq=family.seq2seq, max_length=64).dataset
    return [dataset[i] for i in range(len(dataset))]


@pytest.mark.parametrize("name", CAUSAL)
def test_packed_batch_has_the_padded_batchs_loss_and_logits(load_tiny, name):
    model, tokenizer, family = load_tiny(name)
    model.eval()
    model.config.use_cache = False  # as the recipe sets it: with a cache, packed rows are not detected
    rows = _rows(tokenizer, family)
    lengths = [len(r["input_ids"]) for r in rows]
    assert len(set(lengths)) > 1, "examples of equal length would not exercise padding"
    padded = recipe.collator(tokenizer, packing=False)(rows)
    packed = recipe.collator(tokenizer, packing=True)(rows)
    assert packed["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in packed
    assert padded["input_ids"].numel() > packed["input_ids"].numel()  # the pad tokens are gone

    with torch.no_grad():
        out_padded = model(**padded)
        out_packed = model(**packed)
    torch.testing.assert_close(out_packed.loss, out_padded.loss, rtol=1e-5, atol=1e-6)
    # Each example's logits in the packed row equal its logits in the padded batch.
    start = 0
    for i, n in enumerate(lengths):
        torch.testing.assert_close(out_packed.logits[0, start : start + n], out_padded.logits[i, :n],
                                   rtol=1e-4, atol=1e-4)
        start += n


def test_packing_without_restarting_positions_would_be_caught(load_tiny):
    """The check above can fail: the same row with positions counting on (no boundaries, so
    attention spans examples) gives other logits for every example after the first."""
    model, tokenizer, family = load_tiny("tiny-gpt2")
    model.eval()
    model.config.use_cache = False
    rows = _rows(tokenizer, family)
    packed = recipe.collator(tokenizer, packing=True)(rows)
    leaky = {**packed, "position_ids": torch.arange(packed["input_ids"].shape[1])[None]}
    with torch.no_grad():
        good, bad = model(**packed).logits, model(**leaky).logits
    n0 = len(rows[0]["input_ids"])
    torch.testing.assert_close(good[0, :n0], bad[0, :n0])  # the first example sees nothing before it
    assert not torch.allclose(good[0, n0:], bad[0, n0:], atol=1e-3)


def test_packing_is_refused_for_an_encoder_decoder_model():
    spec = {**defaults(sft.PARAMS), "model": "tiny-t5", "packing": True}
    problem = sft.check_spec(spec)
    assert problem is not None and "packing applies to causal models" in problem
    assert sft.check_spec({**spec, "model": "tiny-gpt2"}) is None
