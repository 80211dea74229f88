"""Shared fixtures: a database URL per backend (SQLite file, real PostgreSQL).

PostgreSQL tests create their own database and drop it afterwards. Where PostgreSQL
cannot be reached they skip with the reason, except under CI (CI=true), where a
skip would hide a broken backend: there they fail.
"""

from __future__ import annotations

import os
import sys
import uuid

import pytest

PG_ADMIN_URL = os.environ.get("GRIDLAB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# pytest-xdist's workers start with COLUMNS=80 and LINES=24; gridlab's tables size themselves by
# COLUMNS, so drop what the runner set: every test sees the same terminal, in a worker or not, and
# a test about widths sets COLUMNS itself.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)
#: The seed of every random draw a test makes through ``rng_seed``: fixed, so each run draws
#: the same; GRIDLAB_TEST_SEED=N draws others, and a failing test's report names the seed it
#: ran with, so its draws can be replayed.
TEST_SEED = int(os.environ.get("GRIDLAB_TEST_SEED", "1201"))

_pg_state: dict[str, str | None] = {}


def pg_unavailable_reason() -> str | None:
    """None if the test PostgreSQL server answers, else why not."""
    if "reason" not in _pg_state:
        import psycopg

        try:
            conninfo = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(conninfo, connect_timeout=3):
                pass
            _pg_state["reason"] = None
        except Exception as exc:  # any failure to connect means: no server for tests
            _pg_state["reason"] = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {str(exc).splitlines()[0]}"
    return _pg_state["reason"]


def require_pg() -> None:
    reason = pg_unavailable_reason()
    if reason:
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run, not skip)")
        pytest.skip(reason)


def _pg_admin(sql: str) -> None:
    import psycopg

    conninfo = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database for one test."""
    require_pg()
    name = f"gridlab_test_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'gridlab.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A database URL on every backend: the contract suites run once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gridlab.db'}"
    else:
        yield request.getfixturevalue("pg_url")


def migrated_engine(url: str):
    """An engine on `url` with the schema at head: the one way tests make a database."""
    from db import engine as db_engine
    from db import schema

    eng = db_engine.create(url)
    schema.upgrade(eng)
    return eng


@pytest.fixture
def engine(db_url):
    eng = migrated_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(sqlite_url):
    """A migrated SQLite database, for tests about something other than the backend."""
    eng = migrated_engine(sqlite_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session", autouse=True)
def tiny_cache(tmp_path_factory):
    """GRIDLAB_CACHE for the whole session, for the tests and every process they start: each tiny
    model, tokenizer and the tiny ranker is built once per run, never in the user's cache."""
    path = tmp_path_factory.mktemp("gridlab-cache")
    previous = os.environ.get("GRIDLAB_CACHE")
    os.environ["GRIDLAB_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("GRIDLAB_CACHE", None)
    else:
        os.environ["GRIDLAB_CACHE"] = previous


@pytest.fixture
def queue(engine):
    from jobs.queue import Queue

    return Queue(engine, lease_s=30.0)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch/sacct/squeue/scancel first on PATH, answering from a state the test sets
    (tests/support/fake_slurm.py)."""
    from tests.support.fake_slurm import FakeSlurm

    fake = FakeSlurm(tmp_path / "fake-slurm")
    fake.install(monkeypatch)
    return fake


@pytest.fixture
def rng_seed() -> int:
    """The seed for a test's random generators (:data:`TEST_SEED`)."""
    return TEST_SEED


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and "rng_seed" in getattr(item, "fixturenames", ()):
        report.sections.append(("random draws", f"drawn with GRIDLAB_TEST_SEED={TEST_SEED}: run with it to replay them"))
    return report


@pytest.hookimpl(trylast=True)  # after the test's fixtures are torn down
def pytest_runtest_teardown(item, nextitem):
    """A test process that has imported the training libraries freezes its long-lived heap once,
    as a worker does after its first job (``jobs.worker.freeze_long_lived``): tests train
    hundreds of cells in process, outside a worker too, and each full collection transformers'
    Trainer runs walked pytest's and the libraries' objects (0.4 s a cell)."""
    if "transformers" in sys.modules:
        from jobs.worker import freeze_long_lived

        freeze_long_lived()


#: Test modules whose tests share state in order (they must run in one process, in file order).
SERIAL_MODULES = ("tests/bad_inputs/test_catalogue.py",)


def pytest_configure(config):
    """In an xdist worker, run at a lower CPU priority (nice 5) than the processes Slurm starts:
    the Slurm tests are the suite's longest chains and their jobs run under slurmd, not under the
    workers, so the training tests beside them give those jobs a larger share of the CPU. (Nice 10
    starved a worker's heartbeat past a 6-second lease once.)"""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.nice(5)


#: Slurm test files that run in the second Slurm lane when the cluster has the CPUs for two lanes
#: (the rest run in the first); chosen so the two lanes take about as long.
SECOND_SLURM_LANE = ("tests/slurm/test_ranks.py", "tests/slurm/test_shared_device.py",
                     "tests/slurm/test_accounting_contract.py")
#: CPUs the one-node cluster needs to advertise for two lanes: each lane's largest job asks for 2
#: (``.ci/services`` starts it with ``GRIDLAB_SLURM_CPUS=4``).
TWO_LANE_CPUS = 4


def _slurm_lanes() -> int:
    """2 when the running cluster advertises the CPUs for two lanes of Slurm tests, else 1."""
    import shutil
    import subprocess

    if not shutil.which("sinfo"):
        return 1
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True, timeout=10).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return 1
    return 2 if out and out[0].isdigit() and int(out[0]) >= TWO_LANE_CPUS else 1


def _lane(nodeid: str, lanes: int) -> str:
    """The scope a test is scheduled in: a Slurm lane, its module (ordered modules), or itself."""
    path = nodeid.split("::", 1)[0]
    if path.startswith("tests/slurm/"):
        return "slurm-2" if lanes == 2 and path in SECOND_SLURM_LANE else "slurm-1"
    return path if path in SERIAL_MODULES else nodeid


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup`` (``make test``), scheduled by :func:`_lane`: each Slurm lane and each
    ordered module goes to one worker whole, every other test on its own. (xdist's own loadgroup
    reads ``xdist_group`` marks by rewriting node ids, which pytest 9 no longer lets it do.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    lanes = _slurm_lanes()

    class Lanes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _lane(nodeid, lanes)

    return Lanes(config, log)


def pytest_collection_modifyitems(config, items):
    """The tests that need the one-node Slurm cluster go first: their lanes are the suite's
    longest chains (see :func:`pytest_xdist_make_scheduler`)."""
    root = config.rootpath
    slurm, rest = [], []
    for item in items:
        where = item.path.relative_to(root).as_posix() if item.path.is_relative_to(root) else str(item.path)
        (slurm if where.startswith("tests/slurm/") else rest).append(item)
    items[:] = slurm + rest
