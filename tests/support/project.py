"""A throwaway copy of this gridlab checkout, as its own git repository, for tests that
edit the source after a launch (the real checkout is never touched).

The copy holds a runner, ``pinprobe:run``, that waits for its spec's ``go`` file and only
then imports ``harness.pin_probe_value`` (as an experiment module is first imported when
a worker meets the first job of that kind) and stores its VALUE as the figure ``value``.
It also stores ``token_ok``: 1 if the worker's environment holds the token whose sha256
the spec names.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.support import cli

REPO = Path(__file__).resolve().parents[2]

RUNNER = '''"""Pinning-test runner (tests/support/project.py)."""
import hashlib
import os
import time
from pathlib import Path


def run(ctx):
    go = Path(ctx.spec["go"])
    deadline = time.monotonic() + 180
    while not go.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the test never created the go file")
        time.sleep(0.05)
    from harness import pin_probe_value  # first imported now, after the checkout was edited

    token = os.environ.get("PINPROBE_TOKEN", "")
    ok = hashlib.sha256(token.encode()).hexdigest() == ctx.spec.get("token_sha", "")
    ctx.summary({"value": float(pin_probe_value.VALUE), "token_ok": float(ok)})
'''


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout


def make_project(folder: Path) -> Path:
    """A git repository at ``folder`` holding this checkout's files (as they are now,
    uncommitted changes included) plus the probe, committed."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True, text=True).stdout.split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, folder / rel)
    (folder / "pinprobe.py").write_text(RUNNER)
    (folder / "harness" / "pin_probe_value.py").write_text("VALUE = 1\n")
    git(folder, "init", "-q")
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", "copy")
    return folder


def edit_value(project: Path, value: int) -> None:
    """The researcher's edit: the module the queued cells will import, changed."""
    (project / "harness" / "pin_probe_value.py").write_text(f"VALUE = {value}\n")


def gridlab(project: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            popen: bool = False, timeout: float = 180):
    """The gridlab of the copy: run with the copy first on PYTHONPATH, from ``cwd``
    (default: the copy, as a researcher runs it from the checkout)."""
    return cli.run(args, cwd=cwd or project, env={"PYTHONPATH": str(project), **(env or {})}, popen=popen,
                   timeout=timeout)


def wait_for(predicate, timeout_s: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
