"""Norm and activation swaps: exactly the intended modules change, and the model still trains."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.models import norms, surgery, tiny

pytestmark = pytest.mark.unit

# Norm modules per tiny family (2 layers): GPT-2 ln_1, ln_2 per block + ln_f; NeoX
# input/post-attention per layer + final; T5 encoder 2 per block + final, decoder 3 per block + final.
NORM_COUNT = {"tiny-gpt2": 5, "tiny-pythia": 5, "tiny-t5": 12}
NATIVE = {"tiny-gpt2": "layernorm", "tiny-pythia": "layernorm", "tiny-t5": "rmsnorm"}
MLP_COUNT = {"tiny-gpt2": 2, "tiny-pythia": 2, "tiny-t5": 4}
NATIVE_ACTIVATION = {"tiny-gpt2": "gelu", "tiny-pythia": "gelu", "tiny-t5": "relu"}
CLASSES = {"layernorm": nn.LayerNorm, "dyt": norms.DyT, "rmsnorm": None, "none": norms.NoNorm}


def _train_step(model, tokenizer):
    ids = tokenizer(["### User:\nAdd 2 and 3.\n\n### Assistant:\n5"], return_tensors="pt")["input_ids"]
    model.train()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", sorted(tiny.TINY))
@pytest.mark.parametrize("kind", norms.KINDS)
def test_swap_norm_changes_every_norm_not_native_to_kind(name, kind, load_tiny):
    model, tokenizer, _ = load_tiny(name)
    before = {n: m for n, m in model.named_modules()}
    report = surgery.swap_norm(model, kind)
    expected = 0 if kind == NATIVE[name] else NORM_COUNT[name]
    assert len(report.replaced) == expected
    assert len(report.replaced) + len(report.kept) == NORM_COUNT[name]
    after = {n: m for n, m in model.named_modules()}
    changed = {n for n in after if n in before and after[n] is not before[n]}
    assert changed == set(report.replaced)  # nothing but the norms was touched
    assert all(norms.kind_of(after[n]) == kind for n in report.replaced + report.kept)
    if CLASSES[kind] is not None:
        assert all(isinstance(after[n], CLASSES[kind]) for n in report.replaced)
    assert any(n.endswith(("ln_f", "final_layer_norm")) for n in report.replaced + report.kept)
    _train_step(model, tokenizer)


def test_dyt_carries_weight_and_bias_over(load_tiny):
    model, _, _ = load_tiny("tiny-gpt2")
    ln = model.transformer.h[0].ln_1
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-0.1, 0.1)
    weight, bias = ln.weight.clone(), ln.bias.clone()
    surgery.swap_norm(model, "dyt", alpha=0.7)
    dyt = model.transformer.h[0].ln_1
    assert torch.equal(dyt.weight, weight) and torch.equal(dyt.bias, bias)
    assert dyt.alpha.item() == pytest.approx(0.7)
    x = torch.randn(3, 64)
    assert torch.allclose(dyt(x), weight * torch.tanh(0.7 * x) + bias)


def test_t5_dyt_has_no_bias_and_rmsnorm_matches_t5_norm(load_tiny):
    model, _, _ = load_tiny("tiny-t5")
    original = model.encoder.final_layer_norm
    x = torch.randn(2, 5, 64)
    expected = original(x)
    surgery.swap_norm(model, "dyt")
    assert model.encoder.final_layer_norm.bias is None
    surgery.swap_norm(model, "rmsnorm")  # DyT -> our RMSNorm, with T5's weight carried through
    assert isinstance(model.encoder.final_layer_norm, norms.RMSNorm)
    assert torch.allclose(model.encoder.final_layer_norm(x), expected, atol=1e-6)


def test_swap_back_from_none_rebuilds_a_norm(load_tiny):
    model, tokenizer, _ = load_tiny("tiny-gpt2")
    surgery.swap_norm(model, "none")
    report = surgery.swap_norm(model, "layernorm")
    assert len(report.replaced) == 5
    assert model.transformer.ln_f.bias is not None and model.transformer.ln_f.normalized_shape == (64,)
    _train_step(model, tokenizer)


def test_calibrated_alphas_must_cover_every_layer(load_tiny):
    model, _, _ = load_tiny("tiny-gpt2")
    with pytest.raises(ValueError, match="no calibrated alpha for transformer.h.0.ln_2"):
        surgery.swap_norm(model, "dyt", alpha={"transformer.h.0.ln_1": 1.0})


def test_unknown_kinds_are_refused(load_tiny):
    model, _, _ = load_tiny("tiny-gpt2")
    with pytest.raises(ValueError, match="unknown norm kind .batchnorm.; use one of keep, layernorm, dyt"):
        surgery.swap_norm(model, "batchnorm")
    with pytest.raises(ValueError, match="unknown activation 'swish'; use one of gelu, relu"):
        surgery.swap_activation(model, "swish")


@pytest.mark.parametrize("name", sorted(tiny.TINY))
@pytest.mark.parametrize("activation", surgery.ACTIVATIONS)
def test_swap_activation_changes_every_mlp(name, activation, load_tiny, tmp_path):
    model, tokenizer, _ = load_tiny(name)
    report = surgery.swap_activation(model, activation)
    expected = 0 if activation == NATIVE_ACTIVATION[name] else MLP_COUNT[name]
    assert len(report.replaced) == expected
    assert len(report.replaced) + len(report.kept) == MLP_COUNT[name]
    acts = [m for n, m in model.named_modules() if n.endswith(".act")]
    assert len(acts) == MLP_COUNT[name]
    assert all(surgery.activation_kind(a) == activation for a in acts)
    _train_step(model, tokenizer)
    # The config records the swap, so a saved model reloads with the same activation.
    model.save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path)
    acts = [m for n, m in reloaded.named_modules() if n.endswith(".act")]
    assert all(surgery.activation_kind(a) == activation for a in acts)
