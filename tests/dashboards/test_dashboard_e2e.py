"""`gridlab dashboard` as a user runs it: served on localhost, loaded in headless
Chromium, showing the grid's data; and clear one-line errors for a wrong database."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.dashboards import browser
from tests.dashboards.conftest import fill
from tests.support import cli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
#: Screenshots land here (ignored by git), so a person can look at them after the run.
SHOTS = REPO / "tests" / ".screenshots"


def test_dashboard_serves_the_grid_to_a_browser(sqlite_url, tmp_path):
    filled = fill(sqlite_url)
    chromium = browser.require_chromium()
    proc, base = browser.serve(sqlite_url, tmp_path, cli.environment())
    try:
        with browser.Browser(chromium) as b:
            # The overview as rendered by the browser: title, the grids, and their figures.
            seen = b.open(f"{base}/", title="Overview")
            for needle in ("ablation", "probe", "12 of 12 finished", "Stale leases"):
                assert needle in seen["text"], needle
            shots = [b.screenshot(SHOTS / "dashboard_overview.png", seen["height"])]
            # The failures page: the selected attempt's error and the command that retries it
            # (tables are drawn on a canvas, so only text outside them is on the page).
            seen = b.open(f"{base}/failures", title="Failures")
            for needle in ("loss=nan at step 12", f"gridlab retry {filled.by_state['diverged']} --db"):
                assert needle in seen["text"], needle
            shots.append(b.screenshot(SHOTS / "dashboard_failures.png", seen["height"]))
            seen = b.open(f"{base}/run_detail?job={filled.arms[0]}", title="Run detail")
            assert f"Job {filled.arms[0]}: succeeded" in seen["text"] and len(seen["charts"]) >= 4
            shots.append(b.screenshot(SHOTS / "dashboard_run_detail.png", seen["height"]))
            assert not seen["exceptions"]
        print("screenshots:", *shots)
    finally:
        browser.stop(proc)


def _dashboard(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return cli.run(["dashboard", *args], cwd=cwd, timeout=120)


def test_dashboard_without_a_database_is_a_one_line_error(tmp_path):
    cli.assert_one_line_error(_dashboard("--db", f"sqlite:///{tmp_path / 'none.db'}", cwd=tmp_path), "does not exist")
    cli.assert_one_line_error(_dashboard(cwd=tmp_path), "gridlab.db", "does not exist")  # the default database


def test_dashboard_on_an_unreachable_server_is_a_one_line_error_without_the_password(tmp_path):
    r = _dashboard("--db", "postgresql://alice:s3cret@127.0.0.1:9/gridlab", cwd=tmp_path)
    cli.assert_one_line_error(r, "cannot reach database")
    assert "s3cret" not in r.stderr


def test_dashboard_streamlit_command_keeps_passwords_off_the_command_line():
    from harness.cli import dashboard

    plain = dashboard.streamlit_argv("sqlite:////x/g.db", host="127.0.0.1", port=8600)
    assert plain[1:4] == ["-m", "streamlit", "run"] and plain[4].endswith("dashboards/app.py")
    assert plain[-3:] == ["--", "--db", "sqlite:////x/g.db"] and "--server.headless" in plain
    secret = dashboard.streamlit_argv("postgresql://alice:s3cret@db/g", host="127.0.0.1", port=8600)
    assert not any("s3cret" in a for a in secret)
    in_query = dashboard.streamlit_argv("postgresql://alice@db/g?password=s3cret", host="127.0.0.1", port=8600)
    assert not any("s3cret" in a for a in in_query) and "--db" not in in_query
    assert dashboard.server_env("postgresql://alice:s3cret@db/g")["GRIDLAB_DB"].endswith("@db/g")
