"""Running the gridlab command in tests: the one place that knows how.

- :func:`run`: a real ``python -m harness.cli`` process, as a user's shell runs it (this
  checkout first on PYTHONPATH, 200-column output, no ``GRIDLAB_DB`` but the one given);
- :func:`invoke`: ``harness.cli.main(argv)`` in this process, as the console script calls
  it (much faster; module attributes can be patched for one call);
- :func:`assert_one_line_error`: what every mistake of a user's must look like (exit code 2,
  one ``gridlab: error:`` line on stderr, no traceback), for the result of either.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class Run:
    """What :func:`invoke` saw: the exit code (``"traceback"`` for an uncaught exception), stdout, stderr."""

    def __init__(self, code, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr

    @property
    def returncode(self):  # read like a subprocess.CompletedProcess
        return self.code


def environment(env: dict[str, str | None] | None = None, *, db: str | None = None,
                pythonpath: Path | str | None = REPO) -> dict[str, str]:
    """This process's environment for a gridlab process: ``pythonpath`` first on PYTHONPATH
    (None: PYTHONPATH untouched), ``COLUMNS=200``, ``GRIDLAB_DB`` only if ``db`` is given,
    then ``env`` (a None value unsets the variable)."""
    full = {k: v for k, v in os.environ.items() if k != "GRIDLAB_DB"}
    full["COLUMNS"] = "200"
    if pythonpath is not None:
        full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), os.environ.get("PYTHONPATH")]))
    if db:
        full["GRIDLAB_DB"] = db
    for k, v in (env or {}).items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    return full


def command(args) -> list[str]:
    """The command line of ``gridlab ARGS`` (for a process a test starts itself, a server say)."""
    return [sys.executable, "-m", "harness.cli", *args]


def run(args, *, cwd: Path, db: str | None = None, env: dict[str, str | None] | None = None,
        pythonpath: Path | str | None = REPO, timeout: float = 300, popen: bool = False):
    """``gridlab ARGS`` as a process in ``cwd`` (see :func:`environment`); its CompletedProcess
    (text), or with ``popen`` the running Popen with stdout and stderr piped."""
    cmd = command(args)
    full = environment(env, db=db, pythonpath=pythonpath)
    if popen:
        return subprocess.Popen(cmd, cwd=cwd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout,
                          errors="surrogateescape")


def invoke(argv: list[str], cwd: Path, env: dict[str, str | None] | None = None, patches: dict | None = None) -> Run:
    """``harness.cli.main(argv)`` as a user's shell would run it: in ``cwd``, with ``env``
    changes (default: no ``GRIDLAB_DB``), ``patches`` ({(object, attribute): value}) in place,
    its output captured; every engine it made is disposed afterwards."""
    from db import engine as db_engine
    from harness import cli

    env = {"GRIDLAB_DB": None} if env is None else env
    patches = patches or {}
    engines = []
    real_create = db_engine.create

    def create(*args, **kw):
        engines.append(real_create(*args, **kw))
        return engines[-1]

    saved_env = {k: os.environ.get(k) for k in env}
    saved_cwd = os.getcwd()
    saved_attrs = [(obj, name, getattr(obj, name)) for (obj, name) in patches]
    out, err = io.StringIO(), io.StringIO()
    code = None
    try:
        for k, v in env.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        for (obj, name), value in patches.items():
            setattr(obj, name, value)
        db_engine.create = create
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code
            except Exception:  # a bug: what a user would see is this traceback
                code = "traceback"
                err.write(traceback.format_exc())
    finally:
        os.chdir(saved_cwd)
        db_engine.create = real_create
        for obj, name, value in saved_attrs:
            setattr(obj, name, value)
        for k, v in saved_env.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        for e in engines:
            e.dispose()
    return Run(code, out.getvalue(), err.getvalue())


def assert_one_line_error(result, *needles: str) -> str:
    """Exit code 2 and one ``gridlab: error: ...`` line on stderr holding every needle, no
    traceback (``result``: a CompletedProcess or a :class:`Run`). Returns the line."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gridlab: error: ") and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]
