"""Secrets of a launch: the database password and token-like ``--env`` values.

They never go into the sbatch script, the submitit pickles, a command line or a log.
Each launch folder is made owner-only (0700, :func:`new_launch_folder`), and the
secrets go into ``secrets.json`` in it (0600); the pickled worker options name that
file instead of holding the values. A worker reads it back when it starts, and refuses
a secrets file that others could read or that is not its user's.

The launch folder also carries a marker, ``gridlab-launch.json``, that ``supervise``
checks (with the folder's owner and mode) before it unpickles anything in it
(:func:`is_own_launch_folder`): a folder named in the database is not trusted because
it is named there.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import replace
from pathlib import Path

from db import engine as db_engine
from db.errors import GridlabError

SECRETS_FILE = "secrets.json"
MARKER = "gridlab-launch.json"

#: Names of environment variables whose values are secrets.
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL|AUTH", re.IGNORECASE)
#: Values that are tokens whatever their variable's name (Hugging Face, GitHub, OpenAI,
#: Slack, AWS, Google, GitLab, W&B-style 40-hex keys).
_TOKEN_VALUE = re.compile(r"^(hf_|ghp_|gho_|ghs_|github_pat_|sk-|xox[abpr]-|AKIA|ASIA|ya29\.|glpat-)[\w\-.]{8,}$"
                          r"|^[0-9a-f]{40}$")
#: Long strings of mixed letters and digits without slashes (not a path): keys, base64.
_HIGH_ENTROPY = re.compile(r"^[A-Za-z0-9_\-+=.]{24,}$")


class SecretsRefused(GridlabError):
    """A secrets file or launch folder that others could read or write."""


def looks_secret(name: str, value: str) -> bool:
    """True for a variable whose value must not be written in clear."""
    if _SECRET_NAME.search(name) or _TOKEN_VALUE.match(value):
        return True
    if "://" in value:
        try:
            return db_engine.has_secret(value)
        except Exception:  # not a URL after all
            return False
    return bool(_HIGH_ENTROPY.match(value) and re.search(r"[a-z]", value) and re.search(r"[A-Z]", value)
                and re.search(r"\d", value))


def split_env(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(values that may go into a script, values that are secrets)."""
    public, secret = {}, {}
    for name, value in env.items():
        (secret if looks_secret(name, value) else public)[name] = value
    return public, secret


def new_launch_folder(path: Path) -> Path:
    """Make ``path`` (owner-only) and mark it as made by gridlab, by this user."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    _write_private(path / MARKER, {"uid": os.getuid(), "made_by": "gridlab launch"})
    return path


def write(folder: Path, *, url: str, env: dict[str, str]) -> tuple[str, str | None, dict[str, str]]:
    """Move the URL's password and the secret ``env`` values into ``folder``'s secrets file.
    Returns (URL without secrets, path of the secrets file or None, env without secrets)."""
    bare, db_secrets = db_engine.split_secrets(url)
    public, secret = split_env(env)
    if not db_secrets and not secret:
        return url, None, public
    path = folder / SECRETS_FILE
    _write_private(path, {"db": db_secrets, "env": secret})
    return bare, str(path), public


def load(options):
    """The worker options with their secrets put back (``options.secrets_file``), and the
    secret environment variables set. Refuses a file others can read or that is not ours."""
    path = getattr(options, "secrets_file", None)
    if not path:
        return options
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise SecretsRefused(f"cannot read the launch's secrets file {p}: {exc.strerror}",
                             "launch again from a folder every node mounts (--runs-dir)") from None
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise SecretsRefused(f"secrets file {p} is not this user's, or others may read it (mode {stat.filemode(st.st_mode)})",
                             "launch again; gridlab makes it 0600 in a 0700 folder")
    data = json.loads(p.read_text())
    os.environ.update({str(k): str(v) for k, v in (data.get("env") or {}).items()})
    url = db_engine.join_secrets(options.url, data.get("db") or {})
    return replace(options, url=url, secrets_file=None)


def is_own_launch_folder(folder: Path) -> bool:
    """True if ``folder`` is a launch folder gridlab made for this user: a real folder (not
    a link) owned by us, writable by nobody else, holding our marker file, owned by us."""
    try:
        st = os.lstat(folder)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
            return False
        marker = os.lstat(folder / MARKER)
        if not stat.S_ISREG(marker.st_mode) or marker.st_uid != os.getuid() or marker.st_mode & 0o022:
            return False
        return json.loads((folder / MARKER).read_text()).get("uid") == os.getuid()
    except (OSError, ValueError, AttributeError):
        return False


def is_own_file(path: Path) -> bool:
    """A regular file (not a link) owned by us that nobody else may write."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


def _write_private(path: Path, data: dict) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, json.dumps(data).encode())
    finally:
        os.close(fd)
