"""Evaluation errors a user can fix: each prints as one line, what went wrong and how to fix it."""

from __future__ import annotations

from db.errors import GridlabError
from jobs import states


class EvaluationError(GridlabError):
    """An evaluation input cannot be used (``invalid``: a job that raises it is not retried)."""

    outcome = states.OUTCOME_INVALID


class PromptFileError(EvaluationError):
    """A prompt file is missing or is not in MT-Bench format."""


class RankerError(EvaluationError):
    """A PairRM ranker path is not a usable local ranker."""


class RankerUnavailable(RankerError):
    """The ranker or its backbone could not be loaded now (not downloaded yet, a read that
    failed): retried with backoff."""

    outcome = states.OUTCOME_NETWORK


class ComparisonError(EvaluationError):
    """Two arms cannot be compared (no answers, or answers to different prompts)."""
