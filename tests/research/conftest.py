"""Fixtures for the research-worker tests: tiny models built once per session (in
``tiny_cache``, tests/conftest.py), offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import DataCollatorForSeq2Seq

from harness.data import formats, synthetic, tokenization
from harness.models import registry

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture
def load_tiny(tiny_cache):
    """A fresh (model, tokenizer, family) for a tiny name, loaded from the session cache."""

    def load(name: str) -> registry.Loaded:
        torch.manual_seed(0)
        return registry.load(name, cache_dir=tiny_cache)

    return load


@pytest.fixture
def make_batches():
    """Collated batches of synthetic training data for a tokenizer and family."""

    def make(tokenizer, family, n: int = 16, batch_size: int = 8, max_length: int = 48) -> list[dict]:
        conversations = [formats.alpaca(record) for record in synthetic.records(n, seed=1)]
        dataset = tokenization.tokenize(conversations, tokenizer, seq2seq=family.seq2seq, max_length=max_length).dataset
        collate = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=tokenization.IGNORE, return_tensors="pt")
        rows = [dataset[i] for i in range(len(dataset))]
        return [collate(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]

    return make


@pytest.fixture
def shared_data() -> Path:
    """The shared public data directory beside the repository; skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not here (the shared public data lives beside the repository)")
    return SHARED_DATA
