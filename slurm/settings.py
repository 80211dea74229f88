"""Slurm settings for gridlab's workers: the grid file's ``slurm:`` block and CLI flags,
validated before anything is submitted.

A grid file may carry::

    slurm:
      partition: gpu
      gres: gpu:a100:1
      time: "2:00:00"          # minutes, or Slurm's HH:MM:SS / D-HH:MM:SS
      mem: 32G                 # K, M, G or T (Slurm's units); a bare number is MB
      cpus: 8                  # CPUs per worker
      account: my-lab
      qos: normal
      constraint: a100
      exclude: node[01-02]
      array_parallelism: 4     # at most this many workers at once
      signal_delay_s: 120      # USR2 this long before the time limit: time to checkpoint
      max_requeues: 3          # timeouts a worker may be requeued after
      setup: ["module load cuda/12.1"]
      extra: {reservation: my-res, mail-type: END}   # any other sbatch flag

Every problem is reported at once; an unknown key names the valid ones (after
submitit's ``_internal_update_parameters``). CLI flags override the file.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from db.errors import GridlabError

#: sbatch flags gridlab sets itself, which ``extra`` may not: flag -> what to use instead.
RESERVED_FLAGS = {
    "array": "--workers and array_parallelism",
    "signal": "signal_delay_s",
    "job-name": "job_name",
    "time": "time",
    "partition": "partition",
    "output": "nothing (gridlab writes logs to the launch folder)",
    "error": "nothing (gridlab writes logs to the launch folder)",
    "open-mode": "nothing (gridlab sets it)",
    "wckey": "nothing (gridlab sets it)",
}


class SlurmSettingsError(GridlabError):
    """The Slurm settings (grid file ``slurm:`` block or flags) have problems."""

    def __init__(self, problems: list[str], where: str = "slurm settings") -> None:
        self.problems = problems
        super().__init__(f"{where}: " + "; ".join(problems), "fix them and run the command again")


@dataclass(frozen=True)
class SlurmSettings:
    partition: str | None = None
    gres: str | None = None
    time: int = 60  # minutes
    mem: str | None = None  # Slurm syntax, e.g. "4G"
    cpus: int = 1
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    exclude: str | None = None
    array_parallelism: int | None = None
    signal_delay_s: int = 90
    max_requeues: int = 3
    job_name: str = "gridlab-worker"
    setup: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def merged(self, overrides: dict[str, Any]) -> "SlurmSettings":
        """These settings with ``overrides`` (already validated, None = not given) on top."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if "extra" in given:
            given["extra"] = {**self.extra, **given["extra"]}
        return replace(self, **given)

    def to_sbatch(self) -> dict[str, Any]:
        """Parameters for ``submitit.SlurmExecutor.update_parameters`` (its sbatch names)."""
        params: dict[str, Any] = {
            "time": self.time,
            "cpus_per_task": self.cpus,
            "job_name": self.job_name,
            "signal_delay_s": self.signal_delay_s,
        }
        for key in ("partition", "gres", "account", "qos", "constraint", "exclude", "mem"):
            value = getattr(self, key)
            if value is not None:
                params[key] = value
        if self.array_parallelism is not None:
            params["array_parallelism"] = self.array_parallelism
        if self.setup:
            params["setup"] = list(self.setup)
        if self.extra:
            params["additional_parameters"] = dict(self.extra)
        return params

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, (), {}, [])}


_MEM = re.compile(r"^\d+(?:\.\d+)?[KMGT]?B?$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_GRES = re.compile(r"^[\w.\-]+(:[\w.\-]+){0,2}(,[\w.\-]+(:[\w.\-]+){0,2})*$")


def parse_time(value: Any) -> tuple[int | None, str | None]:
    """Minutes (an int) or one of Slurm's forms (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM,
    D-HH:MM:SS) -> whole minutes, rounded up."""
    problem = f"expected minutes or [D-]HH:MM:SS, got {value!r}"
    if isinstance(value, bool):
        return None, problem
    if isinstance(value, int):
        return (value, None) if value >= 1 else (None, f"must be at least 1 minute, got {value}")
    if not isinstance(value, str) or not re.fullmatch(r"(\d+-)?\d+(:\d+){0,2}", value.strip()):
        return None, problem
    text = value.strip()
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:  # D-HH[:MM[:SS]]
        h, m, s = (parts + [0, 0])[:3]
        seconds = int(days) * 86400 + h * 3600 + m * 60 + s
    elif len(parts) == 3:
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    elif len(parts) == 2:  # MM:SS
        seconds = parts[0] * 60 + parts[1]
    else:
        seconds = parts[0] * 60
    minutes = -(-seconds // 60)
    return (minutes, None) if minutes >= 1 else (None, f"must be at least 1 minute, got {value!r}")


def validate(raw: Any) -> tuple[dict[str, Any], list[str]]:
    """Check a ``slurm:`` mapping (or flags); returns (clean values, problems)."""
    if raw is None:
        return {}, []
    if not isinstance(raw, dict):
        return {}, [f"expected a mapping of Slurm settings ({', '.join(SlurmSettings.keys())}), got {type(raw).__name__}"]
    problems: list[str] = []
    clean: dict[str, Any] = {}
    valid = SlurmSettings.keys()
    for key, value in raw.items():
        if key not in valid:
            problems.append(f"{key}: unknown key (valid keys: {', '.join(valid)})")
            continue
        if value is None:
            continue
        problem = None
        if key == "time":
            value, problem = parse_time(value)
        elif key in ("cpus", "array_parallelism", "max_requeues", "signal_delay_s"):
            low = 0 if key in ("max_requeues", "signal_delay_s") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                problem = f"expected an integer >= {low}, got {value!r}"
        elif key == "mem":
            value = str(value).strip()
            if not _MEM.match(value):
                problem = f"expected a size like 4G, 500M or 16000 (MB), got {value!r}"
            else:
                value = value.upper().removesuffix("B")
        elif key == "setup":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                problem = "expected a list of shell lines, e.g. ['module load cuda']"
            else:
                value = tuple(value)
        elif key == "extra":
            if not isinstance(value, dict):
                problem = "expected a mapping of sbatch flags to values, e.g. {reservation: my-res}"
            else:
                cleaned: dict[str, str] = {}
                for flag, v in value.items():
                    name = str(flag).lstrip("-").replace("_", "-")
                    if name in RESERVED_FLAGS:
                        problem = f"{flag!r} is set by gridlab; use {RESERVED_FLAGS[name]}"
                    elif not _NAME.match(name):
                        problem = f"{flag!r} is not an sbatch flag name"
                    elif isinstance(v, (dict, list)):
                        problem = f"{flag}: expected a plain value, got {type(v).__name__}"
                    else:
                        cleaned[name] = True if v is True else str(v)
                value = cleaned
        else:  # plain string settings
            if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip():
                problem = f"expected a non-empty string, got {value!r}"
            else:
                value = str(value).strip()
                if key == "gres" and not _GRES.match(value):
                    problem = f"expected NAME[:TYPE]:COUNT like gpu:a100:1, got {value!r}"
        if problem:
            problems.append(f"{key}: {problem}")
        else:
            clean[key] = value
    return clean, problems


def from_grid(raw: Any, cli: dict[str, Any] | None = None, *, where: str = "slurm settings") -> SlurmSettings:
    """The settings of a grid file's ``slurm:`` block with CLI overrides on top.
    Raises :class:`SlurmSettingsError` listing every problem."""
    base, problems = validate(raw)
    over, cli_problems = validate({k: v for k, v in (cli or {}).items() if v is not None})
    problems += [f"flag {p}" for p in cli_problems]
    if problems:
        raise SlurmSettingsError(problems, where)
    return SlurmSettings().merged(base).merged(over)
