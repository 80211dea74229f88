"""A job's attention entropy on the run-detail page: the layer x head heatmap of normalised
entropy at the last probed step, as Jha and Reagen (2024) draw it, and one layer's heads over
the steps. Read from the database's attention rows (:mod:`db.views`, written by the job through
its context), never from the run folder.

Normalised entropy is a head's attention entropy over its maximum, the log of the number of
keys a query sees: 1 is uniform attention, 0 a single key. A head at 3/4 of its maximum or more
is "overloaded" (the paper's entropic overload).
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st
from sqlalchemy.engine import Connection

from dashboards import charts, queries

#: A head at this share of its maximum entropy or more is overloaded.
OVERLOAD = 0.75
PHASE_NAMES = {"train": "training batch", "eval": "evaluation batch", "diverged": "batch that diverged"}


def _colour() -> alt.Color:
    return alt.Color("entropy_norm:Q", title="normalised entropy", scale=alt.Scale(scheme="viridis", domain=[0, 1]),
                     legend=alt.Legend(orient="top", gradientLength=240))


def _text_colour():
    """Dark text on the bright end of viridis, white on the dark end."""
    return alt.condition(alt.datum.entropy_norm < 0.6, alt.value("white"), alt.value("black"))


def _tooltip(*first: str) -> list:
    return [*(f"{c}:N" for c in first), alt.Tooltip("entropy_norm:Q", title="normalised entropy", format=".3f"),
            alt.Tooltip("entropy:Q", title="entropy (nats)", format=".3f"), alt.Tooltip("nan:Q", title="NaN values")]


def _labelled(cells: pd.DataFrame) -> pd.DataFrame:
    return cells.assign(label=cells["entropy_norm"].map(lambda v: "nan" if pd.isna(v) else f"{v:.2f}"))


def layer_head_title(step: int, phase: str) -> str:
    return f"normalised attention entropy, step {step} ({PHASE_NAMES.get(phase, phase)})"


def layer_head_chart(cells: pd.DataFrame, step: int, phase: str) -> alt.LayerChart:
    """Layer (rows, first on top) x head (columns), coloured 0 to 1 on viridis, each cell's
    value written in it where it fits."""
    cells = _labelled(cells)
    layers = list(dict.fromkeys(cells["layer"]))
    heads = list(dict.fromkeys(cells["head"]))
    return charts.heatmap(cells, "head", "layer", heads, layers, colour=_colour(), text="label",
                          tooltip=_tooltip("layer", "head"), title=layer_head_title(step, phase),
                          text_colour=_text_colour())


def layer_steps_title(layer: str, phase: str) -> str:
    return f"normalised attention entropy of {layer} over the steps ({PHASE_NAMES.get(phase, phase)})"


def layer_steps_chart(cells: pd.DataFrame, layer: str, phase: str) -> alt.LayerChart:
    """One layer: head (rows) x probed step (columns, in step order)."""
    cells = _labelled(cells).assign(step=cells["step"].astype(str))
    steps = list(dict.fromkeys(cells["step"]))
    heads = list(dict.fromkeys(cells["head"]))
    return charts.heatmap(cells, "step", "head", steps, heads, colour=_colour(), text="label",
                          tooltip=_tooltip("step", "head"), title=layer_steps_title(layer, phase),
                          text_colour=_text_colour())


def overloaded_share(cells: pd.DataFrame) -> float:
    """The share of the heads at OVERLOAD of their maximum entropy or more."""
    values = cells["entropy_norm"].dropna()
    return float((values >= OVERLOAD).mean()) if len(values) else float("nan")


def _layer_key(label: str) -> tuple[str, int]:
    """``enc.L3`` -> ("enc", 3); ``L0`` -> ("", 0)."""
    stack, _, name = label.rpartition(".")
    return stack, int(name[1:])


def render_job(conn: Connection, job_id: int) -> None:
    """The section of the run-detail page: the heatmap at the last probed step of a phase
    (training batches first), then one chosen layer over the steps."""
    st.subheader("Attention entropy")
    phases = queries.attention_phases(conn, job_id)
    if not phases:
        st.caption("No attention probes stored for this job.")
        return
    phase = next(iter(phases))
    if len(phases) > 1:
        phase = st.selectbox("Probed on", list(phases), format_func=lambda p: PHASE_NAMES.get(p, p),
                             key=f"attention-phase-{job_id}")
    cells = queries.attention_last_step(conn, job_id, phase=phase)
    step = phases[phase]
    st.altair_chart(layer_head_chart(cells, step, phase), width="stretch")
    share = overloaded_share(cells)
    nans = int(cells["nan"].sum())
    st.caption(f"Step {step}: {len(cells)} heads in {cells['layer'].nunique()} layers; "
               f"{share:.0%} at 3/4 of their maximum entropy or more (entropic overload); "
               f"{nans:,} NaN values in the attention matrices.")
    layers = list(dict.fromkeys(cells["layer"]))
    layer = st.selectbox("Layer over the steps", layers, key=f"attention-layer-{job_id}-{phase}")
    stack, number = _layer_key(layer)
    over = queries.attention_layer(conn, job_id, number, stack=stack, phase=phase)
    st.altair_chart(layer_steps_chart(over, layer, phase), width="stretch")
