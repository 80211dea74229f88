"""Slurm's durations: the one parser for the time strings gridlab reads and writes.

``sbatch --time`` takes "minutes", "minutes:seconds", "hours:minutes:seconds",
"days-hours", "days-hours:minutes" and "days-hours:minutes:seconds"; ``squeue``'s ``%L``
and ``scontrol``'s ``RunTime``/``TimeLimit`` print the same forms (``1-02:03:04``,
``2:03:04``, ``3:04``), or a word where there is no figure (``UNLIMITED``, ``NOT_SET``,
``INVALID``, ``Partition_Limit``). A bare number is minutes and ``1-02`` is one day and two
hours, as Slurm means them.
"""

from __future__ import annotations

import re

#: What Slurm prints where a job has no time figure (no limit, or none known).
NO_FIGURE = frozenset({"UNLIMITED", "INFINITE", "NOT_SET", "INVALID", "PARTITION_LIMIT"})

_FORM = re.compile(r"(?:(?P<days>\d+)-)?(?P<clock>\d+(?::\d+){0,2})")


def seconds(text: str) -> int | None:
    """A Slurm duration -> seconds; None for the words of :data:`NO_FIGURE`. Raises
    ValueError for anything else."""
    value = text.strip()
    if value.upper() in NO_FIGURE:
        return None
    m = _FORM.fullmatch(value)
    if not m:
        raise ValueError(f"not a Slurm duration: {text!r}")
    parts = [int(p) for p in m.group("clock").split(":")]
    if m.group("days") is not None:  # days-hours[:minutes[:seconds]]
        hours, minutes, secs = (parts + [0, 0])[:3]
        return int(m.group("days")) * 86400 + hours * 3600 + minutes * 60 + secs
    if len(parts) == 3:  # hours:minutes:seconds
        return parts[0] * 3600 + parts[1] * 60 + parts[2]
    if len(parts) == 2:  # minutes:seconds
        return parts[0] * 60 + parts[1]
    return parts[0] * 60  # minutes


def seconds_or_none(text: str | None) -> int | None:
    """:func:`seconds`, with None for a missing or malformed value (what ``scontrol`` said
    may be anything)."""
    if not text:
        return None
    try:
        return seconds(text)
    except ValueError:
        return None
