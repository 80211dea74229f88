"""Fixtures for the evaluation tests: tiny models and the tiny PairRM ranker, built once per
session in the session's gridlab cache (``tiny_cache``, tests/conftest.py), offline."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def ranker_dir(tiny_cache) -> Path:
    from harness.evaluation import tiny_ranker

    return tiny_ranker.ensure(tiny_cache)


@pytest.fixture(scope="session")
def ranker(ranker_dir):
    from harness.evaluation import pairrm

    return pairrm.load(ranker_dir)


@pytest.fixture
def tiny(tiny_cache):
    """(model, tokenizer) of a tiny model, freshly loaded."""
    from harness.models import registry

    def load(name: str = "tiny-gpt2"):
        loaded = registry.load(name, cache_dir=tiny_cache)
        return loaded.model, loaded.tokenizer

    return load


@pytest.fixture
def small_prompts(tmp_path):
    """A two-question MT-Bench-format file (two turns, then one turn)."""
    from harness.evaluation import prompts

    path = tmp_path / "small.jsonl"
    path.write_text(
        '{"question_id": 7, "category": "math", "turns": ["Add 2 and 3.", "Now double it."]}\n'
        '{"question_id": "w1", "category": "writing", "turns": ["Name a colour."]}\n',
        encoding="utf-8",
    )
    return prompts.load(path)


@pytest.fixture
def mt_bench() -> Path:
    path = SHARED_DATA / "mt_bench_question.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is not here (the shared public data lives beside the repository)")
    return path
