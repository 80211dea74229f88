"""Adapters and training strategies: what trains, and what the adapter file keeps."""

from __future__ import annotations

import peft
import pytest
import torch

from harness.models import surgery, tiny
from harness.training import adapters

pytestmark = [
    pytest.mark.unit,
    # transformers 5 deprecates the attribute that peft 0.21 still reads when wrapping a model.
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]

ADAPTER_PARAM = {"lora": "lora_", "ia3": "ia3_"}


def _trainable(model) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def _loss(model, tokenizer):
    ids = tokenizer(["### User:\nReverse cat.\n\n### Assistant:\ntac"], return_tensors="pt")["input_ids"]
    loss = model(input_ids=ids, labels=ids).loss
    assert torch.isfinite(loss)
    return loss


@pytest.mark.parametrize("name", sorted(tiny.TINY))
@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_frozen_trains_only_the_adapter(name, method, load_tiny):
    model, tokenizer, _ = load_tiny(name)
    total_before = sum(p.numel() for p in model.parameters())
    prepared = adapters.prepare(model, method=method, strategy="frozen")
    assert isinstance(prepared.model, peft.PeftModel)
    names = _trainable(prepared.model)
    assert names and all(ADAPTER_PARAM[method] in n for n in names)
    assert 0 < prepared.trainable < prepared.total
    assert prepared.total - total_before == prepared.trainable  # adapters add exactly what trains
    assert prepared.modules_to_save == ()
    _loss(prepared.model, tokenizer).backward()
    assert all(p.grad is not None for n, p in prepared.model.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("name", sorted(tiny.TINY))
@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_selective_also_trains_every_norm(name, method, load_tiny):
    model, tokenizer, _ = load_tiny(name)
    surgery.swap_norm(model, "dyt")
    norm_names = list(surgery.norm_modules(model))
    prepared = adapters.prepare(model, method=method, strategy="selective")
    assert prepared.modules_to_save == tuple(norm_names)
    names = _trainable(prepared.model)
    norm_params = [n for n in names if ".modules_to_save." in n]
    assert {n.split(".modules_to_save.")[0].removeprefix("base_model.model.") for n in norm_params} == set(norm_names)
    assert sum(n.endswith(".alpha") for n in norm_params) == len(norm_names)  # DyT's alpha trains too
    assert all(ADAPTER_PARAM[method] in n for n in names if n not in norm_params)
    _loss(prepared.model, tokenizer).backward()


@pytest.mark.parametrize("method", ["lora", "ia3", "full"])
def test_full_strategy_trains_everything(method, load_tiny):
    model, tokenizer, _ = load_tiny("tiny-gpt2")
    prepared = adapters.prepare(model, method=method, strategy="full")
    assert prepared.trainable == prepared.total
    assert (method == "full") != isinstance(prepared.model, peft.PeftModel)
    _loss(prepared.model, tokenizer).backward()


@pytest.mark.parametrize("name", sorted(tiny.TINY))
def test_selective_norms_survive_adapter_save_and_load(name, load_tiny, tmp_path):
    model, tokenizer, _ = load_tiny(name)
    surgery.swap_norm(model, "dyt")
    prepared = adapters.prepare(model, method="lora", strategy="selective")
    with torch.no_grad():  # stand-in for training: move every trainable parameter
        for p in prepared.model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    prepared.model.eval()
    ids = tokenizer(["### User:\nHi\n\n### Assistant:\nHello"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = prepared.model(input_ids=ids, labels=ids).logits
    prepared.model.save_pretrained(tmp_path)

    base, _, _ = load_tiny(name)
    surgery.swap_norm(base, "dyt")  # the adapter's norms need the same surgery on the base
    loaded = peft.PeftModel.from_pretrained(base, tmp_path)
    loaded.eval()
    trained = {n: p for n, p in prepared.model.named_parameters() if p.requires_grad}
    restored = dict(loaded.named_parameters())
    assert all(torch.equal(trained[n], restored[n]) for n in trained)
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids, labels=ids).logits, expected)


def test_bad_method_and_strategy_are_refused(load_tiny):
    model, _, _ = load_tiny("tiny-gpt2")
    with pytest.raises(ValueError, match="unknown method 'prefix'; use one of lora, ia3, full"):
        adapters.prepare(model, method="prefix", strategy="frozen")
    with pytest.raises(ValueError, match="unknown strategy 'some'; use one of frozen, selective, full"):
        adapters.prepare(model, method="lora", strategy="some")
    with pytest.raises(ValueError, match="method 'full' trains every parameter; use strategy 'full'"):
        adapters.prepare(model, method="full", strategy="frozen")
