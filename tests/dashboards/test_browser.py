"""Every dashboard page as a person sees it: served by `gridlab dashboard`, opened in
headless Chromium at 1400 px against a database with many categories (tests/dashboards/
many.py: 30 models, 4 norms, grids of 2 jobs per variant and of one job), and checked:
no page shows a Streamlit exception, and every chart passes geometry.drawn_problems
(every category label drawn, none overlapping, legends inside the drawing, text marks
apart, no quantity's axis outside its range). The charts' Vega-Lite specs on the same
pages pass geometry.spec_problems (a height per category, intervals within range, none
from fewer than three jobs). The chart gallery (gallery.py) shows the page functions'
charts at 1, 4 and 30 categories, and a control drawn the old way that the check must
catch.

Screenshots of every page land in tests/.screenshots/browser/ (ignored by git): open them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.dashboards import browser, geometry, many
from tests.support import cli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "tests" / ".screenshots" / "browser"
GALLERY = Path(__file__).parent / "gallery.py"
CONTROL = "control: the old fixed-height bars"  # gallery.CONTROL (the page is a script: not imported here)

#: (grid, page path, page title, the fewest charts it draws there)
VISITS = [
    ("wide", "", "Overview", 1), ("wide", "curves", "Curves", 2), ("wide", "results", "Results", 0),
    ("wide", "effects", "Factor effects", 3), ("wide", "run_compare", "Compare runs", 2), ("wide", "timing", "Timing", 2),
    ("wide", "failures", "Failures", 0), ("wide", "run_detail", "Run detail", 4),
    ("four", "", "Overview", 1), ("four", "timing", "Timing", 3), ("four", "effects", "Factor effects", 4),
    ("four", "comparisons", "Comparisons", 1),
    ("pair", "timing", "Timing", 3), ("pair", "effects", "Factor effects", 3),
    ("single", "", "Overview", 0), ("single", "timing", "Timing", 2),
]


@pytest.fixture(scope="module")
def many_db(tmp_path_factory) -> many.Many:
    """The many-categories database, filled once for this module."""
    return many.fill(f"sqlite:///{tmp_path_factory.mktemp('many') / 'gridlab.db'}")


def _shot_name(grid: str, page: str) -> str:
    return f"{grid}-{page or 'overview'}.png"


def test_every_page_in_chromium_shows_no_exception_and_legible_charts(many_db, tmp_path):
    chromium = browser.require_chromium()
    proc, base = browser.serve(many_db.url, tmp_path, cli.environment())
    problems: list[str] = []
    shots = []
    try:
        with browser.Browser(chromium) as b:
            current = None
            for grid, page, title, fewest in VISITS:
                if grid != current:  # a link that names the grid; then the sidebar, as a person goes
                    seen, current = b.open(f"{base}/{page}?grid={grid}", title=title), grid
                else:
                    seen = b.follow(f"/{page}", title=title)
                where = f"{grid}/{page or 'overview'}"
                shots.append(b.screenshot(SHOTS / _shot_name(grid, page), seen["height"]))
                problems += [f"{where}: Streamlit exception: {e.splitlines()[0]}" for e in seen["exceptions"]]
                if seen["sidebar_select"] != grid:
                    problems.append(f"{where}: the sidebar shows grid {seen['sidebar_select']!r}")
                if title not in seen["text"]:
                    problems.append(f"{where}: the page does not show its title {title!r}")
                if len(seen["charts"]) < fewest:
                    problems.append(f"{where}: {len(seen['charts'])} charts drawn, expected at least {fewest}")
                problems += [f"{where}: {p}" for chart in seen["charts"] for p in geometry.drawn_problems(chart)]
    finally:
        browser.stop(proc)
    print("screenshots:", *shots, sep="\n  ")
    assert not problems, "\n".join(problems)


def test_the_chart_gallery_at_1_4_and_30_categories_is_legible_and_the_old_chart_is_not(tmp_path):
    chromium = browser.require_chromium()
    proc, base = browser.serve(None, tmp_path, cli.environment(), script=GALLERY)
    try:
        with browser.Browser(chromium) as b:
            seen = b.open(f"{base}/")
            shot = b.screenshot(SHOTS / "gallery.png", seen["height"])
    finally:
        browser.stop(proc)
    print("screenshot:", shot)
    assert not seen["exceptions"], seen["exceptions"]
    by_title = {(c.get("titles") or ["?"])[0]: geometry.drawn_problems(c) for c in seen["charts"]}
    control = by_title.pop(CONTROL)
    assert len(by_title) == 13, sorted(by_title)  # 7 heatmaps, 3 bar charts, 3 effect panels
    assert {t: p for t, p in by_title.items() if p} == {}
    # The check fails what the issue saw: labels dropped and overlapping, an axis below zero.
    assert any("draws 2 of its 30 category labels" in p or "overlap" in p for p in control), control
    assert any("outside what tokens_per_s can be" in p for p in control), control


def _datasets(element) -> dict[str, list[dict]]:
    import pyarrow as pa

    return {d.name: pa.ipc.open_stream(d.data.data).read_all().to_pylist() for d in element.proto.datasets}


def test_every_chart_spec_on_every_page_has_room_per_category(many_db, monkeypatch):
    import sys

    from streamlit.testing.v1 import AppTest

    from tests.dashboards.conftest import APP

    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])  # as the app fixture does
    monkeypatch.setenv("GRIDLAB_DB", many_db.url)
    problems = []
    for grid, page in dict.fromkeys((g, p) for g, p, _, fewest in VISITS if fewest):
        query = {"grid": grid, **({"job": str(many_db.ids[grid][0])} if page == "run_detail" else {})}
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params.update(query)  # before the first run, as a link opens the page
        at.run()
        if page:
            at.switch_page(f"{page}.py").run()
        assert not at.exception, (grid, page, [e.value for e in at.exception])
        if page != "run_detail":
            assert next(s for s in at.selectbox if s.label == "Grid").value == grid  # ?grid= picked it
        for element in at.get("vega_lite_chart"):
            problems += [f"{grid}/{page or 'overview'}: {p}"
                         for p in geometry.spec_problems(json.loads(element.proto.spec), _datasets(element))]
    assert not problems, "\n".join(problems)
