"""The healed swap: norms replaced one at a time in the LN-removal recipe's order (MLP norms,
then attention norms, then the final norm), or blended; the model starts as the original and
ends as the swapped one."""

from __future__ import annotations

import copy

import pytest
import torch

from harness.models import healing, norms, surgery
from harness.training import adapters

pytestmark = pytest.mark.unit


def _healed(load_tiny, schedule, heal_steps=10, kind="dyt"):
    model, tokenizer, family = load_tiny("tiny-gpt2")
    original = copy.deepcopy(model).eval()
    originals = surgery.norm_modules(model)
    report = surgery.swap_norm(model, kind)
    swapped = copy.deepcopy(model).eval()
    order = healing.wrap(model, {n: originals[n] for n in report.replaced}, schedule=schedule, heal_steps=heal_steps)
    return model.eval(), original, swapped, order, tokenizer


def test_layerwise_order_and_switch_steps(load_tiny):
    model, _, _, order, _ = _healed(load_tiny, "layerwise", heal_steps=10)
    assert order == ["transformer.h.0.ln_2", "transformer.h.1.ln_2", "transformer.h.0.ln_1", "transformer.h.1.ln_1",
                     "transformer.ln_f"]
    assert [model.get_submodule(n).switch_step for n in order] == [2, 4, 6, 8, 10]
    assert healing.set_step(model, 0) == [] and healing.healed(model) == 0
    assert healing.set_step(model, 5) == [model.get_submodule(n) for n in order[:2]]
    assert [model.get_submodule(n).mix for n in order] == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert len(healing.set_step(model, 10)) == 3 and healing.healed(model) == 5 and healing.progress(model) == 1.0
    assert norms.kind_of(model.transformer.ln_f) == "healing"
    assert list(surgery.norm_modules(model)) == list(surgery.norm_roles(model))  # inner norms not listed apart


def test_starts_as_the_original_and_ends_as_the_swapped_model(load_tiny):
    model, original, swapped, _, tokenizer = _healed(load_tiny, "layerwise", heal_steps=10)
    ids = tokenizer(["### User:\nAdd 2 and 3.\n\n### Assistant:\n5"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        healing.set_step(model, 0)
        assert torch.allclose(model(input_ids=ids).logits, original(input_ids=ids).logits, atol=1e-6)
        healing.set_step(model, 4)
        middle = model(input_ids=ids).logits
        healing.set_step(model, 10)
        assert torch.allclose(model(input_ids=ids).logits, swapped(input_ids=ids).logits, atol=1e-6)
    assert not torch.allclose(middle, original(input_ids=ids).logits)


def test_a_switching_norm_takes_the_trained_weight_and_bias(load_tiny):
    model, _, _, order, _ = _healed(load_tiny, "layerwise", heal_steps=10)
    first = model.get_submodule(order[0])
    with torch.no_grad():
        first.source.weight.mul_(1.5)
        first.source.bias.add_(0.25)
    healing.set_step(model, 1)
    assert not torch.equal(first.target.weight, first.source.weight)
    healing.set_step(model, 2)  # switches now
    assert torch.equal(first.target.weight, first.source.weight) and torch.equal(first.target.bias, first.source.bias)
    with torch.no_grad():
        first.target.weight.mul_(2.0)  # trained after the switch
    healing.set_step(model, 3)
    assert not torch.equal(first.target.weight, first.source.weight)  # carried once only


def test_a_resumed_run_sets_the_step_without_carrying(load_tiny):
    model, _, _, order, _ = _healed(load_tiny, "layerwise", heal_steps=10)
    first = model.get_submodule(order[0])
    with torch.no_grad():
        first.target.weight.fill_(3.0)  # what the checkpoint holds
    healing.set_step(model, 7, carry_parameters=False)
    assert first.mix == 1.0 and torch.all(first.target.weight == 3.0)


def test_blend_mixes_every_norm_linearly(load_tiny):
    model, _, _, order, _ = _healed(load_tiny, "blend", heal_steps=8, kind="none")
    healing.set_step(model, 2)
    assert {model.get_submodule(n).mix for n in order} == {0.25}
    healing.set_step(model, 8)
    assert healing.healed(model) == 5


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # peft 0.21 on transformers 5
def test_selective_training_saves_and_heals_the_wrapped_norms(load_tiny):
    model, _, _, order, _ = _healed(load_tiny, "layerwise", heal_steps=10)
    prepared = adapters.prepare(model, method="lora", strategy="selective")
    assert set(prepared.modules_to_save) == set(order)
    healing.set_step(prepared.model, 10)
    assert healing.healed(prepared.model) == 2 * len(order)  # peft's originals and the trained copies
    trainable = {n for n, p in prepared.model.named_parameters() if p.requires_grad}
    assert any(".target.alpha" in n for n in trainable) and any(".source.weight" in n for n in trainable)


def test_a_switching_dyt_gets_its_alpha_fitted_on_the_current_model(load_tiny, make_batches):
    from harness.models import calibrate

    model, _, _, order, tokenizer = _healed(load_tiny, "layerwise", heal_steps=10)
    batches = make_batches(tokenizer, __import__("harness.models.families", fromlist=["GPT2"]).GPT2)
    switched = healing.set_step(model, 2)
    names = {m: n for n, m in model.named_modules()}
    fits = calibrate.refit(model, {names[m]: m for m in switched}, batches)
    assert [f.name for f in fits] == [order[0]]
    assert fits[0].mse <= fits[0].mse_default  # never worse than the alpha it had
    assert model.get_submodule(order[0]).target.alpha.item() == pytest.approx(fits[0].alpha)
