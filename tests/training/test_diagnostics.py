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
