"""The data layer's error and its record of what was skipped."""

from __future__ import annotations

import dataclasses

from db.errors import GridlabError
from jobs import states


class DataError(GridlabError, ValueError):
    """A data source cannot be used. The message is one line: which file, what is wrong, the fix.

    A `GridlabError` (the command line prints it as one line) and a `ValueError` (what callers of
    the research modules caught before). A job that raises it is ``invalid``: not retried."""

    outcome = states.OUTCOME_INVALID


class DataUnavailable(DataError):
    """A hub dataset could not be loaded (offline, a network error): retried with backoff."""

    outcome = states.OUTCOME_NETWORK


@dataclasses.dataclass(frozen=True)
class Skip:
    where: str  # "line 17" (JSON Lines, 1-based) or "record 42" (JSON array / Parquet / hub, 0-based)
    reason: str


@dataclasses.dataclass(frozen=True)
class SkipReport:
    """How many records a source held and which ones were skipped, and why; store it with the run."""

    source: str
    total: int
    skipped: tuple[Skip, ...]

    @property
    def used(self) -> int:
        return self.total - len(self.skipped)

    @property
    def bad_share(self) -> float:
        return len(self.skipped) / self.total if self.total else 0.0

    def summary(self, show: int = 5) -> str:
        """One line: counts and the first `show` skipped places."""
        line = f"{self.source}: {self.used} of {self.total} records used, {len(self.skipped)} skipped"
        if self.skipped:
            first = "; ".join(f"{skip.where}: {skip.reason}" for skip in self.skipped[:show])
            more = f"; and {len(self.skipped) - show} more" if len(self.skipped) > show else ""
            line += f" ({first}{more})"
        return line

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
