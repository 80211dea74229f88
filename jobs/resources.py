"""What a cell needs to run (GPUs, CPUs, memory, time, where), and its resource class.

A grid states resources for all its cells, per axis value, and for its judge jobs::

    resources:
      gpus: 1            # the default for every cell
      cpus: 4
      mem: 16G           # Slurm's units: K, M, G, T
      time: 120          # minutes
      partition: gpu     # optional, like constraint
      when:              # in order; every entry whose match fits a cell overrides what it names
        - match: {model: EleutherAI/pythia-410m, strategy: full}
          gpus: 2
          mem: 64G
          time: 480
      judge: {gpus: 0, cpus: 2, mem: 8G}

Two settings say how a class's GPUs are used. A cell whose experiment runs as ranks (sft) runs
as one ``torch.distributed`` rank per GPU of its class (``gpus: 2``: 2 ranks; the one place is
:func:`harness.experiments.ranks_for`). ``cells_per_gpu: K`` instead shares the one GPU of a
worker of the class between up to K cells at once (:class:`jobs.pool.SharedDevice`; on Slurm
each worker of the class runs its cells as child processes, :mod:`slurm.worker`), each started
while the GPU's free memory fits ``cell_mem`` (default: the class's largest finished peak).

Every job carries the canonical name of what it needs, its *resource class*
(``gpus=2,cpus=4,mem=64G,time=480,partition=gpu``; ``default`` when the grid states nothing).
A worker launched for a class claims only jobs of that class (one atomic claim still:
:func:`jobs.queries.claim`); a worker launched without a class (``gridlab work``) claims any.
``gridlab launch`` submits one Slurm array per class that has pending work, with the class's
sbatch settings. Resources are not part of a cell's spec or hash: they say where a cell runs,
not what it computes.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, fields, replace
from typing import Any

from jobs.params import Param

DEFAULT = "default"
_MEM = re.compile(r"^[1-9][0-9]{0,6}[KMGT]?$")
_WORD = re.compile(r"^[A-Za-z0-9_.\-\[\],&|]{1,60}$")


def _whole(low: int, high: int, help: str) -> Param:
    return Param(int, None, help, minimum=low, check=lambda v: None if v <= high else "too many",
                 expected=f"a whole number from {low} to {high}")


def _mem(value: Any) -> tuple[Any, str | None]:
    text = str(value)
    return text, None if not isinstance(value, bool) and _MEM.match(text) else "no amount"


def _word(what: str) -> Param:
    return Param(str, None, f"Slurm {what}", check=lambda v: None if _WORD.match(v) else "not a name",
                 expected=f"a Slurm {what} name")


#: What a class may set, each a :class:`jobs.params.Param` (as experiments' and Slurm's settings are).
PARAMS: dict[str, Param] = {
    "gpus": _whole(0, 64, "GPUs per worker (sbatch --gres=gpu:N); a cell that runs as ranks gets one rank per GPU"),
    "cpus": _whole(1, 1024, "CPUs per worker"),
    "mem": Param(str, None, "memory per worker", parse=_mem, expected="an amount like 16G or 512M (K, M, G or T)"),
    "time": _whole(1, 525_600, "minutes per worker start"),
    "partition": _word("partition"),
    "constraint": _word("constraint"),
    "cells_per_gpu": _whole(1, 64, "cells a worker of the class runs at once on its one GPU, while its free "
                            "memory fits another"),
    "cell_mem": Param(str, None, "with cells_per_gpu: the GPU memory one cell needs (default: the largest peak "
                      "of the class's finished cells)", parse=_mem, expected="an amount like 6G or 512M (K, M, G or T)"),
}
KEYS = tuple(PARAMS)


@dataclass(frozen=True)
class Resources:
    gpus: int | None = None
    cpus: int | None = None
    mem: str | None = None
    time: int | None = None  # minutes
    partition: str | None = None
    constraint: str | None = None
    cells_per_gpu: int | None = None
    cell_mem: str | None = None

    def name(self) -> str:
        """The canonical resource class: the keys that are set, in a fixed order."""
        parts = [f"{f.name}={getattr(self, f.name)}" for f in fields(self) if getattr(self, f.name) is not None]
        return ",".join(parts) or DEFAULT

    def over(self, base: "Resources") -> "Resources":
        """These settings on top of ``base`` (unset ones fall through)."""
        return replace(base, **{f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None})

    def sbatch(self) -> dict[str, Any]:
        """The Slurm settings (slurm.settings keys) this class asks for."""
        out: dict[str, Any] = {}
        if self.gpus:
            out["gres"] = f"gpu:{self.gpus}"
        for key in ("cpus", "mem", "time", "partition", "constraint"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def cells(self) -> int:
        """How many cells a worker of this class runs at once (1: one at a time)."""
        return self.cells_per_gpu or 1

    def cell_mib(self) -> float | None:
        """``cell_mem`` in MiB (None: not stated)."""
        if self.cell_mem is None:
            return None
        unit = self.cell_mem[-1] if self.cell_mem[-1] in "KMGT" else "M"
        return int(self.cell_mem.rstrip("KMGT")) * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}[unit]

    def problem(self) -> str | None:
        """What is wrong with these settings together (a class a cell ends up with), or None."""
        if self.cells_per_gpu and self.cells_per_gpu > 1 and (self.gpus or 0) > 1:
            return (f"cells_per_gpu: {self.cells_per_gpu} shares one GPU between cells, but gpus is {self.gpus}; "
                    "give such cells gpus: 1 (or leave gpus out)")
        if self.cell_mem is not None and self.cells() == 1:
            return f"cell_mem: {self.cell_mem} is what one of several cells sharing a GPU needs; set cells_per_gpu too"
        return None


@functools.lru_cache(maxsize=1024)
def from_name(name: str) -> Resources:
    """The inverse of :meth:`Resources.name`."""
    if name == DEFAULT:
        return Resources()
    values: dict[str, Any] = {}
    for part in name.split(","):
        key, _, value = part.partition("=")
        values[key] = int(value) if PARAMS[key].kind is int else value
    return Resources(**values)


def workers_for(jobs: int, resource_class: str | None) -> int:
    """Workers that ``jobs`` of ``resource_class`` keep busy: one per job, or one per K jobs
    for a class whose workers run K cells at once (``cells_per_gpu``)."""
    cells = from_name(resource_class).cells() if resource_class else 1
    return -(-jobs // cells)


def devices_of(resource_class: str, *, visible: int) -> int:
    """GPUs an attempt of ``resource_class`` is given: the class's, or (a class that names
    none) the ``visible`` ones of the worker that runs it."""
    gpus = from_name(resource_class).gpus
    return visible if gpus is None else gpus


def check(raw: Any, where: str, problems: list[str]) -> Resources:
    """A mapping of :data:`PARAMS` keys, each checked by its Param; problems appended."""
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping of {', '.join(KEYS)}, got {type(raw).__name__}")
        return Resources()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        loc = f"{where}.{key}"
        if key not in PARAMS:
            problems.append(f"{loc}: unknown key (valid keys: {', '.join(KEYS)})")
            continue
        clean, problem = PARAMS[key].coerce(value)
        if problem:
            problems.append(f"{loc}: {problem}")
        else:
            values[key] = clean
    return Resources(**values)


@dataclass(frozen=True)
class Rule:
    match: dict[str, Any]
    resources: Resources


@dataclass(frozen=True)
class Plan:
    """A grid's resources: the default, the per-value rules in order, and the judges'."""

    default: Resources = Resources()
    rules: tuple[Rule, ...] = ()
    judge: Resources | None = None

    def for_cell(self, factors: dict[str, Any], spec: dict[str, Any]) -> str:
        got = self.default
        for rule in self.rules:
            if all(_same(factors.get(k, spec.get(k)), v) for k, v in rule.match.items()):
                got = rule.resources.over(got)
        return got.name()

    def for_judge(self) -> str:
        return (self.judge.over(self.default) if self.judge is not None else self.default).name()


def plan(raw: Any, problems: list[str], *, factor_values: dict[str, list[Any]] | None = None) -> Plan:
    """The grid file's ``resources:`` block, checked (every problem appended, with its place)."""
    if raw is None:
        return Plan()
    if not isinstance(raw, dict):
        problems.append(f"resources: expected a mapping, got {type(raw).__name__}")
        return Plan()
    base = {k: v for k, v in raw.items() if k not in ("when", "judge")}
    default = check(base, "resources", problems)
    rules: list[Rule] = []
    when = raw.get("when", [])
    if not isinstance(when, list):
        problems.append("resources.when: expected a list of {match: {...}, <resources>}")
        when = []
    for i, entry in enumerate(when):
        loc = f"resources.when[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("match"), dict) or not entry["match"]:
            problems.append(f"{loc}: expected a mapping with match: {{FACTOR: VALUE, ...}} and the resources to set")
            continue
        match = entry["match"]
        for key, value in match.items():
            if factor_values is not None and key in factor_values and not any(_same(value, v) for v in factor_values[key]):
                shown = ", ".join(map(repr, factor_values[key][:10]))
                problems.append(f"{loc}.match.{key}: {value!r} is not a value of this grid ({shown})")
        rules.append(Rule(dict(match), check({k: v for k, v in entry.items() if k != "match"}, loc, problems)))
    judge = check(raw["judge"], "resources.judge", problems) if "judge" in raw else None
    return Plan(default, tuple(rules), judge)


def _same(a: Any, b: Any) -> bool:
    return a == b or str(a) == str(b)
