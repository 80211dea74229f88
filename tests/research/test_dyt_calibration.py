"""DyT alpha calibration fits each layer better than the default alpha, on real activations."""

from __future__ import annotations

import copy

import pytest
import torch

from harness.models import calibrate, surgery, tiny

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", sorted(tiny.TINY))
def test_calibration_beats_the_default_alpha(name, load_tiny, make_batches):
    model, tokenizer, family = load_tiny(name)
    batches = make_batches(tokenizer, family)
    result = calibrate.calibrate_dyt(model, batches)
    assert [fit.name for fit in result.layers] == list(surgery.norm_modules(model))
    assert result.rows > 100
    for fit in result.layers:
        assert 1e-3 <= fit.alpha <= 1e3
        assert fit.mse < fit.mse_default
    assert result.to_dict()["layers"][0]["name"] == result.layers[0].name


def test_calibrated_dyt_model_tracks_the_original_more_closely(load_tiny, make_batches):
    model, tokenizer, family = load_tiny("tiny-gpt2")
    batches = make_batches(tokenizer, family)
    result = calibrate.calibrate_dyt(model, batches)
    model.eval()
    default, calibrated = copy.deepcopy(model), copy.deepcopy(model)
    surgery.swap_norm(default, "dyt")
    report = surgery.swap_norm(calibrated, "dyt", alpha=result.alphas)
    assert len(report.replaced) == len(result.layers)
    assert calibrated.transformer.ln_f.alpha.item() == pytest.approx(result.alphas["transformer.ln_f"])
    with torch.no_grad():
        reference = model(**batches[0]).logits
        gap_default = (default(**batches[0]).logits - reference).pow(2).mean()
        gap_calibrated = (calibrated(**batches[0]).logits - reference).pow(2).mean()
    assert gap_calibrated < gap_default


def test_calibration_restores_training_mode_and_removes_hooks(load_tiny, make_batches):
    model, tokenizer, family = load_tiny("tiny-gpt2")
    model.train()
    calibrate.calibrate_dyt(model, make_batches(tokenizer, family, n=8))
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())


def test_calibration_without_batches_is_refused(load_tiny):
    model, _, _ = load_tiny("tiny-gpt2")
    with pytest.raises(ValueError, match="at least one batch"):
        calibrate.calibrate_dyt(model, [])


def test_padding_does_not_enter_the_fit(load_tiny, make_batches):
    model, tokenizer, family = load_tiny("tiny-gpt2")
    (batch,) = make_batches(tokenizer, family, n=8)
    padded = {k: torch.cat([v, torch.full((v.shape[0], 7), 3 if k == "input_ids" else 0 if k == "attention_mask"
                                          else -100, dtype=v.dtype)], dim=1) for k, v in batch.items()}
    plain = calibrate.calibrate_dyt(model, [batch])
    with_padding = calibrate.calibrate_dyt(model, [padded])
    assert with_padding.rows == plain.rows == int(batch["attention_mask"].sum())
    for a, b in zip(plain.layers, with_padding.layers):
        assert a.alpha == pytest.approx(b.alpha, rel=1e-6)


def test_layers_are_fitted_in_order_on_the_swapped_model(load_tiny, make_batches):
    model, tokenizer, family = load_tiny("tiny-gpt2")
    result = calibrate.calibrate_dyt(model, make_batches(tokenizer, family))
    first, *later = result.layers
    assert first.name == "transformer.h.0.ln_1" and first.drift == 0.0  # its input is the embeddings
    assert all(fit.drift > 0 for fit in later)  # earlier swaps moved their inputs
    assert [fit.role for fit in result.layers] == ["attn", "ffn", "attn", "ffn", "final"]
    assert all(isinstance(m, torch.nn.LayerNorm) for m in surgery.norm_modules(model).values())  # left as it was


def test_the_fitted_alpha_is_a_minimum_of_the_fit_error(load_tiny, make_batches):
    model, tokenizer, family = load_tiny("tiny-pythia")
    batches = make_batches(tokenizer, family)
    result = calibrate.calibrate_dyt(model, batches, default_alpha=surgery.alphas_by_role(model, 0.8, 0.2, 0.2))
    assert {fit.default_alpha for fit in result.layers} == {0.8, 0.2}
    target = result.layers[0]
    x = calibrate._capture(model, batches, calibrate._RowPicker(batches, 4096, 0, seq2seq=False),
                           {target.name: model.get_submodule(target.name)}, output=False)[target.name]
    ln = model.get_submodule(target.name)
    with torch.no_grad():
        y = ln(x.float()).double()
    w, b = ln.weight.detach().double(), ln.bias.detach().double()
    import math

    at = calibrate._mse(math.log(target.alpha), x, y, w, b)
    assert at == pytest.approx(target.mse, rel=1e-6)
    for step in (-0.05, 0.05):
        assert calibrate._mse(math.log(target.alpha) + step, x, y, w, b) >= at
