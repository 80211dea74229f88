"""A job's attention log: one row per layer and step, in the results database and on disk
beside the run, and its heatmap.

The metrics table holds one value per (job, step, name); per-head entropies would need one
metric name per layer and head. So each probe's rows, one per (step, phase, stack, layer)
with the head values as lists::

    {"step": 100, "phase": "train", "stack": "", "layer": 0, "entropy": [..per head..],
     "entropy_norm": [..], "nan": [..], "max_entropy": 4.1}

(``phase``: ``train`` for the training-batch probes, ``eval`` for the sft recipe's evaluation
probe, ``diverged`` for the batch on which the loss went non-finite) go from
:meth:`AttentionLog.add`, the one producer, to two sinks:

- the job's ``attention_rows`` in the database, through the job context
  (``ctx.log_attention``: buffered, fenced and flushed with the metrics, so they are stored
  before a checkpoint is sealed, and a later attempt's claim cuts them back to the step it
  resumes from, as it cuts the curve). The dashboard's run-detail page draws them;
- a JSON Lines file in the attempt's folder, copied into every checkpoint it seals (so a
  resumed attempt continues from exactly the rows up to its checkpoint's step, verified with
  it), and at the end of the job (finished or diverged) published to ``<run dir>/attention.jsonl``
  with the heatmap ``<run dir>/attention_entropy.png``: layer x head, normalised entropy at the
  last probed training step, as the paper draws it.

Both, and not the file as an export of the database: the run folder stays a whole record on
its own (copied off the cluster, read without the database), a build outside any job (the
testbed built on first use) has no database to write to, and the file is written at once
while the database's rows wait for the next flush; both are cut at the same checkpoint step.
The per-layer means also go to the metrics table (:func:`harness.training.diagnostics.row_metrics`),
and the job's summary ``attention_log_rows`` says the log exists.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from harness.training.diagnostics import LayerRow

FILE = "attention.jsonl"
HEATMAP = "attention_entropy.png"


#: Where rows go besides the file: ``ctx.log_attention(step, phase, rows)`` (one mapping per layer).
Store = Callable[[int, str, list[dict]], None]


class AttentionLog:
    def __init__(self, attempt_dir: Path, *, resume_from: Path | None = None, resume_step: int | None = None,
                 store: Store | None = None) -> None:
        self.store = store
        self.path = Path(attempt_dir) / FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows = 0
        kept = []
        if resume_from is not None and (Path(resume_from) / FILE).is_file():
            for line in (Path(resume_from) / FILE).read_text(encoding="utf-8").splitlines():
                if line.strip() and (resume_step is None or json.loads(line)["step"] <= resume_step):
                    kept.append(line)
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        self.rows = len(kept)

    def add(self, step: int, phase: str, rows: Iterable[LayerRow]) -> None:
        """One probe's rows: to the database (``store``) and to the file."""
        values = [row.to_dict() for row in rows]
        if not values:
            return
        if self.store is not None:
            self.store(int(step), phase, values)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps({"step": int(step), "phase": phase, **v}) + "\n" for v in values))
        self.rows += len(values)

    def copy_into(self, directory: Path) -> None:
        """Into a checkpoint directory before it is sealed."""
        shutil.copyfile(self.path, Path(directory) / FILE)

    def publish(self, run_dir: Path) -> Path:
        """The log and its heatmap into the run folder (atomic replace); returns the log's path."""
        target = Path(run_dir) / FILE
        tmp = target.with_name(f".{FILE}.{os.getpid()}.tmp")
        shutil.copyfile(self.path, tmp)
        os.replace(tmp, target)
        rows = read(target)
        if rows:
            draw_heatmap(rows, Path(run_dir) / HEATMAP)
        return target


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def latest(rows: Sequence[dict], phase: str = "train") -> tuple[int | None, list[dict]]:
    """(step, that step's rows) of the last step probed in `phase` (any phase if none)."""
    chosen = [r for r in rows if r["phase"] == phase] or list(rows)
    if not chosen:
        return None, []
    step = max(r["step"] for r in chosen)
    return step, sorted((r for r in chosen if r["step"] == step), key=lambda r: (r["stack"], r["layer"]))


def matrix(rows: Sequence[dict], key: str = "entropy_norm") -> list[list[float]]:
    """Layer x head values of one step's rows."""
    return [list(r[key]) for r in rows]


# --- the PNG ----------------------------------------------------------------------------

_CELL = 36
_MARGIN_LEFT, _MARGIN_TOP, _MARGIN_BOTTOM = 70, 34, 44


def draw_heatmap(rows: Sequence[dict], path: Path, *, title: str | None = None, phase: str = "train") -> Path:
    """Layer (rows, first layer on top) x head (columns) normalised attention entropy at the last
    probed step, 0 (one key) to 1 (uniform) on a dark-to-bright scale, each cell's value written
    in it; cells at or above 3/4 of the maximum (entropic overload) are outlined."""
    from PIL import Image, ImageDraw, ImageFont

    step, chosen = latest(rows, phase)
    values = matrix(chosen)
    labels = [f"{r['stack'] + '.' if r['stack'] else ''}L{r['layer']}" for r in chosen]
    heads = max((len(v) for v in values), default=0)
    width = _MARGIN_LEFT + heads * _CELL + 90
    height = _MARGIN_TOP + len(values) * _CELL + _MARGIN_BOTTOM
    image = Image.new("RGB", (max(width, 260), height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((6, 6), title or f"normalised attention entropy, step {step}", fill="black", font=font)
    for i, row in enumerate(values):
        y = _MARGIN_TOP + i * _CELL
        draw.text((6, y + _CELL // 2 - 5), labels[i], fill="black", font=font)
        for j, value in enumerate(row):
            x = _MARGIN_LEFT + j * _CELL
            draw.rectangle([x, y, x + _CELL - 2, y + _CELL - 2], fill=_colour(value),
                           outline="red" if value >= 0.75 else None, width=2)
            draw.text((x + 4, y + _CELL // 2 - 5), f"{value:.2f}", fill="white" if value < 0.6 else "black", font=font)
    for j in range(heads):
        draw.text((_MARGIN_LEFT + j * _CELL + 8, _MARGIN_TOP + len(values) * _CELL + 4), f"H{j}", fill="black", font=font)
    # the scale
    x0 = _MARGIN_LEFT + heads * _CELL + 16
    for k in range(100):
        y = _MARGIN_TOP + int((1 - k / 99) * max(len(values) * _CELL - 2, 1))
        draw.line([x0, y, x0 + 14, y], fill=_colour(k / 99))
    draw.text((x0 + 18, _MARGIN_TOP - 4), "1.0", fill="black", font=font)
    draw.text((x0 + 18, _MARGIN_TOP + len(values) * _CELL - 12), "0.0", fill="black", font=font)
    draw.text((6, height - 16), "red outline: >= 3/4 of the maximum (entropic overload)", fill="black", font=font)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


# A few stops of matplotlib's viridis, interpolated (no plotting library needed).
_VIRIDIS = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]


def _colour(value: float) -> tuple[int, int, int]:
    v = min(max(float(value), 0.0), 1.0) * (len(_VIRIDIS) - 1)
    i = min(int(v), len(_VIRIDIS) - 2)
    t = v - i
    a, b = _VIRIDIS[i], _VIRIDIS[i + 1]
    return tuple(round(a[c] + (b[c] - a[c]) * t) for c in range(3))
