"""A grid's cells as a report sees them: the norm factor, its baseline, the groups the other
factors make, the arms within a group, and seeds.

Generic over factors: the norm factor is ``norm``; its baseline levels are LayerNorm's
(``layernorm``, or ``keep``: the model's own). Factors that vary across the grid but take one value
in every baseline cell (``dyt_calibrate``, ``heal``) say which variant of a swap a cell is: they are
part of the arm ("dyt, dyt_calibrate=true"). The remaining factors but ``seed`` (dataset, strategy,
peft, model...) form the group a cell is compared within, and cells of a group are paired across
arms by seed. A grid without a norm factor still has groups (its cells, seeds pooled) for its
curves and figures.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from db import stats

NORM = "norm"
BASELINES = ("layernorm", "keep")
SEED = "seed"
#: Factors a judge job carries that are not the cell's.
JUDGE_FACTORS = ("compare",)


def text(value: Any) -> str:
    """A factor value as the grid file writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


@dataclass(frozen=True)
class Cell:
    """One job of the grid that is not a judge: its factors, state and final figures."""

    id: int
    factors: dict[str, Any]
    state: str
    summaries: dict[str, float | None] = field(default_factory=dict)

    @property
    def seed(self) -> Any:
        return self.factors.get(SEED)


def is_judge(experiment: str, factors: dict[str, Any]) -> bool:
    return experiment == "judge" or any(k in factors for k in JUDGE_FACTORS)


def cells(jobs: Iterable, summaries: Iterable) -> list[Cell]:
    """The grid's non-judge jobs (rows of ``views.grid_jobs``) with their summaries."""
    figures: dict[int, dict[str, float | None]] = {}
    for row in summaries:
        figures.setdefault(row.id, {})[row.name] = row.value
    return [Cell(j.id, dict(j.factors), j.state, figures.get(j.id, {}))
            for j in jobs if not is_judge(j.experiment, j.factors)]


@dataclass(frozen=True)
class Layout:
    """How the cells divide: ``group_factors`` (vary, and name the group), ``arm_factors`` (the
    norm and its variants), the baseline arm's label (None: no norm factor or no baseline)."""

    group_factors: tuple[str, ...]
    arm_factors: tuple[str, ...]
    baseline_values: dict[str, Any]
    has_norm: bool

    def group(self, cell: Cell) -> str:
        """The cell's group as ``factor=value ...`` ("all" where no factor groups)."""
        return " ".join(f"{f}={text(cell.factors.get(f, ''))}" for f in self.group_factors) or "all"

    def arm(self, cell: Cell) -> str:
        """The cell's arm: its norm, and the variant factors where they differ from the baseline's."""
        if not self.has_norm:
            return "cell"
        label = text(cell.factors.get(NORM, ""))
        extra = [f"{f}={text(cell.factors.get(f, ''))}" for f in self.arm_factors
                 if f != NORM and stats.level_key(cell.factors.get(f)) != stats.level_key(self.baseline_values.get(f))]
        return label + (f" ({', '.join(extra)})" if extra else "")

    def is_baseline(self, cell: Cell) -> bool:
        return self.has_norm and self.arm(cell) == self.baseline_label

    @property
    def baseline_label(self) -> str | None:
        if not self.has_norm or NORM not in self.baseline_values:
            return None
        return text(self.baseline_values[NORM])

    def series(self, cell: Cell) -> str:
        """The cell's line in a figure: its arm within its group (seeds pooled)."""
        if self.has_norm:
            return self.arm(cell)
        return self.group(cell)


def layout(found: Sequence[Cell]) -> Layout:
    """The layout of ``found`` (see the module's docstring)."""
    names: list[str] = []
    for c in found:
        names.extend(k for k in c.factors if k not in names)
    varying = [n for n in names if len({stats.level_key(c.factors.get(n)) for c in found}) > 1]
    baseline = [c for c in found if c.factors.get(NORM) in BASELINES]
    if NORM not in names or not baseline:
        return Layout(tuple(n for n in varying if n not in (SEED, NORM)), (NORM,) if NORM in names else (),
                      {}, NORM in names)
    # The baseline level the grid uses (layernorm before keep, if both are there).
    level = next(b for b in BASELINES if any(c.factors.get(NORM) == b for c in baseline))
    baseline = [c for c in baseline if c.factors.get(NORM) == level]
    variants = [n for n in varying if n not in (SEED, NORM)
                and len({stats.level_key(c.factors.get(n)) for c in baseline}) == 1]
    values = {NORM: level, **{n: baseline[0].factors.get(n) for n in variants}}
    groups = tuple(n for n in varying if n not in (SEED, NORM, *variants))
    return Layout(groups, (NORM, *variants), values, True)
