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

Every job carries the canonical name of what it needs, its *resource class*
(``gpus=2,cpus=4,mem=64G,time=480,partition=gpu``; ``default`` when the grid states nothing).
A worker launched for a class claims only jobs of that class (one atomic claim still:
:func:`jobs.queries.claim`); a worker launched without a class (``gridlab work``) claims any.
``gridlab launch`` submits one Slurm array per class that has pending work, with the class's
sbatch settings. Resources are not part of a cell's spec or hash: they say where a cell runs,
not what it computes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any

DEFAULT = "default"
KEYS = ("gpus", "cpus", "mem", "time", "partition", "constraint")
_MEM = re.compile(r"^[1-9][0-9]{0,6}[KMGT]?$")
_WORD = re.compile(r"^[A-Za-z0-9_.\-\[\],&|]{1,60}$")


@dataclass(frozen=True)
class Resources:
    gpus: int | None = None
    cpus: int | None = None
    mem: str | None = None
    time: int | None = None  # minutes
    partition: str | None = None
    constraint: str | None = None

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


def from_name(name: str) -> Resources:
    """The inverse of :meth:`Resources.name`."""
    if name == DEFAULT:
        return Resources()
    values: dict[str, Any] = {}
    for part in name.split(","):
        key, _, value = part.partition("=")
        values[key] = int(value) if key in ("gpus", "cpus", "time") else value
    return Resources(**values)


def devices_of(resource_class: str, *, visible: int) -> int:
    """GPUs an attempt of ``resource_class`` is given: the class's, or (a class that names
    none) the ``visible`` ones of the worker that runs it."""
    gpus = from_name(resource_class).gpus
    return visible if gpus is None else gpus


def check(raw: Any, where: str, problems: list[str]) -> Resources:
    """A ``{gpus, cpus, mem, time, partition, constraint}`` mapping, checked; problems appended."""
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping of {', '.join(KEYS)}, got {type(raw).__name__}")
        return Resources()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        loc = f"{where}.{key}"
        if key not in KEYS:
            problems.append(f"{loc}: unknown key (valid keys: {', '.join(KEYS)})")
        elif key in ("gpus", "cpus", "time"):
            low, high = (0 if key == "gpus" else 1), {"gpus": 64, "cpus": 1024, "time": 525_600}[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                problems.append(f"{loc}: expected a whole number from {low} to {high}, got {value!r}")
            else:
                values[key] = value
        elif key == "mem":
            text = str(value)
            if isinstance(value, bool) or not _MEM.match(text):
                problems.append(f"{loc}: expected an amount like 16G or 512M (K, M, G or T), got {value!r}")
            else:
                values[key] = text
        elif not isinstance(value, str) or not _WORD.match(value):
            problems.append(f"{loc}: expected a Slurm {key} name, got {value!r}")
        else:
            values[key] = value
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
