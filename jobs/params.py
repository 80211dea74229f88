"""Typed settings and their validation: the one mechanism for every setting gridlab checks.

A :class:`Param` says what one setting accepts (its kind, default, allowed values, a
minimum, a further check) and turns a value from a file or a flag into a clean one, or says
what is wrong with it. Experiments declare their settings with it (:mod:`harness.params`),
and so do the Slurm settings of a grid file's ``slurm:`` block (:mod:`slurm.settings`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The default of a setting that has none: a grid must give it.
REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One setting: what it accepts, its default and its help."""

    kind: type  # int, float, str or bool (with ``parse``, what parse returns)
    default: Any = REQUIRED
    help: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    check: Callable[[Any], str | None] | None = None  # returns a problem, or None
    #: added after grids were first enqueued: at its default it leaves specs (and hashes) as before
    neutral: bool = False
    #: what a good value looks like ("an integer >= 1"): every problem then reads
    #: "expected <this>, got <value>", whichever rule it broke
    expected: str | None = None
    #: converts the raw value in place of the kind's rules (Slurm's time strings to minutes):
    #: returns (value, problem or None)
    parse: Callable[[Any], tuple[Any, str | None]] | None = None

    def coerce(self, value: Any) -> tuple[Any, str | None]:
        """(value converted to this kind, problem or None)."""
        clean, problem = self._coerce(value)
        if problem and self.expected is not None:
            return clean, f"expected {self.expected}, got {value!r}"
        return clean, problem

    def _coerce(self, value: Any) -> tuple[Any, str | None]:
        if self.parse is not None:
            value, problem = self.parse(value)
            return value, problem or self._rules(value)
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
        return value, self._rules(value)

    def _rules(self, value: Any) -> str | None:
        """The rules every kind shares: choices, minimum, the further check."""
        if self.choices is not None and value not in self.choices:
            return f"{value!r} is not one of: {', '.join(map(str, self.choices))}"
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {self.minimum}, got {value!r}"
        if self.check is not None:
            return self.check(value) or None
        return None
