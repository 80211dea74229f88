"""Headless Chromium driven over the DevTools protocol: open a dashboard page at a given
width, wait until Streamlit has finished running it, read what a person would see (text,
exceptions, each chart's drawn labels and their boxes), and take a full-page screenshot.

One browser serves every page of a test (a tab is reused), which is much faster than a
Chromium process per page. The protocol runs over a websocket (``websockets``, which
Streamlit itself depends on).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.support import cli

CHROMIUM = "/usr/bin/chromium"
WIDTH = 1400

#: JavaScript run in the page: whether Streamlit is still at work on it, and a signature of
#: what is drawn (text length, charts, their sizes), to wait for it to settle.
_STATE_JS = r"""
(() => {
  const running = !!document.querySelector('[data-testid="stStatusWidgetRunningIcon"]')
               || !!document.querySelector('[data-testid="stSkeleton"], [data-testid="stAppSkeleton"]')
               || !!document.querySelector('[data-testid="stSpinner"]');
  const main = document.querySelector('[data-testid="stMain"]');
  const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')];
  const sizes = charts.map(c => { const s = c.querySelector('svg, canvas'); if (!s) return 'none';
                                  const r = s.getBoundingClientRect(); return `${Math.round(r.width)}x${Math.round(r.height)}`; });
  const h1 = main && main.querySelector('h1');
  return JSON.stringify({running, ready: !!h1, title: h1 ? h1.innerText.trim() : null,
                         sig: `${main ? main.innerText.length : 0}|${sizes.join(',')}`});
})()
"""

#: JavaScript run in the page once it has settled: the page's text, its exceptions, and per
#: chart the box of its drawing, of the element that holds it (what is visible of it), and
#: the boxes of its axis labels, legend labels and text marks (Vega draws SVG here).
_READ_JS = r"""
(() => {
  const box = el => { const r = el.getBoundingClientRect();
                      return {x: r.x, y: r.y, w: r.width, h: r.height}; };
  const angle = t => { const m = /rotate\(([-\d.e]+)/.exec(t.getAttribute('transform') || ''); return m ? +m[1] : 0; };
  const texts = (root, sel) => [...root.querySelectorAll(sel)]
      .filter(t => t.textContent.trim() !== '' && getComputedStyle(t).visibility !== 'hidden'
                   && t.getAttribute('opacity') !== '0')
      .map(t => ({text: t.textContent, angle: angle(t), font: parseFloat(getComputedStyle(t).fontSize) || 10,
                  ...box(t)}));
  const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')].map(el => {
    const svg = el.querySelector('svg');
    if (!svg) return {renderer: el.querySelector('canvas') ? 'canvas' : 'none', box: box(el)};
    const axes = [...svg.querySelectorAll('g.role-axis')].map(a => ({
      aria: a.getAttribute('aria-label') || '',
      labels: texts(a, 'g.role-axis-label text'),
      title: texts(a, 'g.role-axis-title text').map(t => t.text).join(' '),
    }));
    const legends = [...svg.querySelectorAll('g.role-legend')].map(l => ({
      aria: l.getAttribute('aria-label') || '',
      labels: texts(l, 'g.role-legend-label text'),
    }));
    const marks = texts(svg, 'g.role-mark.mark-text text');
    const titles = texts(svg, 'g.role-title-text text').map(t => t.text);
    return {renderer: 'svg', box: box(el), drawing: box(svg), axes, legends, marks, titles};
  });
  const exceptions = [...document.querySelectorAll('[data-testid="stException"]')].map(e => e.innerText);
  const main = document.querySelector('[data-testid="stMain"]');
  const picker = document.querySelector('[data-testid="stSidebar"] [data-testid="stSelectbox"] input');
  return JSON.stringify({text: main ? main.innerText : '', exceptions, charts,
                         sidebar_select: picker ? picker.value : null,
                         height: Math.max(document.documentElement.scrollHeight,
                                          ...[...document.querySelectorAll('*')].map(e => e.scrollHeight))});
})()
"""


def chromium_path() -> str | None:
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


def require_chromium() -> str:
    """Chromium, installed from Debian's archive if missing (we run as root in CI); the
    test skips without it, or fails under CI=true, where the browser tests must run."""
    import pytest

    from tests.conftest import IN_CI

    if chromium_path() is None and shutil.which("apt-get") and os.geteuid() == 0:
        import fcntl

        # One install at a time: the suite's workers reach their browser tests together, and a
        # second apt-get meets dpkg's lock and fails (a first run on a new machine skipped so).
        with open(Path(tempfile.gettempdir()) / "gridlab-tests-chromium-install.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if chromium_path() is None:
                env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
                subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
                subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True,
                               timeout=1200)
    path = chromium_path()
    if path is None:
        reason = f"{CHROMIUM} is missing and `apt-get install -y chromium` did not provide it"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: the browser test must run)")
        pytest.skip(reason)
    return path


class Browser:
    """One headless Chromium with one tab; ``with Browser() as b: page = b.open(url)``."""

    def __init__(self, chromium: str, *, width: int = WIDTH, height: int = 1000) -> None:
        self.width, self.height = width, height
        self._profile = tempfile.mkdtemp(prefix="gridlab-chromium-")
        self._proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             "--hide-scrollbars", "--remote-debugging-port=0", f"--user-data-dir={self._profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._ids = itertools.count(1)
        self._stack = contextlib.ExitStack()  # holds the websocket (websockets wants it used as a context manager)
        self._ws = None
        try:
            self._connect()
        except Exception:
            self.close()
            raise

    def _connect(self, timeout: float = 60.0) -> None:
        from websockets.sync.client import connect

        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.exists() or len(port_file.read_text().split()) < 2:
            if self._proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self._proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port within a minute")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.load(r)
        page = next(t for t in targets if t.get("type") == "page")
        self._ws = self._stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=256 * 2**20, open_timeout=30))
        self.send("Emulation.setDeviceMetricsOverride",
                  width=self.width, height=self.height, deviceScaleFactor=1, mobile=False)

    def send(self, method: str, **params):
        """One DevTools command; its result (events that arrive meanwhile are dropped)."""
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._ws.recv(timeout=120))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, *, title: str | None = None, timeout: float = 120.0, settle_s: float = 1.0) -> dict:
        """Load ``url`` and wait until Streamlit has run the page (its heading reads
        ``title``, if given) and what is drawn has not changed for ``settle_s``; then what
        is on it (see _READ_JS)."""
        self.send("Emulation.setDeviceMetricsOverride",
                  width=self.width, height=self.height, deviceScaleFactor=1, mobile=False)
        self.send("Page.navigate", url=url)
        return self._settled(url, title, timeout, settle_s)

    def follow(self, path: str, *, title: str | None = None, timeout: float = 120.0, settle_s: float = 1.0) -> dict:
        """Go to the app's page at ``path`` as a person does, by its link in the sidebar
        (the session, and the grid picked in it, stay); then as open()."""
        found = self.evaluate(
            "(() => { const a = [...document.querySelectorAll('[data-testid=\"stSidebarNav\"] a')]"
            f".find(a => new URL(a.href).pathname === {json.dumps(path)}); if (a) a.click(); return !!a; }})()")
        if not found:
            raise AssertionError(f"no link to {path} in the sidebar")
        return self._settled(path, title, timeout, settle_s)

    def _settled(self, where: str, title: str | None, timeout: float, settle_s: float) -> dict:
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        time.sleep(0.3)
        while True:
            state = json.loads(self.evaluate(_STATE_JS) or "{}")
            key = (state.get("running"), state.get("ready"), state.get("title"), state.get("sig"))
            if key != last:
                last, since = key, time.monotonic()
            elif (state.get("ready") and not state.get("running") and (title is None or state.get("title") == title)
                  and time.monotonic() - since >= settle_s):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{where} did not finish rendering within {timeout:.0f} s (last state {state})")
            time.sleep(0.25)
        return json.loads(self.evaluate(_READ_JS))

    def screenshot(self, path: Path, page_height: float) -> Path:
        """The whole page (not only the first screen) as a PNG at ``path``."""
        height = int(min(max(page_height, self.height), 12_000))
        self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=height, deviceScaleFactor=1,
                  mobile=False)
        time.sleep(0.4)  # Streamlit lays out again for the taller window
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        return path

    def close(self) -> None:
        try:
            self._stack.close()
        except Exception:  # the browser may already have closed its end
            pass
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve(db_url: str | None, cwd: Path, env: dict[str, str], *, script: Path | None = None) -> tuple[subprocess.Popen, str]:
    """`gridlab dashboard` on ``db_url`` (or ``streamlit run script``) on a free port;
    (process, base URL) once it answers."""
    import socket
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if script is None:
        argv = cli.command(["dashboard", "--db", db_url, "--port", str(port)])
    else:
        argv = [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
                "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    log = Path(cwd) / f"server-{port}.log"  # a file, not a pipe nobody reads: a full pipe would block the server
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{argv[2:4]} exited with {proc.returncode}: {log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.3)
    stop(proc)
    raise AssertionError(f"{argv[2:4]} did not answer within a minute")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
