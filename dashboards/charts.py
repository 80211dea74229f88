"""How the dashboard draws, so that a person can read every chart whatever it shows.

- A categorical axis gets a fixed height per category (a Vega-Lite ``step``): rows never
  share a fixed height, so 1, 4 or 30 levels all get readable rows and labels.
- A long category label is cut in the middle ("an-unusually…plot-07", at most
  LABEL_LIMIT pixels); the marks' tooltips carry the full text. Column labels turn to
  45 degrees when they would not fit side by side.
- Legends sit above the plot in as many columns as fit: a legend longer than the plot is
  never cut off below it, and a chart of fixed height grows by the legend's height.
- An interval is drawn only within what the quantity can be (db.stats.quantity_range) and
  only from db.stats.MIN_N values up; below that the chart prints "n=2" by the mean.
- A line with few points (a validation loss every N steps) shows them (see shows_points).
- A mean line over runs carries its 95% interval as a band in its colour, under the same
  rules as any interval (within the quantity's range, from MIN_N runs up).

Every page builds its charts with these functions; the tests check the specs they make.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import altair as alt
import pandas as pd

from db import stats

#: Pixels per category on a categorical axis.
STEP = 28
#: Pixels of a category or legend label before it is cut with "…".
LABEL_LIMIT = 180
#: The width, in pixels, of a chart's drawing in the main column at a 1400 px window.
PLOT_WIDTH = 900
#: About the width of a character of the theme's 12 px label font.
CHAR_PX = 7.0
LEGEND_ROW_PX = 20
LEGEND_TITLE_PX = 26
#: A line of logged points (not buckets) shows them if it has at most SHORT_LINE points,
#: or at most SPARSE_POINTS logged further apart than every step (a validation curve).
SHORT_LINE = 20
SPARSE_POINTS = 200
#: Ticks on a quantitative axis, about.
TICKS = 8


def field(name: str) -> str:
    """A column name as a Vega-Lite field: dots and brackets escaped, so a factor shown as
    ``factor.state`` is that column, not a nested ``state`` of a ``factor``."""
    return name.replace("\\", "\\\\").replace(".", "\\.").replace("[", "\\[").replace("]", "\\]")


def text_px(text: str, limit: float = LABEL_LIMIT) -> float:
    """About how many pixels ``text`` takes as a label, at most ``limit``."""
    return min(len(str(text)) * CHAR_PX, limit)


def legend_columns(labels: Sequence[str], width: float = PLOT_WIDTH) -> int:
    """How many legend entries fit side by side in ``width`` (symbol, label, gap)."""
    entry = max((text_px(label) for label in labels), default=0.0) + 34
    return max(1, min(len(labels), int(width // entry)))


def legend(title: str, labels: Sequence[str], **kw) -> alt.Legend:
    """A discrete legend above the plot, its entries in as many columns as fit."""
    return alt.Legend(title=title, orient="top", columns=legend_columns(labels), labelLimit=LABEL_LIMIT,
                      symbolLimit=0, **kw)


def legend_height(labels: Sequence[str]) -> int:
    """Pixels the legend of ``labels`` takes above the plot."""
    rows = math.ceil(len(labels) / legend_columns(labels)) if labels else 0
    return LEGEND_TITLE_PX + rows * LEGEND_ROW_PX if rows else 0


def short_label(chars: int) -> str:
    """A Vega expression that cuts a label longer than ``chars`` characters in the middle
    ("an-unusually…plot-07"): both ends, where names differ most, stay readable."""
    keep = max(3, (chars - 1) // 2)
    return (f"length(datum.label) > {chars} ? slice(datum.label, 0, {keep}) + '…' + "
            f"slice(datum.label, -{keep}) : datum.label")


def rows_axis(name: str, order: Sequence[str], title: str | None = None) -> alt.Y:
    """A categorical y axis in ``order``; with ``.properties(height=alt.Step(STEP))``
    every category gets STEP pixels. Long labels are cut in the middle (the marks'
    tooltips have them whole)."""
    return alt.Y(f"{field(name)}:N", sort=list(order), title=title if title is not None else name,
                 axis=alt.Axis(labelLimit=LABEL_LIMIT, labelOverlap=False,
                               labelExpr=short_label(int(LABEL_LIMIT // CHAR_PX))))


def column_px(order: Sequence[str], width: float = PLOT_WIDTH - LABEL_LIMIT) -> float:
    """Pixels a level label of a categorical x axis may take: its column, less a gap."""
    return width / max(1, len(order)) - 16


def columns_fit(order: Sequence[str], width: float = PLOT_WIDTH - LABEL_LIMIT) -> bool:
    """Whether the labels of ``order`` fit side by side, unturned (the longest may be cut
    to its column as long as a dozen characters stay)."""
    if not order:
        return True
    return min(max(text_px(v) for v in order), 12 * CHAR_PX) <= column_px(order, width)


def columns_axis(name: str, order: Sequence[str], title: str | None = None,
                 width: float = PLOT_WIDTH - LABEL_LIMIT) -> alt.X:
    """A categorical x axis in ``order``: labels level if they fit side by side (cut to
    their column), else at 45 degrees (cut at LABEL_LIMIT); the cut ones end in "…"."""
    level = columns_fit(order, width)
    limit = min(LABEL_LIMIT, column_px(order, width)) if level else LABEL_LIMIT
    axis = alt.Axis(labelAngle=0 if level else -45, labelLimit=limit, labelOverlap=False,
                    labelExpr=short_label(int(limit // CHAR_PX)))
    return alt.X(f"{field(name)}:N", sort=list(order), title=title if title is not None else name, axis=axis)


def cell_text_fits(texts: Sequence[str], columns: int, width: float = PLOT_WIDTH - LABEL_LIMIT) -> bool:
    """Whether every text fits inside a heatmap cell when ``columns`` share ``width``."""
    if not texts or columns <= 0:
        return True
    return max(len(str(t)) for t in texts) * CHAR_PX + 6 <= width / columns


def heatmap(cells: pd.DataFrame, x: str, y: str, x_order: Sequence[str], y_order: Sequence[str], *,
            colour: alt.Color, text: str | None, tooltip: list, title: str | None = None,
            text_colour=None) -> alt.LayerChart:
    """Cells of ``x`` by ``y`` (categorical), coloured by ``colour``, each labelled with
    its ``text`` column when the labels fit the cells (the tooltip always has them); a row
    is STEP pixels high, whatever the number of rows."""
    base = alt.Chart(cells).encode(x=columns_axis(x, x_order), y=rows_axis(y, y_order))
    chart = base.mark_rect(stroke="white").encode(color=colour, tooltip=tooltip)
    if text is not None and cell_text_fits(cells[text].astype(str).tolist(), len(x_order)):
        chart = chart + base.mark_text(fontSize=11, fontWeight="bold").encode(
            text=f"{text}:N", tooltip=tooltip, color=text_colour if text_colour is not None else alt.value("white"))
    chart = chart.properties(height=alt.Step(STEP))
    return chart.properties(title=title) if title else chart


def interval_frame(table: pd.DataFrame, value: str, n: str, quantity: str, *, half: str | None = None,
                   low: str | None = None, high: str | None = None) -> pd.DataFrame:
    """``table`` with "low" and "high" (value -/+ the ``half`` column, or the ``low`` and
    ``high`` columns; clipped to the quantity's range) where an interval should be drawn
    (n >= db.stats.MIN_N), NaN elsewhere, and "n_text" ("n=2") where it should not."""
    bounds = stats.quantity_range(quantity)
    mean = pd.to_numeric(table[value], errors="coerce")
    if half is not None:
        h = pd.to_numeric(table[half], errors="coerce")
        lows, highs = mean - h, mean + h
    else:
        lows, highs = pd.to_numeric(table[low], errors="coerce"), pd.to_numeric(table[high], errors="coerce")
    counts = pd.to_numeric(table[n], errors="coerce").fillna(0).astype(int)
    drawable = (counts >= stats.MIN_N) & lows.notna() & highs.notna()
    out = table.copy()
    out["low"] = [stats.clip(float(v), bounds) if d else math.nan for v, d in zip(lows, drawable)]
    out["high"] = [stats.clip(float(v), bounds) if d else math.nan for v, d in zip(highs, drawable)]
    out["n_text"] = [f"n={c}" if not d else "" for c, d in zip(counts, drawable)]
    return out


def value_scale(data: pd.DataFrame, value: str, quantity: str, *, bars: bool) -> alt.Scale:
    """The value axis of an interval chart: bars start at zero (or the quantity's floor);
    the domain never leaves the quantity's range, and leaves room on the right for the
    "n=2" labels where there are any."""
    low_bound, high_bound = stats.quantity_range(quantity)
    ends = pd.concat([pd.to_numeric(data[value], errors="coerce"), data["low"], data["high"]]).dropna()
    if ends.empty:
        return alt.Scale(zero=bars)
    lo, hi = float(ends.min()), float(ends.max())
    if bars:
        lo = min(lo, 0.0 if low_bound is None else max(0.0, low_bound))
    span = (hi - lo) or abs(hi) or 1.0
    hi += (0.12 if (data["n_text"] != "").any() else 0.03) * span
    if not bars:
        lo -= 0.04 * span
    lo, hi = stats.clip(lo, (low_bound, high_bound)), stats.clip(hi, (low_bound, high_bound))
    return alt.Scale(domain=[lo, hi], nice=False, zero=False)


def interval_chart(table: pd.DataFrame, category: str, value: str, *, n: str, quantity: str,
                   half: str | None = None, low: str | None = None, high: str | None = None,
                   title: str | None = None, bars: bool = True, order: Sequence[str] | None = None,
                   axis_title: str | None = None, domain: tuple[float, float] | None = None,
                   reference: float | None = None) -> alt.LayerChart:
    """One row per category: the mean (a bar from zero, or a point) and its 95% interval
    (``half`` a column of half-widths, or ``low`` and ``high`` columns), drawn within the
    quantity's range and only where n >= db.stats.MIN_N; "n=2" printed beside the mean
    where not. A row is STEP pixels high. ``domain`` fixes the value axis (a win rate's
    0 to 1); ``reference`` draws a dashed line at that value (a win rate's one half)."""
    data = interval_frame(table, value, n, quantity, half=half, low=low, high=high)
    order = list(data[category]) if order is None else list(order)
    scale = value_scale(data, value, quantity, bars=bars) if domain is None else alt.Scale(domain=list(domain))
    y = rows_axis(category, order)
    tooltip = [alt.Tooltip(f"{field(category)}:N", title=category), alt.Tooltip(f"{value}:Q", format=".4g"),
               alt.Tooltip("low:Q", format=".4g", title="95% low"), alt.Tooltip("high:Q", format=".4g", title="95% high"),
               alt.Tooltip(f"{n}:Q", title="n")]
    base = alt.Chart(data)
    x = alt.X(f"{value}:Q", title=axis_title or value, scale=scale, axis=alt.Axis(tickCount=TICKS))
    mark = base.mark_bar(opacity=0.8) if bars else base.mark_point(filled=True, size=70)
    layers = [mark.encode(y=y, x=x, tooltip=tooltip)]
    drawn = data[data["low"].notna()]
    if not drawn.empty:
        layers.append(alt.Chart(drawn).mark_rule(strokeWidth=2, color="#333").encode(
            y=alt.Y(f"{field(category)}:N", sort=order), x=alt.X("low:Q", scale=scale), x2="high:Q", tooltip=tooltip))
    bare = data[data["n_text"] != ""]
    if not bare.empty:
        layers.append(alt.Chart(bare).mark_text(align="left", dx=6, fontSize=11, color="#555").encode(
            y=alt.Y(f"{field(category)}:N", sort=order), x=alt.X(f"{value}:Q", scale=scale), text="n_text:N", tooltip=tooltip))
    if reference is not None:
        layers.insert(0, alt.Chart(pd.DataFrame({"reference": [reference]})).mark_rule(
            strokeDash=[4, 4], color="#999").encode(x=alt.X("reference:Q", scale=scale)))
    chart = alt.layer(*layers).properties(height=alt.Step(STEP))
    return chart.properties(title=title) if title else chart


def shows_points(data: pd.DataFrame, detail: str | None = None) -> bool:
    """Whether lines of ``data`` (step, value; points: logged points per row; runs: runs
    averaged per row) should show their points: only lines of logged points, not buckets,
    and either short (SHORT_LINE) or logged less often than every step (SPARSE_POINTS)."""
    if data.empty:
        return False
    if "points" in data:
        per_run = data["points"] / (data["runs"] if "runs" in data else 1)
        if (per_run > 1).any():
            return False  # buckets of a dense curve
    lines = [part for _, part in data.groupby(detail)] if detail else [data]
    longest = max(len(part) for part in lines)
    if longest <= SHORT_LINE:
        return True
    gaps = [part["step"].sort_values().diff().median() for part in lines if len(part) > 1]
    return longest <= SPARSE_POINTS and bool(gaps) and min(gaps) > 1


def line_chart(data: pd.DataFrame, *, y_title: str, colour: str, colour_title: str, colour_order: Sequence[str],
               detail: str = "line", title: str | None = None, log_y: bool = False, height: int = 320,
               tooltip: list | None = None, interactive: bool = True) -> alt.Chart | alt.LayerChart:
    """Lines of ``value`` over ``step``, one per ``detail``, coloured by ``colour`` (a legend
    above; the chart grows by its height so the plot keeps ``height``). Lines with at most
    SPARSE_POINTS points show them. Where ``data`` has "low" and "high" (a mean line's
    interval, NaN where it has too few runs), a band in the line's colour is drawn under it."""
    points = shows_points(data, detail)
    y_scale = alt.Scale(type="log") if log_y else alt.Scale(zero=False)
    labels = [str(v) for v in colour_order]
    color = alt.Color(f"{colour}:N", title=colour_title, sort=labels, legend=legend(colour_title, labels),
                      scale=alt.Scale(scheme="tableau10" if len(labels) <= 10 else "tableau20"))
    x = alt.X("step:Q", title="step", axis=alt.Axis(tickCount=TICKS))
    tooltip = tooltip or [f"{detail}:N", "step:Q", alt.Tooltip("value:Q", format=".4g")]
    lines = alt.Chart(data).mark_line(
        strokeWidth=1.5, clip=True, point=alt.OverlayMarkDef(filled=True, size=28) if points else False)
    lines = lines.encode(x=x, y=alt.Y("value:Q", title=y_title, scale=y_scale), color=color, detail=f"{detail}:N",
                         tooltip=tooltip)
    banded = data[data["low"].notna() & data["high"].notna()] if {"low", "high"} <= set(data.columns) else data.iloc[:0]
    if banded.empty:
        chart = lines.properties(title=title) if title else lines
    else:
        band = alt.Chart(banded).mark_area(opacity=0.2, clip=True).encode(
            x=x, y=alt.Y("low:Q", title=y_title, scale=y_scale), y2="high:Q", color=color, detail=f"{detail}:N",
            tooltip=tooltip)
        chart = alt.layer(band, lines, title=title) if title else alt.layer(band, lines)
    chart = chart.properties(height=height + legend_height(labels))
    return chart.interactive(bind_y=False) if interactive else chart


def curve_chart(data: pd.DataFrame, name: str, *, height: int = 220) -> alt.Chart:
    """One run's curve ``name`` over steps; a sparse curve shows its points."""
    points = shows_points(data)
    return (alt.Chart(data, title=name)
            .mark_line(point=alt.OverlayMarkDef(filled=True, size=28) if points else False)
            .encode(x=alt.X("step:Q", title="step", axis=alt.Axis(tickCount=TICKS)), y=alt.Y("value:Q", title=name, scale=alt.Scale(zero=False)),
                    tooltip=["step:Q", alt.Tooltip("value:Q", format=".4g"), "points:Q"])
            .properties(height=height))
