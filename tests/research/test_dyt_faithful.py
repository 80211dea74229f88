"""DyT as in Zhu et al. 2025: scalar alpha, the replaced norm's weight and bias, separate initial
alphas for attention, feed-forward and final norms; every norm of GPT-2, GPT-NeoX and T5 has a role."""

from __future__ import annotations

import pytest
import torch

from harness.models import norms, surgery, tiny

pytestmark = pytest.mark.unit

ROLES = {
    "tiny-gpt2": {"attn": 2, "ffn": 2, "final": 1},
    "tiny-pythia": {"attn": 2, "ffn": 2, "final": 1},
    # encoder: self-attn + FF per block, final; decoder: self-attn + cross-attn + FF per block, final
    "tiny-t5": {"attn": 6, "ffn": 4, "final": 2},
}


@pytest.mark.parametrize("name", sorted(tiny.TINY))
def test_every_norm_has_a_role(name, load_tiny):
    model, _, _ = load_tiny(name)
    roles = surgery.norm_roles(model)
    assert list(roles) == list(surgery.norm_modules(model))
    counts = {role: list(roles.values()).count(role) for role in surgery.ROLES}
    assert counts == ROLES[name]


@pytest.mark.parametrize("name", sorted(tiny.TINY))
def test_role_alphas_land_on_their_norms(name, load_tiny):
    model, _, _ = load_tiny(name)
    roles = surgery.norm_roles(model)
    surgery.swap_norm(model, "dyt", alpha=surgery.alphas_by_role(model, attn=0.8, ffn=0.2, final=0.3))
    expected = {"attn": 0.8, "ffn": 0.2, "final": 0.3}
    for module_name, role in roles.items():
        dyt = model.get_submodule(module_name)
        assert isinstance(dyt, norms.DyT)
        assert dyt.alpha.shape == (1,)  # one scalar per layer, as the reference code
        assert dyt.alpha.item() == pytest.approx(expected[role])


def test_t5_decoder_cross_attention_norm_is_an_attention_norm(load_tiny):
    model, _, _ = load_tiny("tiny-t5")
    roles = surgery.norm_roles(model)
    assert roles["decoder.block.0.layer.1.layer_norm"] == "attn"  # T5LayerCrossAttention
    assert roles["decoder.block.0.layer.2.layer_norm"] == "ffn"
    assert roles["encoder.block.0.layer.1.layer_norm"] == "ffn"
    assert roles["encoder.final_layer_norm"] == roles["decoder.final_layer_norm"] == "final"


def test_block_norms_only_leaves_the_final_norm(load_tiny):
    model, _, _ = load_tiny("tiny-gpt2")
    report = surgery.swap_norm(model, "none", roles=("attn", "ffn"))
    assert set(report.replaced) == {"transformer.h.0.ln_1", "transformer.h.0.ln_2", "transformer.h.1.ln_1",
                                    "transformer.h.1.ln_2"}
    assert isinstance(model.transformer.ln_f, torch.nn.LayerNorm)


def test_pretrained_weights_load_in_float32_whatever_is_stored(load_tiny, tiny_cache, tmp_path):
    from harness.models import registry

    model, tokenizer, _ = load_tiny("tiny-gpt2")
    model.half().save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = registry.load(tmp_path)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
