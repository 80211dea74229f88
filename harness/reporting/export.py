"""``gridlab export``: a grid's results as tidy tables for pandas, one file per table.

- ``jobs``: one row per job: job_id, experiment, state, spec_hash, attempts, started_at,
  finished_at, then one column per factor (named as the factor; ``factor_<name>`` where that
  would clash; lists and dicts as JSON text);
- ``summaries``: job_id, name, value (one row per final figure);
- ``curves``: job_id, name, step, value (one row per logged point);
- ``generations``: job_id, attempt, prompt_set, question_id, category, turn, new_tokens,
  latency_s, prompt, output;
- ``judgments``: judge_job_id, arm_a, arm_b, judge, prompt_set, question_id, turn, winner, logit.

Join them on ``job_id`` (``arm_a``/``arm_b`` for verdicts). CSV or Parquet (pyarrow).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from db.errors import GridlabError
from jobs import reports

FORMATS = ("csv", "parquet")
JOB_COLUMNS = ("job_id", "experiment", "state", "spec_hash", "attempts", "started_at", "finished_at")
TABLES = ("jobs", "summaries", "curves", "generations", "judgments")


def _value(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict, tuple)) else value


def frames(results: reports.GridResults) -> dict[str, Any]:
    """The grid's tidy tables as pandas DataFrames, by name (see the module's docstring)."""
    import pandas as pd

    factor_names: list[str] = []
    for j in results.jobs:
        factor_names.extend(k for k in j.factors if k not in factor_names)
    column = {f: (f"factor_{f}" if f in JOB_COLUMNS else f) for f in factor_names}
    jobs = pd.DataFrame(
        [{"job_id": j.id, "experiment": j.experiment, "state": j.state, "spec_hash": j.spec_hash,
          "attempts": j.attempts, "started_at": j.started_at, "finished_at": j.finished_at,
          **{column[f]: _value(j.factors.get(f)) for f in factor_names}} for j in results.jobs],
        columns=[*JOB_COLUMNS, *column.values()])
    for f in column.values():  # one type per column (Parquet needs it): mixed ones as text
        kinds = {type(v) for v in jobs[f] if v is not None and v == v}
        if len(kinds) > 1 and not kinds <= {int, float}:
            jobs[f] = [None if v is None else str(v) for v in jobs[f]]
    return {
        "jobs": jobs,
        "summaries": pd.DataFrame([(r.id, r.name, r.value) for r in results.summaries],
                                  columns=["job_id", "name", "value"]),
        "curves": pd.DataFrame([(r.job_id, r.name, r.step, r.value) for r in results.curves],
                               columns=["job_id", "name", "step", "value"]),
        "generations": pd.DataFrame(
            [(g.job_id, g.attempt, g.prompt_set, g.question_id, g.category, g.turn, g.new_tokens, g.latency_s,
              g.prompt, g.output) for g in results.generations],
            columns=["job_id", "attempt", "prompt_set", "question_id", "category", "turn", "new_tokens", "latency_s",
                     "prompt", "output"]),
        "judgments": pd.DataFrame(
            [(v.job_id, v.arm_a, v.arm_b, v.judge, v.prompt_set, v.question_id, v.turn, v.winner, v.logit)
             for v in results.judgments],
            columns=["judge_job_id", "arm_a", "arm_b", "judge", "prompt_set", "question_id", "turn", "winner",
                     "logit"]),
    }


def write(engine, grid: str, out: Path, fmt: str = "csv") -> dict[str, tuple[Path, int]]:
    """Write each table of ``grid`` to ``out/<table>.<fmt>``: table -> (path, rows)."""
    if fmt not in FORMATS:
        raise GridlabError(f"unknown export format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise GridlabError("--format parquet needs pyarrow, which is not installed",
                               "pip install pyarrow, or export --format csv") from exc
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, frame in frames(reports.grid_results(engine, grid)).items():
        path = out / f"{name}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        written[name] = (path, len(frame))
    return written
