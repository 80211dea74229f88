"""Evaluation errors a user can fix: each prints as one line, what went wrong and how to fix it."""

from __future__ import annotations

from db.errors import GridlabError


class EvaluationError(GridlabError):
    """An evaluation input cannot be used."""


class PromptFileError(EvaluationError):
    """A prompt file is missing or is not in MT-Bench format."""


class RankerError(EvaluationError):
    """A PairRM ranker path is not a usable local ranker."""


class ComparisonError(EvaluationError):
    """Two arms cannot be compared (no answers, or answers to different prompts)."""
