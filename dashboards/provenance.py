"""Provenance on the dashboard: what a job ran (run detail), and drift among pooled jobs
(Results page). Read through db.provenance, as ``gridlab show`` and ``gridlab results``
do, so both say the same."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Connection

from dashboards import ui
from db import provenance


def attempts_frame(jp: provenance.JobProvenance) -> pd.DataFrame:
    """One row per attempt: its code, environment and machine."""
    rows = []
    for a in jp.attempts:
        row = {"attempt": a.number, "outcome": a.outcome, "slurm job": a.slurm_job_id, "node": a.node}
        if a.code is not None:
            pkgs = a.environment.packages
            row.update({
                "code": a.code.label, "commit": a.code.git_commit, "dirty": a.code.git_dirty,
                "files sha256": a.code.files_hash[:12], "code from": ("snapshot " if a.pinned else "live tree ") + a.code_root,
                "python": a.environment.python, "torch": pkgs.get("torch"), "torch CUDA": pkgs.get("torch_cuda"),
                **{k: pkgs.get(k) for k in ("transformers", "peft", "datasets", "lm-eval", "llm-blender", "gridlab")},
                "host": a.machine.host, "CPUs": a.machine.cpu_count, "GPUs": a.machine.gpus,
                "driver": a.machine.gpu_driver, "CUDA (driver)": a.machine.cuda_driver,
            })
        else:
            row["code"] = "not recorded"
        rows.append(row)
    return pd.DataFrame(rows)


def render_job(conn: Connection, job_id: int) -> None:
    """The run detail page's provenance: grid file version, per-attempt code, environment
    and machine, and the diff, packages and grid file text behind them."""
    jp = provenance.job_provenance(conn, job_id)
    st.subheader("Provenance")
    v = jp.grid_version
    if v is None:
        st.caption("Grid file version: not recorded (enqueued before gridlab kept grid file versions).")
    else:
        st.caption(f"Grid file: version {v.number} of {v.of} (sha256 {v.text_hash[:12]}) read from "
                   f"{v.source_path or '?'} at {ui.when(v.created_at)} UTC.")
        with st.expander(f"Grid file text (version {v.number})"):
            st.code(provenance.grid_text(conn, job_id) or "", language="yaml")
    if not jp.attempts:
        st.caption("No attempt yet: provenance is recorded when a worker claims the job.")
        return
    ui.table(attempts_frame(jp), f"job_{job_id}_provenance")
    newest = jp.attempts[-1]
    if newest.code is not None and newest.code.git_dirty:
        with st.expander(f"Uncommitted changes attempt {newest.number} ran with (git diff)"):
            st.code(provenance.code_diff(conn, job_id, newest.number) or "(not stored)", language="diff")
    if newest.environment is not None:
        with st.expander(f"Installed packages (attempt {newest.number})"):
            st.code(provenance.freeze(conn, job_id, newest.number) or "", language="text")


def drift_of(conn: Connection, job_ids: Sequence[int]) -> provenance.Drift:
    return provenance.drift(conn, [int(i) for i in job_ids])


def warn(drift: provenance.Drift) -> None:
    line = drift.warning()
    if line:
        st.warning(f"Pooled results: {line}.")


def label_columns(values: pd.DataFrame, drift: provenance.Drift, id_column: str = "id") -> pd.DataFrame:
    """``values`` (one row per job) with a "code" and/or "env" column where they differ."""
    out = values.copy()
    if drift.code_drift:
        out["code"] = out[id_column].map(lambda i: drift.code_of.get(int(i), "not recorded"))
    if drift.environment_drift:
        out["env"] = out[id_column].map(lambda i: drift.environment_of.get(int(i), "not recorded"))
    return out


def pooled_labels(table: pd.DataFrame, values: pd.DataFrame, rows: list[str]) -> pd.DataFrame:
    """Per row of a pivot ``table`` (keyed by ``rows``), the code/env labels its jobs ran
    under (from ``label_columns`` of ``values``)."""
    out = table.copy()
    for column in ("code", "env"):
        if column not in values:
            continue
        if not rows:
            out[column] = ", ".join(sorted(set(values[column])))
            continue
        from dashboards import factors

        keyed = values.assign(**{r: values[r].map(factors.fmt) for r in rows})
        labels = keyed.groupby(rows, sort=False)[column].agg(lambda s: ", ".join(sorted(set(s))))
        out[column] = [labels.get(tuple(r) if len(rows) > 1 else r[0], "") for r in out[rows].itertuples(index=False)]
    return out
