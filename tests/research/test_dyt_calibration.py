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
