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

Each setting is a :class:`jobs.params.Param`, the mechanism experiments' settings use too.
Every problem is reported at once; an unknown key names the valid ones (after
submitit's ``_internal_update_parameters``). CLI flags override the file.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from db.errors import GridlabError
from jobs.params import Param
from slurm import durations

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


_MEM = re.compile(r"^\d+(?:\.\d+)?[KMGT]?B?$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_GRES = re.compile(r"^[\w.\-]+(:[\w.\-]+){0,2}(,[\w.\-]+(:[\w.\-]+){0,2})*$")


def parse_time(value: Any) -> tuple[int | None, str | None]:
    """Minutes (an int) or one of Slurm's forms (:mod:`slurm.durations`) -> whole minutes,
    rounded up."""
    problem = f"expected minutes or [D-]HH:MM:SS, got {value!r}"
    if isinstance(value, bool):
        return None, problem
    if isinstance(value, int):
        return (value, None) if value >= 1 else (None, f"must be at least 1 minute, got {value}")
    if not isinstance(value, str):
        return None, problem
    try:
        seconds = durations.seconds(value)
    except ValueError:
        return None, problem
    if seconds is None:  # UNLIMITED and the like: workers need a limit to checkpoint before
        return None, problem
    minutes = -(-seconds // 60)
    return (minutes, None) if minutes >= 1 else (None, f"must be at least 1 minute, got {value!r}")


def _text(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip():
        return value, f"expected a non-empty string, got {value!r}"
    return str(value).strip(), None


def _gres(value: str) -> str | None:
    return None if _GRES.match(value) else f"expected NAME[:TYPE]:COUNT like gpu:a100:1, got {value!r}"


def _mem(value: Any) -> tuple[Any, str | None]:
    value = str(value).strip()
    if not _MEM.match(value):
        return value, f"expected a size like 4G, 500M or 16000 (MB), got {value!r}"
    return value.upper().removesuffix("B"), None


def _setup(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        return value, "expected a list of shell lines, e.g. ['module load cuda']"
    return tuple(value), None


def _extra(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, dict):
        return value, "expected a mapping of sbatch flags to values, e.g. {reservation: my-res}"
    problem = None
    cleaned: dict[str, Any] = {}
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
    return cleaned, problem


def _count(default: int | None, low: int, help: str) -> Param:
    return Param(int, default, help, minimum=low, expected=f"an integer >= {low}")


#: Every setting of a ``slurm:`` block (and its flags), in the order errors list them.
PARAMS: dict[str, Param] = {
    "partition": Param(str, None, "the partition workers run in", parse=_text),
    "gres": Param(str, None, "generic resources per worker, NAME[:TYPE]:COUNT", parse=_text, check=_gres),
    "time": Param(int, 60, "minutes per start of a worker", parse=parse_time),
    "mem": Param(str, None, "memory per worker, Slurm's syntax (4G)", parse=_mem),
    "cpus": _count(1, 1, "CPUs per worker"),
    "account": Param(str, None, "the account charged", parse=_text),
    "qos": Param(str, None, "quality of service", parse=_text),
    "constraint": Param(str, None, "node features workers need", parse=_text),
    "exclude": Param(str, None, "nodes workers avoid", parse=_text),
    "array_parallelism": _count(None, 1, "workers at once, at most"),
    "signal_delay_s": _count(90, 0, "USR2 this long before the time limit"),
    "max_requeues": _count(3, 0, "time-limit requeues per worker"),
    "job_name": Param(str, "gridlab-worker", "the workers' Slurm job name", parse=_text),
    "setup": Param(tuple, (), "shell lines run before a worker starts", parse=_setup),
    "extra": Param(dict, {}, "any other sbatch flag: value", parse=_extra),
}


def _default(name: str) -> Any:
    return PARAMS[name].default


#: Slurm checks signal times on a timer and may send ``--signal`` up to this long before it is
#: due (sbatch(1)); slurm/cluster/NOTES.md has it measured.
SIGNAL_EARLY_S = 60


@dataclass(frozen=True)
class SlurmSettings:
    partition: str | None = _default("partition")
    gres: str | None = _default("gres")
    time: int = _default("time")  # minutes
    mem: str | None = _default("mem")  # Slurm syntax, e.g. "4G"
    cpus: int = _default("cpus")
    account: str | None = _default("account")
    qos: str | None = _default("qos")
    constraint: str | None = _default("constraint")
    exclude: str | None = _default("exclude")
    array_parallelism: int | None = _default("array_parallelism")
    signal_delay_s: int = _default("signal_delay_s")
    max_requeues: int = _default("max_requeues")
    job_name: str = _default("job_name")
    setup: tuple[str, ...] = _default("setup")
    extra: dict[str, str] = field(default_factory=lambda: dict(_default("extra")))

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(PARAMS)

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

    def timing_problem(self) -> str | None:
        """Why the time limit leaves the checkpoint signal no room, or None. USR2 is due
        ``signal_delay_s`` before the limit and may come :data:`SIGNAL_EARLY_S` sooner still:
        at the worker's start, before it can catch it, it kills the worker (seen here with
        ``--time 1``)."""
        if self.signal_delay_s + SIGNAL_EARLY_S < self.time * 60:
            return None
        fixes = [f"a time of at least {(self.signal_delay_s + SIGNAL_EARLY_S) // 60 + 1} min"]
        if self.time * 60 > SIGNAL_EARLY_S:
            fixes.append(f"a signal_delay_s under {self.time * 60 - SIGNAL_EARLY_S}")
        return (f"signal_delay_s {self.signal_delay_s} with time {self.time} min: Slurm may send USR2 up to "
                f"{SIGNAL_EARLY_S} s before it is due, that is as the worker starts, and kill it before it can "
                f"checkpoint; give {' or '.join(fixes)}")

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, (), {}, [])}


def validate(raw: Any) -> tuple[dict[str, Any], list[str]]:
    """Check a ``slurm:`` mapping (or flags); returns (clean values, problems)."""
    if raw is None:
        return {}, []
    if not isinstance(raw, dict):
        return {}, [f"expected a mapping of Slurm settings ({', '.join(PARAMS)}), got {type(raw).__name__}"]
    problems: list[str] = []
    clean: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in PARAMS:
            problems.append(f"{key}: unknown key (valid keys: {', '.join(PARAMS)})")
            continue
        if value is None:
            continue
        value, problem = PARAMS[key].coerce(value)
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
    settings = SlurmSettings().merged(base).merged(over)
    if (problem := settings.timing_problem()) is not None:
        raise SlurmSettingsError([problem], where)
    return settings
