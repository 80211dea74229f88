"""The bad-input catalogue: mistakes users actually make, one row each.

Every case runs the `gridlab` command as a user would and asserts: exit code 2, ONE
line on stderr that names the problem (and the fix), no traceback, and nothing
written (no database created, an existing one byte-for-byte unchanged).

Adding a case is one row in CASES: (id, files to create, argv, expected substrings).
In argv and file contents, {tmp} is the test's folder and {db} the URL of a gridlab
database that exists already (enqueued with a small grid).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

GOOD = "name: g\nexperiment: tiny_lm\nfixed: {steps: 2}\naxes: {seed: [0, 1]}\n"
SFT = "name: g\nexperiment: sft\nfixed: {{dataset: {fmt}, data_path: '{path}'}}\naxes: {{seed: [0]}}\n"
ALPACA_LINE = '{"instruction": "Say hi.", "input": "", "output": "hi"}\n'
SHAREGPT_LINE = '{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}\n'
BIG_AXIS = "[" + ", ".join(str(i) for i in range(1, 101)) + "]"

# (id, {file: content}, argv, [substrings of the one-line error])
CASES: list[tuple[str, dict[str, str | bytes], list[str], list[str]]] = [
    # --- grid files ---------------------------------------------------------------
    ("yaml-syntax", {"g.yaml": "name: g\naxes:\n  seed: [0, 1\n"}, ["enqueue", "g.yaml"], ["g.yaml: line", "YAML syntax error"]),
    ("yaml-tab-indent", {"g.yaml": "name: g\naxes:\n\tseed: [0]\n"}, ["enqueue", "g.yaml"], ["YAML syntax error"]),
    ("top-level-list", {"g.yaml": "- name: g\n"}, ["enqueue", "g.yaml"], ["expected a mapping of keys"]),
    ("empty-file", {"g.yaml": ""}, ["enqueue", "g.yaml"], ["expected a mapping of keys"]),
    ("missing-file", {}, ["enqueue", "nope.yaml"], ["nope.yaml: file not found"]),
    ("grid-is-a-folder", {"d/x": ""}, ["enqueue", "d"], ["is a directory", "gridlab enqueue --help"]),
    ("unknown-command", {}, ["enqeue", "g.yaml"], ["No such command", "gridlab --help"]),
    ("bad-option-value", {}, ["work", "--workers", "0"], ["--workers", "gridlab work --help"]),
    ("not-utf8", {"g.yaml": b"name: \xff\xfe\n"}, ["enqueue", "g.yaml"], ["not a UTF-8 text file"]),
    ("unknown-top-key", {"g.yaml": GOOD + "axis: {lr: [0.1]}\n"}, ["enqueue", "g.yaml"], ["unknown key 'axis'", "valid keys: name"]),
    ("missing-name", {"g.yaml": "axes: {seed: [0]}\n"}, ["enqueue", "g.yaml"], ["name: required"]),
    ("unknown-experiment", {"g.yaml": "name: g\nexperiment: train_gpt5\naxes: {seed: [0]}\n"}, ["enqueue", "g.yaml"], ["unknown experiment 'train_gpt5'", "known:"]),
    ("unknown-axis", {"g.yaml": "name: g\naxes: {colour: [red]}\n"}, ["enqueue", "g.yaml"], ["axes.colour: unknown setting 'colour'", "valid:"]),
    ("unknown-fixed", {"g.yaml": "name: g\nfixed: {stepz: 3}\naxes: {seed: [0]}\n"}, ["enqueue", "g.yaml"], ["fixed.stepz: unknown setting"]),
    ("unknown-model", {"g.yaml": "name: g\naxes: {model: [gpt-17]}\n"}, ["enqueue", "g.yaml"], ["axes.model[0]: 'gpt-17' is not one of"]),
    ("wrong-type-number", {"g.yaml": "name: g\naxes: {lr: [fast]}\n"}, ["enqueue", "g.yaml"], ["axes.lr[0]: expected a number, got 'fast'"]),
    ("wrong-type-int", {"g.yaml": "name: g\naxes: {steps: [2.5]}\n"}, ["enqueue", "g.yaml"], ["axes.steps[0]: expected an integer"]),
    ("wrong-type-bool-as-int", {"g.yaml": "name: g\naxes: {seed: [true]}\n"}, ["enqueue", "g.yaml"], ["axes.seed[0]: expected int"]),
    ("negative-lr", {"g.yaml": "name: g\naxes: {lr: [-0.1]}\n"}, ["enqueue", "g.yaml"], ["must be at least 0.0"]),
    ("empty-axis", {"g.yaml": "name: g\naxes: {seed: []}\n"}, ["enqueue", "g.yaml"], ["axes.seed: an axis needs at least one value"]),
    ("nested-axis-value", {"g.yaml": "name: g\naxes: {seed: [{a: 1}]}\n"}, ["enqueue", "g.yaml"], ["values must be plain"]),
    ("repeated-axis-value", {"g.yaml": "name: g\naxes: {seed: [1, 1]}\n"}, ["enqueue", "g.yaml"], ["axes.seed: repeats a value"]),
    ("axes-not-mapping", {"g.yaml": "name: g\naxes: [seed]\n"}, ["enqueue", "g.yaml"], ["axes: expected a mapping"]),
    ("fixed-and-axis", {"g.yaml": "name: g\nfixed: {seed: 1}\naxes: {seed: [0]}\n"}, ["enqueue", "g.yaml"], ["both fixed and an axis"]),
    ("zip-unequal", {"g.yaml": "name: g\nzip: [{seed: [0, 1], lr: [0.1]}]\n"}, ["enqueue", "g.yaml"], ["zip[0]: lists must have equal lengths"]),
    ("zip-overlaps-axis", {"g.yaml": "name: g\naxes: {seed: [0]}\nzip: [{seed: [1], lr: [0.1]}]\n"}, ["enqueue", "g.yaml"], ["already set elsewhere"]),
    ("exclude-unknown-axis", {"g.yaml": GOOD + "exclude: [{norm: dyt}]\n"}, ["enqueue", "g.yaml"], ["exclude[0].norm: not an axis"]),
    ("exclude-unknown-value", {"g.yaml": GOOD + "exclude: [{seed: 7}]\n"}, ["enqueue", "g.yaml"], ["exclude[0].seed: 7 is not a value of axis seed"]),
    ("exclude-everything", {"g.yaml": GOOD + "exclude: [{seed: [0, 1]}]\n"}, ["enqueue", "g.yaml"], ["remove every cell"]),
    ("include-unknown-key", {"g.yaml": GOOD + "include: [{colour: red}]\n"}, ["enqueue", "g.yaml"], ["include[0].colour: unknown setting"]),
    ("retry-unknown-key", {"g.yaml": GOOD + "retry: {tries: 3}\n"}, ["enqueue", "g.yaml"], ["retry.tries: unknown key", "max_attempts"]),
    ("retry-zero-attempts", {"g.yaml": GOOD + "retry: {max_attempts: 0}\n"}, ["enqueue", "g.yaml"], ["retry.max_attempts: expected an integer >= 1"]),
    ("no-axes", {"g.yaml": "name: g\nfixed: {steps: 2}\n"}, ["enqueue", "g.yaml"], ["nothing to run"]),
    ("ten-million-cells", {"g.yaml": f"name: g\naxes:\n  seed: {BIG_AXIS}\n  steps: {BIG_AXIS}\n  batch_size: {BIG_AXIS}\n  eval_batches: {BIG_AXIS}\n"},
     ["enqueue", "g.yaml"], ["100,000,000 cells", "pass --yes"]),
    ("several-problems-at-once", {"g.yaml": "name: g\naxes: {lr: [fast], colour: [red]}\nbogus: 1\n"}, ["enqueue", "g.yaml"],
     ["3 problems", "unknown key 'bogus'", "axes.lr[0]", "axes.colour"]),
    # --- data files (an sft grid reads its local data file at enqueue time) --------------
    ("data-truncated-json", {"d.json": '[{"instruction": "a", "output": "b"}, {"instruction": "c", "outp', "g.yaml": SFT.format(fmt="alpaca", path="d.json")},
     ["enqueue", "g.yaml"], ["d.json"]),
    ("data-wrong-schema", {"d.jsonl": '{"text": "no instruction here"}\n' * 20, "g.yaml": SFT.format(fmt="alpaca", path="d.jsonl")},
     ["enqueue", "g.yaml"], ["d.jsonl", "20 skipped"]),
    ("data-empty", {"d.jsonl": "", "g.yaml": SFT.format(fmt="alpaca", path="d.jsonl")}, ["enqueue", "g.yaml"], ["d.jsonl"]),
    ("data-binary", {"d.jsonl": bytes(range(256)) * 8, "g.yaml": SFT.format(fmt="alpaca", path="d.jsonl")}, ["enqueue", "g.yaml"], ["d.jsonl"]),
    ("data-mixed-formats", {"d.jsonl": ALPACA_LINE * 5 + SHAREGPT_LINE * 5, "g.yaml": SFT.format(fmt="alpaca", path="d.jsonl")},
     ["enqueue", "g.yaml"], ["d.jsonl: 5 of 10 records used, 5 skipped", "max_bad_share"]),
    ("data-corrupted-lines", {"d.jsonl": ALPACA_LINE * 6 + '{"instruction": "cut\n' * 4, "g.yaml": SFT.format(fmt="alpaca", path="d.jsonl")},
     ["enqueue", "g.yaml"], ["d.jsonl: 6 of 10 records used, 4 skipped", "line 7"]),
    ("data-missing-file", {"g.yaml": SFT.format(fmt="alpaca", path="./nope.jsonl")}, ["enqueue", "g.yaml"], ["no file at ./nope.jsonl"]),
    # --- models ---------------------------------------------------------------------------
    ("model-unknown-name", {"g.yaml": "name: g\nexperiment: sft\naxes: {model: [gpt-17]}\n"}, ["enqueue", "g.yaml"], ["gpt-17"]),
    ("model-path-without-weights", {"m/README": "empty", "g.yaml": "name: g\nexperiment: sft\naxes: {model: ['{tmp}/m']}\n"},
     ["enqueue", "g.yaml"], ["m"]),
    # --- PairRM judge -------------------------------------------------------------------------
    ("ranker-path-wrong", {"g.yaml": "name: g\nexperiment: sft\naxes: {norm: [dyt, layernorm]}\ncompare: {norm: [dyt, layernorm]}\n"
                                      "judge: {ranker: /nonexistent/PairRM}\n"}, ["enqueue", "g.yaml"], ["no PairRM ranker directory at /nonexistent/PairRM"]),
    # --- Slurm ------------------------------------------------------------------------------
    ("sbatch-missing", {}, ["launch", "--executor", "slurm", "--workers", "1", "--db", "{db}"], ["no Slurm here", "--executor local"]),
    # --- databases ------------------------------------------------------------------
    ("db-unreachable-host", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "postgresql://postgres@127.0.0.1:1/gridlab"], ["cannot reach database", "server is running"]),
    ("db-password-not-shown", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "postgresql://alice:hunter2@127.0.0.1:1/gridlab"], ["cannot reach database", "alice:***@"]),
    ("db-wrong-scheme", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "mysql://root@localhost/gridlab"], ["unsupported scheme 'mysql'"]),
    ("db-not-a-url", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "gridlab.db"], ["is not a URL", "sqlite:///"]),
    ("db-sqlite-memory", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "sqlite://"], ["names no file"]),
    ("db-missing-folder", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "sqlite:///{tmp}/no/such/dir/x.db"], ["does not exist"]),
    ("db-read-only-fs", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "sqlite:////proc/gridlab.db"], ["cannot open SQLite database", "writable"]),
    ("db-not-sqlite-file", {"g.yaml": GOOD, "junk.db": b"\x00\x01garbage" * 200}, ["enqueue", "g.yaml", "--db", "sqlite:///{tmp}/junk.db"], ["is not a SQLite database"]),
    ("db-foreign-tables", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "sqlite:///{tmp}/foreign.db"], ["holds tables gridlab did not make"]),
    ("db-newer-schema", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "sqlite:///{tmp}/newer.db"], ["made by a newer gridlab", "upgrade gridlab"]),
    ("status-no-database", {}, ["status"], ["no database at gridlab.db", "gridlab enqueue"]),
    # --- operator commands --------------------------------------------------------------
    ("cancel-without-selection", {}, ["cancel", "--db", "{db}"], ["no jobs selected"]),
    ("retry-unknown-grid", {}, ["retry", "--grid", "nope", "--db", "{db}"], ["no grid named 'nope'", "known grids: g"]),
    ("cancel-bad-where", {}, ["cancel", "--where", "seed", "--db", "{db}"], ["--where 'seed' is not KEY=VALUE"]),
    ("show-unknown-job", {}, ["show", "999", "--db", "{db}"], ["no job with id 999"]),
]


def _gridlab(argv: list[str], cwd: Path, *, no_slurm: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GRIDLAB_DB"}
    if no_slurm:  # a machine without Slurm's commands: drop the folders that hold sbatch
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                      if not (Path(p) / "sbatch").exists())
    return subprocess.run([sys.executable, "-m", "harness.cli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def existing_db(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("existing")
    (folder / "g.yaml").write_text(GOOD)
    url = f"sqlite:///{folder / 'gridlab.db'}"
    r = _gridlab(["enqueue", "g.yaml", "--db", url], folder)
    assert r.returncode == 0, r.stderr
    return url


def _prepare(case_id: str, tmp: Path) -> None:
    """Databases some cases need, made before the snapshot."""
    import sqlite3

    if case_id == "db-foreign-tables":
        with sqlite3.connect(tmp / "foreign.db") as conn:
            conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    if case_id == "db-newer-schema":
        from db import engine as db_engine
        from db import schema

        eng = db_engine.create(f"sqlite:///{tmp / 'newer.db'}")
        schema.upgrade(eng)
        with eng.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
        eng.dispose()


def test_catalogue_has_at_least_forty_cases():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("case_id", "files", "argv", "needles"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(case_id, files, argv, needles, tmp_path, existing_db):
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("{tmp}", str(tmp_path)))
    _prepare(case_id, tmp_path)
    existing_path = Path(existing_db.removeprefix("sqlite:///"))
    before, before_existing = _snapshot(tmp_path), _snapshot(existing_path.parent)
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{db}", existing_db) for a in argv]

    r = _gridlab(argv, tmp_path, no_slurm=case_id == "sbatch-missing")

    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("gridlab: error: ") and "Traceback" not in r.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert _snapshot(tmp_path) == before, "a failed command must not write anything"
    assert _snapshot(existing_path.parent) == before_existing
