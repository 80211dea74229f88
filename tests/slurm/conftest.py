"""The real one-node Slurm cluster for the ``slurm`` tests.

If ``sinfo`` does not answer, the session starts the cluster with
``slurm/cluster/start.sh`` (installs and starts it; needs root) under CI=true or with
GRIDLAB_START_SLURM=1. Where Slurm cannot run, the tests skip with the reason, except
under CI=true, where a skip would hide a broken cluster: there they fail.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import IN_CI

REPO = Path(__file__).resolve().parents[2]
START = REPO / "slurm" / "cluster" / "start.sh"


def _sinfo_ok() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _unavailable_reason() -> str | None:
    if _sinfo_ok():
        return None
    if not (IN_CI or os.environ.get("GRIDLAB_START_SLURM") == "1"):
        return ("Slurm is not running (sinfo fails); start it with `sudo bash slurm/cluster/start.sh`, "
                "or set GRIDLAB_START_SLURM=1 to let the tests start it")
    proc = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not _sinfo_ok():
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"slurm/cluster/start.sh could not start Slurm: {last[0]}"
    return None


@pytest.fixture(scope="session")
def slurm_cluster():
    reason = _unavailable_reason()
    if reason:
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: Slurm tests must run, not skip)")
        pytest.skip(reason)
    node = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout.split()[0]
    yield node


def wait_gone(job_ids: list[str], timeout_s: float = 120) -> None:
    """Wait until squeue no longer lists any of the jobs (array tasks included)."""
    bases = ",".join(sorted({j.split("_")[0] for j in job_ids}))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-j", bases, "-o", "%i"], capture_output=True, text=True)
        if out.returncode == 0 and not out.stdout.strip():
            return
        time.sleep(1)
    subprocess.run(["scancel", *bases.split(",")], capture_output=True)
    raise AssertionError(f"Slurm jobs {bases} still queued after {timeout_s:.0f} s (cancelled now)")


#: Held shared by every Slurm test and alone by a test that changes the node itself (the node-down
#: test), across the xdist workers of one run: the Slurm lanes run side by side, and a node set
#: DOWN would fail the other lane's jobs with NODE_FAIL.
NODE_LOCK = Path(tempfile.gettempdir()) / "gridlab-tests-slurm-node.lock"


def _hold(mode: int):
    import fcntl

    handle = open(NODE_LOCK, "a+")  # noqa: SIM115  (held for the test's duration)
    fcntl.flock(handle, mode)
    return handle


@pytest.fixture(autouse=True)
def _node_shared(request):
    if "whole_node" in request.fixturenames:
        yield
        return
    import fcntl

    handle = _hold(fcntl.LOCK_SH)
    try:
        yield
    finally:
        handle.close()


@pytest.fixture
def whole_node(slurm_cluster):
    """The node to this test alone: waits for the other lane's running test and keeps its next one
    out until this test has put the node back."""
    import fcntl

    handle = _hold(fcntl.LOCK_EX)
    try:
        yield slurm_cluster
    finally:
        handle.close()
