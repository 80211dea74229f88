"""Frozen views of database rows handed to callers (never live ORM objects)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from db.views import RunningJob  # noqa: F401  (a read view the CLI and the dashboard share)


@dataclass(frozen=True)
class JobRecord:
    id: int
    grid_id: int
    spec_hash: str
    spec: dict[str, Any]
    factors: dict[str, Any]
    experiment: str
    state: str
    priority: int
    attempts: int
    max_attempts: int
    checkpoint_path: str | None
    checkpoint_step: int | None
    resource_class: str = "default"

    @classmethod
    def from_mapping(cls, m: Any) -> "JobRecord":
        return cls(**{name: m[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Lease:
    """A worker's hold on one attempt of one job: the fencing token for every write."""

    job_id: int
    attempt: int
    owner: str


@dataclass(frozen=True)
class Claimed:
    """What a successful claim hands the worker."""

    job: JobRecord
    lease: Lease


@dataclass(frozen=True)
class EnqueueResult:
    grid: str
    total: int
    new: int
    existing: int
