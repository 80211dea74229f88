"""ROUGE and BLEU against reference outputs."""

from __future__ import annotations

import pytest

from harness.evaluation import references

pytestmark = pytest.mark.unit


def test_identical_answers_score_100():
    figures = references.scores(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert figures == pytest.approx({"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0, "bleu": 100.0})


def test_partial_overlap_is_between():
    figures = references.scores(["the cat sat on the mat", ""], ["the cat is on the mat", "hello"])
    assert 0 < figures["rouge1"] < 100 and 0 < figures["bleu"] < 100


def test_lengths_must_match():
    assert references.scores([], []) == {}
    with pytest.raises(ValueError, match="1 predictions for 2 references"):
        references.scores(["a"], ["a", "b"])
