"""The report's figures as PNG files, drawn with Pillow (no plotting library is installed):
curves per arm with a band over seeds (the mean and its 95% t interval at each step, from
:func:`db.stats.mean_interval`; a line alone where fewer than two seeds logged the step), one panel
per group of cells, one colour per arm; and a heatmap of normalised attention entropy per layer.

Each function takes plain data (no database, no ORM rows), so another source (the attention table
to come) can feed the heatmap unchanged.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from db import stats

#: tab10, the colours most plotting libraries start with.
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
PANEL_W, PANEL_H, MARGIN = 430, 270, 46
MAX_POINTS = 300
#: One curve: (steps, values), one per seed.
Curve = tuple[Sequence[int], Sequence[float | None]]


def band(curves: Sequence[Curve], bounds: tuple[float | None, float | None] | None = None,
         ) -> tuple[list[int], list[float], list[float], list[float]]:
    """Steps, mean, low and high over the curves at each step logged (low/high NaN where fewer
    than two curves have a finite value there; within ``bounds``, the quantity's range); at most
    MAX_POINTS steps, evenly picked."""
    at: dict[int, list[float]] = {}
    for steps, values in curves:
        for s, v in zip(steps, values):
            if v is not None and math.isfinite(v):
                at.setdefault(int(s), []).append(float(v))
    steps = sorted(at)
    if len(steps) > MAX_POINTS:
        stride = len(steps) / MAX_POINTS
        steps = sorted({steps[int(i * stride)] for i in range(MAX_POINTS)} | {steps[-1]})
    means, lows, highs = [], [], []
    for s in steps:
        i = stats.mean_interval(at[s], bounds)
        means.append(i.mean)
        lows.append(i.low)
        highs.append(i.high)
    return steps, means, lows, highs


def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


def _save(image, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


def _ticks(low: float, high: float, n: int = 4) -> list[float]:
    if not high > low:
        return [low]
    return [low + (high - low) * k / n for k in range(n + 1)]


def curves_figure(panels: Mapping[str, Mapping[str, Sequence[Curve]]], path: Path, *, metric: str) -> Path:
    """``panels``: panel title -> series label -> its curves (one per seed). One panel per
    group, every series its colour in every panel, the legend at the bottom."""
    from PIL import Image, ImageDraw

    labels: list[str] = []
    for series in panels.values():
        labels.extend(s for s in series if s not in labels)
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(labels)}
    columns = max(1, min(3, len(panels)))
    rows = max(1, math.ceil(len(panels) / columns))
    legend_rows = math.ceil(len(labels) / 3)
    width, height = columns * PANEL_W, rows * PANEL_H + 30 + 16 * legend_rows + 10
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image, "RGBA")
    font = _font()
    draw.text((8, 8), f"{metric}: mean over seeds, band = 95% t interval (2+ seeds)", fill="black", font=font)
    for p, (title, series) in enumerate(panels.items()):
        x0, y0 = (p % columns) * PANEL_W, 30 + (p // columns) * PANEL_H
        _panel(draw, font, (x0, y0), title, {s: band(c, stats.quantity_range(metric)) for s, c in series.items()},
               colour, metric)
    ly = 30 + rows * PANEL_H + 4
    for i, s in enumerate(labels):
        x, y = 10 + (i % 3) * (width // 3), ly + 16 * (i // 3)
        draw.rectangle([x, y + 3, x + 14, y + 9], fill=colour[s])
        draw.text((x + 20, y), s[:60], fill="black", font=font)
    return _save(image, path)


def _panel(draw, font, origin, title, bands, colour, metric) -> None:
    x0, y0 = origin
    lines = textwrap.wrap(title, 68)[:2] or [""]
    left, top, right, bottom = x0 + MARGIN + 14, y0 + 6 + 12 * len(lines), x0 + PANEL_W - 12, y0 + PANEL_H - 30
    finite = [v for _, (st, m, lo, hi) in bands.items() for v in (*m, *lo, *hi) if math.isfinite(v)]
    steps = [s for _, (st, *_r) in bands.items() for s in st]
    for i, line in enumerate(lines):
        draw.text((x0 + 8, y0 + 2 + 12 * i), line, fill="black", font=font)
    draw.rectangle([left, top, right, bottom], outline=(160, 160, 160))
    if not finite or not steps:
        draw.text((left + 10, top + 10), f"no {metric} logged", fill="gray", font=font)
        return
    vlo, vhi = min(finite), max(finite)
    if vhi == vlo:
        vlo, vhi = vlo - 0.5 * (abs(vlo) or 1), vhi + 0.5 * (abs(vhi) or 1)
    slo, shi = min(steps), max(steps)
    span = (shi - slo) or 1

    def xy(s, v):
        return (left + (s - slo) / span * (right - left), bottom - (v - vlo) / (vhi - vlo) * (bottom - top))

    for v in _ticks(vlo, vhi):
        _, y = xy(slo, v)
        draw.line([left - 4, y, left, y], fill="black")
        draw.text((x0 + 2, y - 5), f"{v:.3g}", fill="black", font=font)
    for s in _ticks(slo, shi):
        x, _ = xy(s, vlo)
        draw.line([x, bottom, x, bottom + 4], fill="black")
        draw.text((x - 10, bottom + 6), f"{s:.0f}", fill="black", font=font)
    draw.text((right - 30, bottom + 16), "step", fill="black", font=font)
    for label, (st, means, lows, highs) in bands.items():
        r, g, b = colour[label]
        upper = [xy(s, h) for s, h in zip(st, highs) if math.isfinite(h)]
        lower = [xy(s, lo) for s, lo in zip(st, lows) if math.isfinite(lo)]
        if len(upper) >= 2 and len(lower) >= 2:
            draw.polygon(upper + lower[::-1], fill=(r, g, b, 60))
        line = [xy(s, m) for s, m in zip(st, means) if math.isfinite(m)]
        if len(line) >= 2:
            draw.line(line, fill=(r, g, b, 255), width=2)
        elif line:
            x, y = line[0]
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(r, g, b, 255))


# A few stops of viridis, interpolated (as harness.training.attention_log draws its heatmap).
_VIRIDIS = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]


def _viridis(value: float) -> tuple[int, int, int]:
    if not math.isfinite(value):
        return (220, 220, 220)
    v = min(1.0, max(0.0, value)) * (len(_VIRIDIS) - 1)
    i = min(int(v), len(_VIRIDIS) - 2)
    f = v - i
    return tuple(int(a + (b - a) * f) for a, b in zip(_VIRIDIS[i], _VIRIDIS[i + 1]))


def heatmap_figure(rows: Sequence[str], columns: Sequence[str], values: Sequence[Sequence[float]], path: Path, *,
                   title: str) -> Path:
    """A rows x columns heatmap of values from 0 to 1 (normalised entropy), each cell's value
    written in it, cells at or above 3/4 outlined in red (entropic overload)."""
    from PIL import Image, ImageDraw

    font = _font()
    cell_w, cell_h = 56, 24
    left = 12 + 6 * max((len(r) for r in rows), default=4)
    width = left + cell_w * len(columns) + 90
    height = 40 + cell_h * len(rows) + 40
    image = Image.new("RGB", (max(width, 320), height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 8), title, fill="black", font=font)
    for j, c in enumerate(columns):
        draw.text((left + j * cell_w + 4, 24), c[:9], fill="black", font=font)
    for i, (label, row) in enumerate(zip(rows, values)):
        y = 40 + i * cell_h
        draw.text((6, y + 6), label, fill="black", font=font)
        for j, v in enumerate(row):
            x = left + j * cell_w
            draw.rectangle([x, y, x + cell_w - 2, y + cell_h - 2], fill=_viridis(v),
                           outline="red" if math.isfinite(v) and v >= 0.75 else None, width=2)
            draw.text((x + 6, y + 6), "" if not math.isfinite(v) else f"{v:.3f}",
                      fill="white" if not math.isfinite(v) or v < 0.6 else "black", font=font)
    x0 = left + cell_w * len(columns) + 16
    span = max(len(rows) * cell_h - 2, 1)
    for k in range(span + 1):
        draw.line([x0, 40 + k, x0 + 14, 40 + k], fill=_viridis(1 - k / span))
    draw.text((x0 + 18, 36), "1.0", fill="black", font=font)
    draw.text((x0 + 18, 40 + len(rows) * cell_h - 12), "0.0", fill="black", font=font)
    draw.text((6, height - 16), "red outline: >= 3/4 (entropic overload)", fill="black", font=font)
    return _save(image, path)
