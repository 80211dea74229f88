"""Typed parameters an experiment accepts, and their validation.

An experiment declares ``PARAMS: dict[str, Param]``. A grid file's fixed settings and
axes are checked against them before anything is written: an unknown name lists the
valid ones, a wrong value says which values are allowed.

A cell's identity (its spec hash, which makes enqueueing idempotent) is its resolved spec.
A setting added to an experiment after grids were enqueued would change every cell's spec,
so re-enqueueing an unchanged grid file after an upgrade would queue every cell again. Such
a setting is declared ``neutral``: its default is the behaviour from before it existed, and
at that default it stays out of the stored spec and so out of the hash. A worker fills it in
(:func:`resolve`) before the experiment runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from db.errors import GridlabError
from jobs import states


class InvalidSpec(GridlabError):
    """A cell's settings cannot run (an unknown experiment, a combination an experiment
    refuses, an arm that is not in the grid). ``invalid``: the job is never retried."""

    outcome = states.OUTCOME_INVALID

REQUIRED = object()


@dataclass(frozen=True)
class Param:
    kind: type  # int, float, str or bool
    default: Any = REQUIRED
    help: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    check: Callable[[Any], str | None] | None = None  # returns a problem, or None
    #: added after grids were first enqueued: at its default it leaves specs (and hashes) as before
    neutral: bool = False

    def coerce(self, value: Any) -> tuple[Any, str | None]:
        """(value converted to this kind, problem or None)."""
        if self.kind is bool:
            if isinstance(value, bool):
                return value, None
            return value, f"expected true or false, got {value!r}"
        if isinstance(value, bool):
            return value, f"expected {self.kind.__name__}, got {value!r}"
        if self.kind is float:
            if isinstance(value, int) and not -(2**63) <= value < 2**63:
                return value, f"expected a number within 64 bits, got {len(str(abs(value)))} digits"
            if isinstance(value, (int, float)):
                value = float(value)
            elif isinstance(value, str):
                # YAML 1.1 reads 1e-3 (no dot) as a string; accept it as a number.
                try:
                    value = float(value)
                except ValueError:
                    return value, f"expected a number, got {value!r}"
            else:
                return value, f"expected a number, got {value!r}"
            if not math.isfinite(value):
                return value, f"expected a finite number, got {value!r}"
        elif self.kind is int:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int):
                return value, f"expected an integer, got {value!r}"
            if not -(2**63) <= value < 2**63:
                return value, f"expected an integer within 64 bits, got {len(str(abs(value)))} digits"
        elif self.kind is str:
            if not isinstance(value, str):
                return value, f"expected a string, got {value!r}"
        if self.choices is not None and value not in self.choices:
            return value, f"{value!r} is not one of: {', '.join(map(str, self.choices))}"
        if self.minimum is not None and value < self.minimum:
            return value, f"must be at least {self.minimum}, got {value!r}"
        if self.check is not None:
            problem = self.check(value)
            if problem:
                return value, problem
        return value, None


def defaults(params: dict[str, Param]) -> dict[str, Any]:
    return {name: p.default for name, p in params.items() if p.default is not REQUIRED}


def stored_defaults(params: dict[str, Param]) -> dict[str, Any]:
    """The defaults a cell's stored spec (and hash) carries: all but the neutral ones."""
    return {name: p.default for name, p in params.items() if p.default is not REQUIRED and not p.neutral}


def stored(params: dict[str, Param], spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` less the neutral settings that are at their default."""
    return {k: v for k, v in spec.items() if not (k in params and params[k].neutral and v == params[k].default)}


def resolve(params: dict[str, Param], spec: dict[str, Any]) -> dict[str, Any]:
    """A stored spec with every default filled in: what the experiment runs with (a spec
    stored before a setting existed, or without a neutral one, gets its default)."""
    return {**defaults(params), **spec}


def required(params: dict[str, Param]) -> list[str]:
    return [name for name, p in params.items() if p.default is REQUIRED]
