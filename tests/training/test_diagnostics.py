"""Attention entropy: uniform attention over n keys has entropy log(n); padding is not counted."""

from __future__ import annotations

import math

import pytest
import torch

from harness.training import diagnostics

pytestmark = pytest.mark.unit


def test_uniform_and_one_hot_attention():
    uniform = torch.full((1, 2, 3, 4), 0.25)
    uniform[:, 1] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    h = diagnostics.entropy(uniform, None)
    assert h[0].item() == pytest.approx(math.log(4))
    assert h[1].item() == pytest.approx(0.0, abs=1e-6)


def test_padded_queries_do_not_count():
    probs = torch.full((1, 1, 2, 2), 0.5)
    probs[0, 0, 1] = torch.tensor([1.0, 0.0])  # the padded query attends to one key
    h = diagnostics.entropy(probs, torch.tensor([[1, 0]]))
    assert h.item() == pytest.approx(math.log(2))


def test_normalised_entropy_is_one_for_uniform_causal_attention():
    q = k = 5
    probs = torch.zeros(2, 3, q, k)
    for i in range(q):
        probs[:, :, i, : i + 1] = 1.0 / (i + 1)
    row = diagnostics.layer_row(probs, stack="", layer=0, query_mask=None, key_mask=None, causal=True)
    assert row.entropy_norm == pytest.approx((1.0, 1.0, 1.0))
    assert row.nan == (0, 0, 0)
    assert row.max_entropy == pytest.approx(sum(math.log(i + 1) for i in range(1, q)) / (q - 1))


def test_normalised_entropy_of_one_hot_attention_is_zero_and_nans_are_counted_per_head():
    probs = torch.zeros(1, 2, 4, 4)
    probs[..., 0] = 1.0
    probs[0, 1, 3, :] = float("nan")
    row = diagnostics.layer_row(probs, stack="", layer=2, query_mask=None, key_mask=None, causal=True)
    assert row.entropy_norm[0] == pytest.approx(0.0, abs=1e-6)
    assert row.nan == (0, 4)
    metrics = diagnostics.row_metrics([row])
    assert set(metrics) == {"attn_entropy/L2", "attn_entropy_norm/L2", "attn_nan", "attn_overloaded_share"}
    assert metrics["attn_nan"] == 4.0


def test_encoder_keys_count_the_real_tokens_only():
    mask = torch.tensor([[1, 1, 1, 0]])
    probs = torch.zeros(1, 1, 4, 4)
    probs[..., :3] = 1.0 / 3
    row = diagnostics.layer_row(probs, stack="enc", layer=0, query_mask=mask, key_mask=mask, causal=False)
    assert row.entropy_norm[0] == pytest.approx(1.0)
    assert row.max_entropy == pytest.approx(math.log(3))
