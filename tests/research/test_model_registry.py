"""Registry: tiny models build offline, load back by path, and bad names fail clearly."""

from __future__ import annotations

import pytest
import torch
import transformers

from harness.models import families, registry, tiny

pytestmark = pytest.mark.unit

TINY = sorted(tiny.TINY)


@pytest.mark.parametrize("name", TINY)
def test_tiny_model_builds_offline_and_is_cached(name, tiny_cache):
    model, tokenizer, family = registry.load(name, cache_dir=tiny_cache)
    assert family is tiny.TINY[name]
    assert (tiny_cache / "tiny" / f"{name}-v{tiny.VERSION}" / "config.json").is_file()
    assert 512 <= len(tokenizer) <= 1000
    assert tokenizer.pad_token is not None and tokenizer.eos_token is not None
    assert sum(p.numel() for p in model.parameters()) < 500_000
    auto = transformers.AutoModelForSeq2SeqLM if family.seq2seq else transformers.AutoModelForCausalLM
    assert isinstance(model, auto._model_mapping[type(model.config)])


@pytest.mark.parametrize("name", TINY)
def test_save_pretrained_then_load_by_path(name, load_tiny, tmp_path):
    model, tokenizer, family = load_tiny(name)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    again, tokenizer_again, family_again = registry.load(tmp_path)
    assert family_again is family
    assert registry.family_of(str(tmp_path)) is family
    for (key, value), (key_again, value_again) in zip(model.state_dict().items(), again.state_dict().items()):
        assert key == key_again and torch.equal(value, value_again)
    text = "### User:\nAdd the two numbers.\n\n12 + 30"
    assert tokenizer(text)["input_ids"] == tokenizer_again(text)["input_ids"]


def test_tiny_build_is_deterministic(tmp_path):
    first = registry.load("tiny-gpt2", cache_dir=tmp_path / "a").model
    second = registry.load("tiny-gpt2", cache_dir=tmp_path / "b").model
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_hub_names_map_to_families():
    assert registry.family_of("distilgpt2") is families.GPT2
    assert registry.family_of("gpt2") is families.GPT2
    for size in ("14m", "70m", "160m", "410m"):
        assert registry.family_of(f"EleutherAI/pythia-{size}") is families.GPT_NEOX
    assert registry.family_of("t5-small") is families.T5


def test_unknown_name_lists_known_names():
    with pytest.raises(registry.UnknownModel, match="unknown model 'gpt5'.*EleutherAI/pythia-70m.*tiny-gpt2"):
        registry.load("gpt5")


def test_directory_without_a_model_is_refused(tmp_path):
    with pytest.raises(registry.UnknownModel, match="no config.json"):
        registry.load(tmp_path)


def test_unsupported_architecture_is_refused(tmp_path):
    transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(registry.UnknownModel, match="'bert'.*gpt2, gpt_neox, t5"):
        registry.load(tmp_path)


def test_hub_model_not_in_the_local_cache_fails_with_a_fix():
    # The hub code path, without the network: only the local Hugging Face cache is consulted.
    with pytest.raises(registry.ModelUnavailable, match="could not load 'EleutherAI/pythia-14m'.*hf download"):
        registry.load("EleutherAI/pythia-14m", local_files_only=True)


def test_directory_with_config_but_no_weights_is_unavailable(load_tiny, tmp_path):
    model, _, _ = load_tiny("tiny-gpt2")
    model.config.save_pretrained(tmp_path)
    with pytest.raises(registry.ModelUnavailable, match="check that the directory holds the weight"):
        registry.load(tmp_path)
