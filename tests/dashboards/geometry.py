"""What makes a chart legible, as checks: on what the browser drew (every category label
drawn and none overlapping another, legends and labels inside the drawing, text marks
apart, a quantitative axis within the range of its quantity), and on the Vega-Lite spec a
page emits (a height per category, intervals within the quantity's range).

Each function returns a list of problems (empty: the chart passes), so a test can report
every chart that fails at once.
"""

from __future__ import annotations

import itertools
import json
import math
import re

from db import stats

#: Pixels two boxes may share before they count as overlapping (anti-aliased edges).
TOLERANCE = 1.0
#: The fewest pixels a category may get on a categorical axis of the spec.
MIN_STEP = 20

_DISCRETE = re.compile(r"discrete scale with (\d+) values?")
_LINEAR = re.compile(r"scale with values from (\S+) to (\S+?)\.?$")


def _number(text: str) -> float:
    return float(text.replace("\u2212", "-").replace(",", ""))


def _overlap(a: dict, b: dict) -> bool:
    return (min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"]) > TOLERANCE
            and min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"]) > TOLERANCE)


def _inside(inner: dict, outer: dict) -> bool:
    return (inner["x"] >= outer["x"] - TOLERANCE and inner["y"] >= outer["y"] - TOLERANCE
            and inner["x"] + inner["w"] <= outer["x"] + outer["w"] + TOLERANCE
            and inner["y"] + inner["h"] <= outer["y"] + outer["h"] + TOLERANCE)


def _labels_apart(labels: list[dict]) -> list[str]:
    """Level labels may not overlap; turned labels (all at one angle) must be at least
    about a line apart, measured across their direction."""
    if not labels:
        return []
    angle = labels[0]["angle"] % 360
    if angle == 0:
        return [f"labels {a['text']!r} and {b['text']!r} overlap" for a, b in itertools.combinations(labels, 2)
                if _overlap(a, b)]
    across = abs(math.sin(math.radians(angle)))
    ends = sorted(labels, key=lambda t: t["x"] + t["w"])
    return [f"turned labels {a['text']!r} and {b['text']!r} are {gap:.1f} px apart across their direction"
            for a, b in zip(ends, ends[1:])
            if (gap := ((b["x"] + b["w"]) - (a["x"] + a["w"])) * across) < 0.8 * min(a["font"], b["font"])]


def drawn_problems(chart: dict) -> list[str]:
    """Problems with a chart as the browser drew it (an entry of browser.Browser.open's
    "charts")."""
    name = (chart.get("titles") or ["(untitled chart)"])[0]
    if chart.get("renderer") != "svg":
        return [f"{name}: drawn on a {chart.get('renderer')}, its labels cannot be checked"]
    problems: list[str] = []
    drawing = chart["drawing"]
    for axis in chart["axes"]:
        aria = axis["aria"]
        if not aria:
            continue  # the grid lines' axis
        discrete = _DISCRETE.search(aria)
        if discrete and len(axis["labels"]) != int(discrete.group(1)):
            problems.append(f"{name}: {aria.split(' for ')[0]} draws {len(axis['labels'])} of its "
                            f"{discrete.group(1)} category labels")
        problems += [f"{name}: {axis['title']} axis: {p}" for p in _labels_apart(axis["labels"])]
        linear = _LINEAR.search(aria)
        if linear:
            low, high = stats.quantity_range(axis["title"])
            lo, hi = _number(linear.group(1)), _number(linear.group(2))
            if (low is not None and lo < low) or (high is not None and hi > high):
                problems.append(f"{name}: the {axis['title']} axis runs from {lo:g} to {hi:g}, "
                                f"outside what {axis['title']} can be ({low}, {high})")
        problems += [f"{name}: axis label {t['text']!r} is outside the drawing" for t in axis["labels"]
                     if not _inside(t, drawing)]
    for legend in chart["legends"]:
        count = re.search(r"with (\d+) values?", legend["aria"])
        if count and legend["aria"].startswith("Symbol") and len(legend["labels"]) != int(count.group(1)):
            problems.append(f"{name}: its legend draws {len(legend['labels'])} of {count.group(1)} entries")
        problems += [f"{name}: legend entry {t['text']!r} is cut off (outside the drawing)"
                     for t in legend["labels"] if not _inside(t, drawing)]
    problems += [f"{name}: text marks {a['text']!r} and {b['text']!r} overlap"
                 for a, b in itertools.combinations(chart["marks"], 2) if _overlap(a, b)]
    if not _inside(drawing, chart["box"]):
        problems.append(f"{name}: its drawing {drawing} does not fit its element {chart['box']}")
    return problems


# --- the Vega-Lite spec --------------------------------------------------------------------


def _layers(spec: dict) -> list[dict]:
    if "layer" in spec:
        return [leaf for layer in spec["layer"] for leaf in _layers({**layer, "data": layer.get("data", spec.get("data"))})]
    return [spec]


def spec_problems(spec: dict, datasets: dict[str, list[dict]]) -> list[str]:
    """Problems with a chart's Vega-Lite spec (``datasets``: its data by name, as rows):
    a categorical y axis without a height per category (a step of at least MIN_STEP px,
    or a fixed height of MIN_STEP px per category); a categorical x axis of labels that are
    neither cut nor turned; an interval (x to x2) outside the quantity's range."""
    title = spec.get("title")
    name = title if isinstance(title, str) else (title or {}).get("text", "(untitled chart)")
    problems: list[str] = []
    for leaf in _layers(spec):
        enc = leaf.get("encoding", {})
        rows = datasets.get((leaf.get("data") or {}).get("name", ""), [])
        for channel in ("x", "y"):
            e = enc.get(channel, {})
            if e.get("type") not in ("nominal", "ordinal") or "field" not in e:
                continue
            # "factor\.state" is the column "factor.state"; an unescaped dot reads a nested field
            nested = len(re.split(r"(?<!\\)\.", e["field"])) > 1
            column = re.sub(r"\\(.)", r"\1", e["field"])
            if rows and (nested or column not in rows[0]):
                problems.append(f"{name}: its {channel} field {e['field']!r} is no column of its data")
            categories = len({r.get(column) for r in rows})
            if channel == "y":
                height = spec.get("height")
                per = height.get("step", 0) if isinstance(height, dict) else (height or 0) / max(1, categories)
                if per < MIN_STEP:
                    problems.append(f"{name}: {categories} categories of {e['field']} get {per:.0f} px each "
                                    f"(height {json.dumps(height)}), under {MIN_STEP}")
            elif not (e.get("axis") or {}).get("labelLimit"):
                problems.append(f"{name}: the {e['field']} axis does not cut long labels (no labelLimit)")
        if "x2" in enc and "x" in enc:
            axis_title = next((l.get("encoding", {}).get("x", {}).get("title") for l in _layers(spec)
                               if l.get("encoding", {}).get("x", {}).get("title")), enc["x"].get("field"))
            low, high = stats.quantity_range(str(axis_title))
            for r in rows:
                n = next((r[k] for k in ("n", "jobs") if isinstance(r.get(k), (int, float))), None)
                if n is not None and n < stats.MIN_N:
                    problems.append(f"{name}: draws an interval from n={n:g} (fewer than {stats.MIN_N})")
                for field in (enc["x"]["field"], enc["x2"]["field"]):
                    v = r.get(field)
                    if v is None or (isinstance(v, float) and math.isnan(v)):
                        continue
                    if (low is not None and v < low) or (high is not None and v > high):
                        problems.append(f"{name}: interval end {field}={v:g} is outside what {axis_title} can be")
    return problems
