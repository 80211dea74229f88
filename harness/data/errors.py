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
    where: str  # "line 17" (JSON Lines, 1-based), "record 42" (JSON array / Parquet / hub, 0-based), "end of data"
    reason: str
    #: records this loss stands for: 1 for a bad line or record; for a damaged stretch of a JSON array
    #: or a lost tail, an estimate from the sizes of the records around it (at least 1)
    count: int = 1


@dataclasses.dataclass(frozen=True)
class SkipReport:
    """How many records a source held and which ones were skipped, and why; store it with the run."""

    source: str
    total: int
    skipped: tuple[Skip, ...]

    @property
    def lost(self) -> int:
        return sum(skip.count for skip in self.skipped)

    @property
    def used(self) -> int:
        return self.total - self.lost

    @property
    def bad_share(self) -> float:
        return self.lost / self.total if self.total else 0.0

    def summary(self, show: int = 5) -> str:
        """One line: counts and the first `show` skipped places."""
        line = f"{self.source}: {self.used} of {self.total} records used, {self.lost} skipped"
        if self.skipped:
            first = "; ".join(f"{skip.where}: {skip.reason}" for skip in self.skipped[:show])
            more = f"; and {len(self.skipped) - show} more" if len(self.skipped) > show else ""
            line += f" ({first}{more})"
        return line

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
