"""Running the gridlab command in this process, as its console script does."""

from __future__ import annotations

import contextlib
import io
import os
import traceback
from pathlib import Path


class Run:
    def __init__(self, code, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr


def run_in_process(argv: list[str], cwd: Path, env: dict[str, str | None] | None = None,
                   patches: dict | None = None) -> Run:
    """``harness.cli.main(argv)`` as a user's shell would run it: in ``cwd``, with ``env``
    changes, its output captured; every engine it made is disposed afterwards."""
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


