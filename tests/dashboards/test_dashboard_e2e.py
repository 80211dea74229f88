"""`gridlab dashboard` as a user runs it: served on localhost, loaded in headless
Chromium, showing the grid's data; and clear one-line errors for a wrong database."""

from __future__ import annotations

import html
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.dashboards.conftest import fill

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
#: Screenshots land here (ignored by git), so a person can look at them after the run.
SHOTS = REPO / "tests" / ".screenshots"


def _gridlab_env(db: str | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("GRIDLAB_DB", None)
    if db:
        env["GRIDLAB_DB"] = db
    return env


def _chromium() -> str:
    """Chromium, installed from Debian's archive if missing (we run as root in CI)."""
    if not Path(CHROMIUM).exists() and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True, timeout=1200)
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing and `apt-get install -y chromium` did not provide it"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: the browser test must run)")
        pytest.skip(reason)
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gridlab dashboard exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("gridlab dashboard did not answer within a minute")


def _browse(url: str, profile: Path, *extra: str, budget_ms: int = 60_000) -> subprocess.CompletedProcess:
    """Load ``url`` in headless Chromium. The page renders through a websocket, which
    virtual time does not wait for: the budget must outlast the app's first run."""
    return subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", "--window-size=1400,1600", f"--virtual-time-budget={budget_ms}", *extra, url],
        capture_output=True, text=True, timeout=180,
    )


def _assert_rendered(url: str, tmp_path: Path, *needles: str) -> None:
    """The page at ``url``, once the browser has rendered it, shows every needle. Virtual
    time may run out before a loaded machine answers: up to three tries, longer each."""
    for attempt, budget in enumerate((60_000, 120_000, 240_000)):
        dom = _browse(url, tmp_path / f"profile-{abs(hash(url))}-{attempt}", "--dump-dom", budget_ms=budget)
        assert dom.returncode == 0, dom.stderr[-2000:]
        text = html.unescape(re.sub(r"<[^>]+>", "", dom.stdout))  # code blocks split text into spans
        missing = [n for n in needles if n not in text]
        if not missing:
            return
    raise AssertionError(f"{missing} not in the page at {url} as rendered")


def _screenshot(url: str, shot: Path, tmp_path: Path) -> Path:
    """A screenshot of the rendered page (an empty app frame is ~11 kB; a page with its
    data several times that): up to three tries, as for the DOM."""
    for attempt, budget in enumerate((60_000, 120_000, 240_000)):
        shot.unlink(missing_ok=True)
        r = _browse(url, tmp_path / f"profile-shot-{abs(hash(url))}-{attempt}", f"--screenshot={shot}", budget_ms=budget)
        assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
        if shot.stat().st_size > 30_000:
            return shot
    raise AssertionError(f"{url} still looks empty in {shot} ({shot.stat().st_size} bytes)")


def test_dashboard_serves_the_grid_to_a_browser(sqlite_url, tmp_path):
    filled = fill(sqlite_url)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "dashboard", "--db", sqlite_url, "--port", str(port)],
                            cwd=tmp_path, env=_gridlab_env(None), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        _wait_healthy(port, proc)
        base = f"http://127.0.0.1:{port}"
        # The overview as rendered by the browser: title, the grids, and their figures.
        _assert_rendered(f"{base}/", tmp_path, "Overview", "ablation", "probe", "12 of 12 finished", "Stale leases")
        # The failures page: the selected attempt's error and the command that retries it
        # (tables are drawn on a canvas, so only text outside them is in the DOM).
        _assert_rendered(f"{base}/failures", tmp_path, "loss=nan at step 12",
                         f"gridlab retry {filled.by_state['diverged']} --db")

        SHOTS.mkdir(exist_ok=True)
        shots = {}
        for page, path in (("overview", "/"), ("run_detail", f"/run_detail?job={filled.arms[0]}"),
                           ("failures", "/failures")):
            shots[page] = _screenshot(f"{base}{path}", SHOTS / f"dashboard_{page}.png", tmp_path)
        print("screenshots:", *shots.values())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _dashboard(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", "dashboard", *args], cwd=cwd, env=_gridlab_env(None),
                          capture_output=True, text=True, timeout=120)


def _one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("gridlab: error: ") and "Traceback" not in r.stderr
    for needle in needles:
        assert needle in line, line


def test_dashboard_without_a_database_is_a_one_line_error(tmp_path):
    _one_line_error(_dashboard("--db", f"sqlite:///{tmp_path / 'none.db'}", cwd=tmp_path), "does not exist")
    _one_line_error(_dashboard(cwd=tmp_path), "gridlab.db", "does not exist")  # the default database


def test_dashboard_on_an_unreachable_server_is_a_one_line_error_without_the_password(tmp_path):
    r = _dashboard("--db", "postgresql://alice:s3cret@127.0.0.1:9/gridlab", cwd=tmp_path)
    _one_line_error(r, "cannot reach database")
    assert "s3cret" not in r.stderr


def test_dashboard_streamlit_command_keeps_passwords_off_the_command_line():
    from harness import commands_dashboard

    plain = commands_dashboard.streamlit_argv("sqlite:////x/g.db", host="127.0.0.1", port=8600)
    assert plain[1:4] == ["-m", "streamlit", "run"] and plain[4].endswith("dashboards/app.py")
    assert plain[-3:] == ["--", "--db", "sqlite:////x/g.db"] and "--server.headless" in plain
    secret = commands_dashboard.streamlit_argv("postgresql://alice:s3cret@db/g", host="127.0.0.1", port=8600)
    assert not any("s3cret" in a for a in secret)
    in_query = commands_dashboard.streamlit_argv("postgresql://alice@db/g?password=s3cret", host="127.0.0.1", port=8600)
    assert not any("s3cret" in a for a in in_query) and "--db" not in in_query
    assert commands_dashboard.server_env("postgresql://alice:s3cret@db/g")["GRIDLAB_DB"].endswith("@db/g")
