"""Grid factors as table columns: expand the per-job factor dicts, find the factors that
vary, filter jobs by factor values, and name a job by what sets it apart.

Factor values are free-form JSON (strings, numbers, booleans, lists). They are kept as
they are where they are scalars, so 1e-3 sorts before 3e-3; lists and dicts become
their JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

#: Job-table columns a factor may not shadow; a factor of one of these names is shown
#: as "factor.<name>".
RESERVED = {"id", "job_id", "grid", "experiment", "state", "attempts", "created_at", "started_at",
            "finished_at", "factors", "value", "mean", "ci95", "n", "step"}


def column(name: str) -> str:
    return f"factor.{name}" if name in RESERVED else name


def _scalar(value: Any) -> Any:
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, sort_keys=True)
    return value


def expand(table: pd.DataFrame, source: str = "factors") -> tuple[pd.DataFrame, list[str]]:
    """``table`` with one column per factor (from its ``source`` dicts, which it drops),
    and the factor column names in first-seen order."""
    names: list[str] = []
    for f in table[source] if source in table else []:
        for k in f or {}:
            if k not in names:
                names.append(k)
    out = table.drop(columns=[source]) if source in table else table.copy()
    dicts = list(table[source]) if source in table else []
    for name in names:
        out[column(name)] = [_scalar((d or {}).get(name)) for d in dicts]
    return out, [column(n) for n in names]


def varying(table: pd.DataFrame, names: Iterable[str]) -> list[str]:
    """The factors that take more than one value in ``table``."""
    return [n for n in names if table[n].astype(str).nunique(dropna=False) > 1]


def ordered(values: Iterable[Any]) -> list[Any]:
    """Distinct values in a natural order: numbers by value, the rest by text."""
    distinct = list(dict.fromkeys(v for v in values if v is not None and not (isinstance(v, float) and pd.isna(v))))
    try:
        return sorted(distinct)
    except TypeError:
        return sorted(distinct, key=str)


def fmt(value: Any) -> str:
    """A factor value as the pages print it (1e-3, not 0.001000; booleans as the grid file
    and `gridlab status` write them: true, false)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def filter_jobs(table: pd.DataFrame, chosen: Mapping[str, Iterable[Any]]) -> pd.DataFrame:
    """Rows whose factor ``name`` is one of ``chosen[name]``, for every name given.
    Values are compared as printed, so "0.001" picks 1e-3."""
    mask = pd.Series(True, index=table.index)
    for name, values in chosen.items():
        wanted = {fmt(v) for v in values}
        mask &= table[name].map(fmt).isin(wanted)
    return table[mask]


def labels(table: pd.DataFrame, names: Iterable[str], id_column: str = "id") -> pd.Series:
    """Per row, "name=value, ..." over the given factors it has, else "job <id>"."""
    names = list(names)

    def one(row) -> str:
        parts = [f"{n.removeprefix('factor.')}={fmt(row[n])}" for n in names if fmt(row[n]) != ""]
        return ", ".join(parts) if parts else f"job {row[id_column]}"

    if table.empty:
        return pd.Series([], dtype=str, index=table.index)
    return table.apply(one, axis=1)
