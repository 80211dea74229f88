"""Checks on what a user types and writes, shared by the grid file and the command line.

A value that the database could not store, or store only by another name, is refused
before anything is written, in one line: numbers past 64 bits (SQLite and PostgreSQL
integers), NaN and infinity (JSON has neither; a lease of NaN seconds never ends), NUL
bytes (PostgreSQL text cannot hold them), lone surrogates (undecodable bytes in an
argument: no UTF-8 encoding exists) and names longer than their column.
"""

from __future__ import annotations

import math
from typing import Any

import click

from db.errors import GridlabError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None."""
    if "\x00" in value:
        return "holds a NUL byte"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone surrogate (no UTF-8 form; undecodable bytes?)"
    return None


def check_text(value: str, where: str) -> str:
    problem = text_problem(value)
    if problem:
        raise GridlabError(f"{where} {_shown(value)} {problem}", "give plain UTF-8 text")
    return value


def number_problem(value: Any) -> str | None:
    """Why a number cannot be stored, or None (bools and non-numbers pass)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return f"{_short(value)} does not fit in 64 bits"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    return None


def check_number(text: str, where: str) -> None:
    """A command-line value that reads as a number must be one the database can hold."""
    value: Any
    try:
        value = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            return
        if text.strip().lower().lstrip("+-") not in ("nan", "inf", "infinity") and math.isfinite(value):
            return
    problem = number_problem(value)
    if problem:
        raise GridlabError(f"{where}: {problem}", "give a number within 64 bits (and not NaN or infinity)")


def _short(value: int) -> str:
    text = str(value)
    return text if len(text) <= 30 else f"{text[:12]}...{text[-6:]} ({len(text)} digits)"


def _shown(value: str) -> str:
    shown = value.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    return repr(shown if len(shown) <= 60 else shown[:57] + "...")


class Text(click.ParamType):
    """A string option or argument that the database can store."""

    name = "text"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        problem = text_problem(value)
        if problem:
            self.fail(f"{_shown(value)} {problem}", param, ctx)
        return value


class Seconds(click.FloatRange):
    """A finite number of seconds, at least ``minimum``: NaN passes FloatRange's bounds."""

    def __init__(self, minimum: float, maximum: float = 366 * 86400.0) -> None:
        super().__init__(min=minimum, max=maximum)

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return super().convert(number, param, ctx)


TEXT = Text()
#: Job ids are positive and fit the database's integers (a larger one cannot exist).
JOB_ID = click.IntRange(1, INT64_MAX)
