"""The bad-input catalogue: mistakes users make (and inputs attackers write), one row each.

Every case runs the `gridlab` command as a user would (``harness.cli.main(argv)`` in this
process, which is what the console script calls: ``tests.support.cli.invoke``; a few cases,
one per way an error reaches the user, also run as a real process to show the two agree
and that no traceback reaches a real terminal) and asserts: exit code 2, ONE line on stderr that
names the problem (and the fix), no traceback, nothing on stdout, no password of the
catalogue anywhere in the output, and nothing written (no database created, an existing
one unchanged: its files byte for byte on SQLite, its rows on PostgreSQL, a fresh
PostgreSQL database still without tables).

A case is one row of CASES: (id, files to create, argv, substrings of the error line,
backends). Backends: "none" (no database is reached: run once), "both" (once on SQLite,
once on PostgreSQL), "sqlite" or "postgresql". In argv and file contents, {tmp} is the
case's folder, {db} a gridlab database of the backend that exists already (a small grid
enqueued), {newdb} a new, empty one. PostgreSQL runs skip without a server (fail under
CI=true).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest

from tests.conftest import IN_CI, PG_ADMIN_URL, _pg_admin, pg_unavailable_reason
from tests.support import cli

pytestmark = pytest.mark.e2e

GOOD = "name: g\nexperiment: tiny_lm\nfixed: {steps: 2}\naxes: {seed: [0, 1]}\n"
SFT = "name: g\nexperiment: sft\nfixed: {{dataset: {fmt}, data_path: '{path}'}}\naxes: {{seed: [0]}}\n"
ALPACA_LINE = '{"instruction": "Say hi.", "input": "", "output": "hi"}\n'
SHAREGPT_LINE = '{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}\n'
BIG_AXIS = "[" + ", ".join(str(i) for i in range(1, 101)) + "]"
DEEP_LIST = "name: g\naxes: {seed: " + "[" * 5000 + "]" * 5000 + "}\n"
DEEP_MAP = "name: g\nfixed: " + "{a: " * 3000 + "1" + "}" * 3000 + "\naxes: {seed: [0]}\n"
ALIAS_BOMB = "name: g\n" + "".join(
    f"{k}: &{k} [{', '.join([f'*{prev}' if prev else 'x'] * 10)}]\n"
    for k, prev in zip("abcdefgh", [None, *"abcdefg"])) + "axes: {seed: *h}\n"
#: Passwords the cases put in database URLs: none may appear in any output.
PASSWORDS = ("hunter2", "Qu3ryPa55")
PG_HOST = PG_ADMIN_URL.split("@", 1)[1].split("/", 1)[0]  # 127.0.0.1:5432
NFS_EVERYWHERE = "22 1 0:35 / / rw,relatime shared:1 - nfs4 fs.example.org:/ rw,vers=4.2\n"

# (id, {file: content}, argv, [substrings of the one-line error], backends)
CASES: list[tuple[str, dict[str, str | bytes], list[str], list[str], str]] = [
    # --- grid files ---------------------------------------------------------------
    ("yaml-syntax", {"g.yaml": "name: g\naxes:\n  seed: [0, 1\n"}, ["enqueue", "g.yaml"], ["g.yaml: line 4, column 1: YAML syntax error", "expected ',' or ']', but got '<stream end>'"], "none"),
    ("yaml-tab-indent", {"g.yaml": "name: g\naxes:\n\tseed: [0]\n"}, ["enqueue", "g.yaml"], ["line 3, column 1: YAML syntax error", "found character '\\t'"], "none"),
    ("top-level-list", {"g.yaml": "- name: g\n"}, ["enqueue", "g.yaml"], ["expected a mapping of keys"], "none"),
    ("empty-file", {"g.yaml": ""}, ["enqueue", "g.yaml"], ["g.yaml: expected a mapping of keys"], "none"),
    ("missing-file", {}, ["enqueue", "nope.yaml"], ["nope.yaml: file not found"], "none"),
    ("grid-is-a-folder", {"d/x": ""}, ["enqueue", "d"], ["'d' is a directory", "gridlab enqueue --help"], "none"),
    ("unknown-command", {}, ["enqeue", "g.yaml"], ["No such command 'enqeue'", "gridlab --help"], "none"),
    ("bad-option-value", {}, ["work", "--workers", "0"], ["--workers", "0 is not in the range", "gridlab work --help"], "none"),
    ("not-utf8", {"g.yaml": b"name: \xff\xfe\n"}, ["enqueue", "g.yaml"], ["g.yaml: is not a UTF-8 text file"], "none"),
    ("unknown-top-key", {"g.yaml": GOOD + "axis: {lr: [0.1]}\n"}, ["enqueue", "g.yaml"], ["unknown key 'axis'", "valid keys: name"], "none"),
    ("missing-name", {"g.yaml": "axes: {seed: [0]}\n"}, ["enqueue", "g.yaml"], ["name: required"], "none"),
    ("unknown-experiment", {"g.yaml": "name: g\nexperiment: train_gpt5\naxes: {seed: [0]}\n"}, ["enqueue", "g.yaml"], ["unknown experiment 'train_gpt5'", "(known: generate, judge, pretrain, sft, tiny_lm)"], "none"),
    ("unknown-axis", {"g.yaml": "name: g\naxes: {colour: [red]}\n"}, ["enqueue", "g.yaml"], ["axes.colour: unknown setting 'colour'", "(valid: model, activation, lr"], "none"),
    ("unknown-fixed", {"g.yaml": "name: g\nfixed: {stepz: 3}\naxes: {seed: [0]}\n"}, ["enqueue", "g.yaml"], ["fixed.stepz: unknown setting"], "none"),
    ("unknown-model", {"g.yaml": "name: g\naxes: {model: [gpt-17]}\n"}, ["enqueue", "g.yaml"], ["axes.model[0]: 'gpt-17' is not one of"], "none"),
    ("wrong-type-number", {"g.yaml": "name: g\naxes: {lr: [fast]}\n"}, ["enqueue", "g.yaml"], ["axes.lr[0]: expected a number, got 'fast'"], "none"),
    ("wrong-type-int", {"g.yaml": "name: g\naxes: {steps: [2.5]}\n"}, ["enqueue", "g.yaml"], ["axes.steps[0]: expected an integer"], "none"),
    ("wrong-type-bool-as-int", {"g.yaml": "name: g\naxes: {seed: [true]}\n"}, ["enqueue", "g.yaml"], ["axes.seed[0]: expected int"], "none"),
    ("negative-lr", {"g.yaml": "name: g\naxes: {lr: [-0.1]}\n"}, ["enqueue", "g.yaml"], ["axes.lr[0]: must be at least 0.0"], "none"),
    ("empty-axis", {"g.yaml": "name: g\naxes: {seed: []}\n"}, ["enqueue", "g.yaml"], ["axes.seed: an axis needs at least one value"], "none"),
    ("nested-axis-value", {"g.yaml": "name: g\naxes: {seed: [{a: 1}]}\n"}, ["enqueue", "g.yaml"], ["axes.seed[0]: values must be plain"], "none"),
    ("repeated-axis-value", {"g.yaml": "name: g\naxes: {seed: [1, 1]}\n"}, ["enqueue", "g.yaml"], ["axes.seed: repeats a value"], "none"),
    ("axes-not-mapping", {"g.yaml": "name: g\naxes: [seed]\n"}, ["enqueue", "g.yaml"], ["axes: expected a mapping"], "none"),
    ("fixed-and-axis", {"g.yaml": "name: g\nfixed: {seed: 1}\naxes: {seed: [0]}\n"}, ["enqueue", "g.yaml"], ["axes.seed: 'seed' is both fixed and an axis"], "none"),
    ("zip-unequal", {"g.yaml": "name: g\nzip: [{seed: [0, 1], lr: [0.1]}]\n"}, ["enqueue", "g.yaml"], ["zip[0]: lists must have equal lengths"], "none"),
    ("zip-overlaps-axis", {"g.yaml": "name: g\naxes: {seed: [0]}\nzip: [{seed: [1], lr: [0.1]}]\n"}, ["enqueue", "g.yaml"], ["zip[0].seed: 'seed' is already set elsewhere"], "none"),
    ("exclude-unknown-axis", {"g.yaml": GOOD + "exclude: [{norm: dyt}]\n"}, ["enqueue", "g.yaml"], ["exclude[0].norm: not an axis"], "none"),
    ("exclude-unknown-value", {"g.yaml": GOOD + "exclude: [{seed: 7}]\n"}, ["enqueue", "g.yaml"], ["exclude[0].seed: 7 is not a value of axis seed"], "none"),
    ("exclude-everything", {"g.yaml": GOOD + "exclude: [{seed: [0, 1]}]\n"}, ["enqueue", "g.yaml"], ["the exclusions remove every cell"], "none"),
    ("include-unknown-key", {"g.yaml": GOOD + "include: [{colour: red}]\n"}, ["enqueue", "g.yaml"], ["include[0].colour: unknown setting"], "none"),
    ("retry-unknown-key", {"g.yaml": GOOD + "retry: {tries: 3}\n"}, ["enqueue", "g.yaml"], ["retry.tries: unknown key", "max_attempts"], "none"),
    ("retry-zero-attempts", {"g.yaml": GOOD + "retry: {max_attempts: 0}\n"}, ["enqueue", "g.yaml"], ["retry.max_attempts: expected an integer >= 1"], "none"),
    ("no-axes", {"g.yaml": "name: g\nfixed: {steps: 2}\n"}, ["enqueue", "g.yaml"], ["g.yaml: axes: the grid has no axes and no extra cells"], "none"),
    ("ten-million-cells", {"g.yaml": f"name: g\naxes:\n  seed: {BIG_AXIS}\n  steps: {BIG_AXIS}\n  batch_size: {BIG_AXIS}\n  eval_batches: {BIG_AXIS}\n"},
     ["enqueue", "g.yaml"], ["100,000,000 cells", "pass --yes"], "none"),
    ("several-problems-at-once", {"g.yaml": "name: g\naxes: {lr: [fast], colour: [red]}\nbogus: 1\n"}, ["enqueue", "g.yaml"],
     ["3 problems", "unknown key 'bogus'", "axes.lr[0]", "axes.colour"], "none"),
    # --- data files (an sft grid reads its local data file at enqueue time) --------------
    ("data-truncated-json", {"d.json": '[{"instruction": "a", "output": "b"}, {"instruction": "c", "outp', "g.yaml": SFT.format(fmt="alpaca", path="d.json")},
     ["enqueue", "g.yaml"], ["d.json: 1 of 2 records used, 1 skipped (record 1: invalid JSON", "cut short", "max_bad_share"], "none"),
    ("data-wrong-schema", {"d.jsonl": '{"text": "no instruction here"}\n' * 20, "g.yaml": SFT.format(fmt="alpaca", path="d.jsonl")},
     ["enqueue", "g.yaml"], ["d.jsonl: 0 of 20 records used, 20 skipped", "field 'instruction' is NoneType"], "none"),
    ("data-empty", {"d.jsonl": "", "g.yaml": SFT.format(fmt="alpaca", path="d.jsonl")}, ["enqueue", "g.yaml"], ["d.jsonl: file is empty"], "none"),
    ("data-binary", {"d.jsonl": bytes(range(256)) * 8, "g.yaml": SFT.format(fmt="alpaca", path="d.jsonl")}, ["enqueue", "g.yaml"],
     ["d.jsonl: binary data, not JSON"], "none"),
    ("data-mixed-formats", {"d.jsonl": ALPACA_LINE * 5 + SHAREGPT_LINE * 5, "g.yaml": SFT.format(fmt="alpaca", path="d.jsonl")},
     ["enqueue", "g.yaml"], ["d.jsonl: 5 of 10 records used, 5 skipped", "max_bad_share"], "none"),
    ("data-corrupted-lines", {"d.jsonl": ALPACA_LINE * 6 + '{"instruction": "cut\n' * 4, "g.yaml": SFT.format(fmt="alpaca", path="d.jsonl")},
     ["enqueue", "g.yaml"], ["d.jsonl: 6 of 10 records used, 4 skipped", "(line 7: invalid JSON"], "none"),
    ("data-missing-file", {"g.yaml": SFT.format(fmt="alpaca", path="./nope.jsonl")}, ["enqueue", "g.yaml"], ["no file at ./nope.jsonl"], "none"),
    # --- models ---------------------------------------------------------------------------
    ("model-unknown-name", {"g.yaml": "name: g\nexperiment: sft\naxes: {model: [gpt-17]}\n"}, ["enqueue", "g.yaml"],
     ["axes.model[0]: unknown model 'gpt-17'", "save_pretrained"], "none"),
    ("model-path-without-weights", {"m/README": "empty", "g.yaml": "name: g\nexperiment: sft\naxes: {model: ['{tmp}/m']}\n"},
     ["enqueue", "g.yaml"], ["/m is a directory but holds no config.json"], "none"),
    # --- PairRM judge -------------------------------------------------------------------------
    ("ranker-path-wrong", {"g.yaml": "name: g\nexperiment: sft\naxes: {norm: [dyt, layernorm]}\ncompare: {norm: [dyt, layernorm]}\n"
                                      "judge: {ranker: /nonexistent/PairRM}\n"}, ["enqueue", "g.yaml"], ["no PairRM ranker directory at /nonexistent/PairRM"], "none"),
    # --- Slurm ------------------------------------------------------------------------------
    ("sbatch-missing", {}, ["launch", "--executor", "slurm", "--workers", "1", "--db", "{db}"], ["no Slurm here", "--executor local"], "both"),
    ("slurm-sqlite-network-fs", {}, ["launch", "--executor", "slurm", "--workers", "1", "--db", "{db}"],
     ["is on a network filesystem (nfs4)", "use PostgreSQL for Slurm workers"], "sqlite"),
    ("slurm-sqlite-nodes-per-worker", {}, ["launch", "--executor", "slurm", "--sbatch", "nodes=2", "--db", "{db}"],
     ["each worker asks for 2 nodes", "use PostgreSQL for Slurm workers"], "sqlite"),
    ("slurm-sqlite-workers-on-two-nodes", {}, ["launch", "--executor", "slurm", "--workers", "3", "--db", "{db}"],
     ["3 workers may run on 2 nodes (node1, node2)", "use PostgreSQL", "--sbatch nodelist=NODE"], "sqlite"),
    ("env-name-not-set", {}, ["launch", "--executor", "local", "--env", "GRIDLAB_TEST_NEVER_SET", "--db", "{db}"],
     ["--env GRIDLAB_TEST_NEVER_SET: GRIDLAB_TEST_NEVER_SET is not set in this environment"], "sqlite"),
    ("env-not-a-name", {}, ["launch", "--executor", "local", "--env", "1X=y", "--db", "{db}"],
     ["--env '1X' is not a variable name"], "sqlite"),
    # --- databases ------------------------------------------------------------------
    ("db-unreachable-host", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "postgresql://postgres@127.0.0.1:1/gridlab"], ["postgres@127.0.0.1:1/gridlab: connection failed", "Connection refused", "server is running"], "none"),
    ("db-password-not-shown", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "postgresql://alice:hunter2@127.0.0.1:1/gridlab"], ["cannot reach database", "alice:***@"], "none"),
    ("db-password-in-query-not-shown", {"g.yaml": GOOD}, ["status", "--db", "postgresql://alice@127.0.0.1:1/gridlab?password=Qu3ryPa55"],
     ["cannot reach database postgresql+psycopg://alice@127.0.0.1:1/gridlab?password=***"], "none"),
    ("db-password-wrong-scheme", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "mysql://alice:hunter2@localhost/gridlab"], ["unsupported scheme 'mysql'", "alice:***@"], "none"),
    ("db-password-sqlite-query", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "sqlite:///{tmp}/x.db?password=Qu3ryPa55"], ["holds '?'", "password=***"], "none"),
    ("db-password-no-such-database", {}, ["status", "--db", f"postgresql://postgres:hunter2@{PG_HOST}/gridlab_no_such_db"],
     ["cannot reach database postgresql+psycopg://postgres:***@", "gridlab_no_such_db\" does not exist"], "postgresql"),
    ("db-wrong-scheme", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "mysql://root@localhost/gridlab"], ["unsupported scheme 'mysql'"], "none"),
    ("db-not-a-url", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "gridlab.db"], ["is not a URL", "sqlite:///"], "none"),
    ("db-sqlite-memory", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "sqlite://"], ["names no file"], "none"),
    ("db-missing-folder", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "sqlite:///{tmp}/no/such/dir/x.db"], ["/no/such/dir' of SQLite database", "does not exist"], "none"),
    ("db-read-only-fs", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "sqlite:////proc/gridlab.db"], ["cannot open SQLite database", "writable"], "none"),
    ("db-not-sqlite-file", {"g.yaml": GOOD, "junk.db": b"\x00\x01garbage" * 200}, ["enqueue", "g.yaml", "--db", "sqlite:///{tmp}/junk.db"], ["junk.db is not a SQLite database"], "none"),
    ("db-foreign-tables", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "sqlite:///{tmp}/foreign.db"], ["holds tables gridlab did not make (customers)"], "none"),
    ("db-newer-schema", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "sqlite:///{tmp}/newer.db"], ["has schema 9999, made by a newer gridlab", "upgrade gridlab"], "none"),
    ("sqlite-path-with-hash", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "sqlite:///{tmp}/a#b.db"], ["a#b.db' holds '#'", "rename the file"], "none"),
    ("sqlite-path-with-question-mark", {"g.yaml": GOOD}, ["enqueue", "g.yaml", "--db", "sqlite:///{tmp}/a?b.db"], ["a?b.db' holds '?'", "would be cut short"], "none"),
    ("sqlite-url-with-options", {"g.yaml": GOOD}, ["status", "--db", "sqlite:///{tmp}/a.db?mode=ro"], ["a.db?mode=ro' holds '?'", "take no options"], "none"),
    ("status-no-database", {}, ["status"], ["no database at gridlab.db", "gridlab enqueue"], "none"),
    # --- operator commands --------------------------------------------------------------
    ("cancel-without-selection", {}, ["cancel", "--db", "{db}"], ["no jobs selected"], "both"),
    ("retry-unknown-grid", {}, ["retry", "--grid", "nope", "--db", "{db}"], ["no grid named 'nope'", "known grids: g"], "both"),
    ("cancel-bad-where", {}, ["cancel", "--where", "seed", "--db", "{db}"], ["--where 'seed' is not KEY=VALUE"], "both"),
    ("show-unknown-job", {}, ["show", "999", "--db", "{db}"], ["no job with id 999"], "both"),
    ("show-diff-not-recorded", {}, ["show", "1", "--diff", "--db", "{db}"], ["job 1 has no recorded diff", "has not run yet"], "both"),
    # --- Rich markup in names and values (printed as text, or refused; never a traceback) --
    ("markup-grid-name", {"g.yaml": "name: '[/bold]'\naxes: {seed: [0]}\n"}, ["enqueue", "g.yaml", "--db", "{newdb}"],
     ["name: '[/bold]' holds '[' or ']'", "without square brackets"], "both"),
    ("markup-grid-name-closing-tag", {"g.yaml": "name: 'ablation [red]v2'\naxes: {seed: [0]}\n"}, ["enqueue", "g.yaml", "--db", "{newdb}"],
     ["name: 'ablation [red]v2' holds '['"], "both"),
    ("markup-unknown-key", {"g.yaml": GOOD + "'[/bold]': 1\n"}, ["enqueue", "g.yaml", "--db", "{newdb}"], ["unknown key '[/bold]'"], "both"),
    ("markup-axis-value", {"g.yaml": "name: g\naxes: {model: ['[red]x[/red]']}\n"}, ["enqueue", "g.yaml", "--db", "{newdb}"],
     ["axes.model[0]: '[red]x[/red]' is not one of"], "both"),
    ("markup-grid-option", {}, ["retry", "--grid", "[/bold]", "--db", "{db}"], ["no grid named '[/bold]'", "known grids: g"], "both"),
    ("markup-where", {}, ["cancel", "--where", "[/bold]", "--db", "{db}"], ["--where '[/bold]' is not KEY=VALUE"], "both"),
    # --- YAML built to hurt: deep nesting, alias bombs, recursive aliases -------------------
    ("yaml-nested-list-5000-deep", {"g.yaml": DEEP_LIST}, ["enqueue", "g.yaml", "--db", "{newdb}"], ["line 2, column 44: nested more than 32 levels deep"], "both"),
    ("yaml-nested-mapping-3000-deep", {"g.yaml": DEEP_MAP}, ["enqueue", "g.yaml", "--db", "{newdb}"], ["line 2, column 132: nested more than 32 levels deep"], "both"),
    ("yaml-alias-bomb", {"g.yaml": ALIAS_BOMB}, ["enqueue", "g.yaml", "--db", "{newdb}"], ["aliases expand to more than 200,000 values", "alias bomb"], "both"),
    ("yaml-recursive-alias", {"g.yaml": "name: g\naxes: {seed: &a [*a]}\n"}, ["enqueue", "g.yaml", "--db", "{newdb}"], ["recursive alias"], "both"),
    # --- numbers the database cannot hold ----------------------------------------------------
    ("priority-past-64-bits", {"g.yaml": GOOD + "priority: 99999999999999999999\n"}, ["enqueue", "g.yaml", "--db", "{newdb}"],
     ["priority: 99999999999999999999 does not fit in 64 bits"], "both"),
    ("priority-past-32-bits", {"g.yaml": GOOD + "priority: 4294967296\n"}, ["enqueue", "g.yaml", "--db", "{newdb}"],
     ["priority: expected an integer from -2,147,483,647 to 2,147,483,647"], "both"),
    ("axis-value-past-64-bits", {"g.yaml": "name: g\naxes: {seed: [18446744073709551616]}\n"}, ["enqueue", "g.yaml", "--db", "{newdb}"],
     ["axes.seed[0]: 18446744073709551616 does not fit in 64 bits"], "both"),
    ("max-attempts-past-the-bound", {"g.yaml": GOOD + "retry: {max_attempts: 1000000000000}\n"}, ["enqueue", "g.yaml", "--db", "{newdb}"],
     ["retry.max_attempts: at most 1,000,000"], "both"),
    ("job-id-past-64-bits", {}, ["show", "99999999999999999999", "--db", "{db}"], ["Invalid value for 'JOB_ID'", "is not in the range 1<=x<=9223372036854775807"], "both"),
    ("retry-job-ids-past-64-bits", {}, ["retry", "1", "18446744073709551616", "--db", "{db}"], ["Invalid value for '[JOB_IDS]...'", "18446744073709551616 is not in the range"], "both"),
    ("cancel-where-past-64-bits", {}, ["cancel", "--where", "seed=99999999999999999999", "--db", "{db}"],
     ["--where seed: 99999999999999999999 does not fit in 64 bits"], "both"),
    ("max-jobs-past-64-bits", {}, ["work", "--max-jobs", "99999999999999999999", "--db", "{db}"], ["--max-jobs", "is not in the range"], "both"),
    # --- NaN and infinity ----------------------------------------------------------------------
    ("axis-nan", {"g.yaml": "name: g\naxes: {lr: [.nan]}\n"}, ["enqueue", "g.yaml", "--db", "{newdb}"], ["axes.lr[0]: nan is not a finite number"], "both"),
    ("fixed-infinity", {"g.yaml": "name: g\nfixed: {lr: .inf}\naxes: {seed: [0]}\n"}, ["enqueue", "g.yaml", "--db", "{newdb}"], ["fixed.lr: inf is not a finite number"], "both"),
    ("fixed-nan-as-text", {"g.yaml": "name: g\nfixed: {lr: 'nan'}\naxes: {seed: [0]}\n"}, ["enqueue", "g.yaml", "--db", "{newdb}"], ["fixed.lr: expected a finite number, got nan"], "both"),
    ("backoff-nan", {"g.yaml": GOOD + "retry: {backoff_s: .nan}\n"}, ["enqueue", "g.yaml", "--db", "{newdb}"], ["retry.backoff_s: nan is not a finite number"], "both"),
    ("backoff-infinity-as-text", {"g.yaml": GOOD + "retry: {backoff_s: 'inf'}\n"}, ["enqueue", "g.yaml", "--db", "{newdb}"], ["retry.backoff_s: expected a finite number, got inf"], "both"),
    ("backoff-past-a-week", {"g.yaml": GOOD + "retry: {backoff_s: 1.0e+300}\n"}, ["enqueue", "g.yaml", "--db", "{newdb}"], ["retry.backoff_s: at most 604,800 s"], "both"),
    ("heartbeat-nan", {}, ["work", "--heartbeat", "nan", "--db", "{db}"], ["--heartbeat", "'nan' is not a finite number of seconds"], "both"),
    ("heartbeat-infinity-launch", {}, ["launch", "--executor", "local", "--heartbeat", "inf", "--db", "{db}"], ["--heartbeat", "'inf' is not a finite number of seconds"], "both"),
    ("supervise-interval-nan", {}, ["supervise", "--interval", "nan", "--db", "{db}"], ["--interval", "'nan' is not a finite number"], "both"),
    ("cancel-where-nan", {}, ["cancel", "--where", "lr=nan", "--db", "{db}"], ["--where lr: nan is not a finite number"], "both"),
    # --- NUL bytes, lone surrogates, control characters, names past their column ---------------
    ("name-with-nul", {"g.yaml": 'name: "a\\0b"\naxes: {seed: [0]}\n'}, ["enqueue", "g.yaml", "--db", "{newdb}"], ["name: the text holds a NUL byte"], "both"),
    ("value-with-nul", {"g.yaml": 'name: g\naxes: {model: ["tiny\\0gpt2"]}\n'}, ["enqueue", "g.yaml", "--db", "{newdb}"], ["axes.model[0]: the text holds a NUL byte"], "both"),
    ("name-with-lone-surrogate", {"g.yaml": 'name: "a\\ud800b"\naxes: {seed: [0]}\n'}, ["enqueue", "g.yaml", "--db", "{newdb}"], ["name: the text holds a lone surrogate"], "both"),
    ("key-with-lone-surrogate", {"g.yaml": 'name: g\nfixed: {"\\udc80": 1}\naxes: {seed: [0]}\n'}, ["enqueue", "g.yaml", "--db", "{newdb}"], ["'fixed.\\\\udc80': the key holds a lone surrogate"], "both"),
    ("grid-option-lone-surrogate", {}, ["status", "--grid", "a\udcffb", "--db", "{db}"], ["Invalid value for '--grid'", "holds a lone surrogate"], "both"),
    ("where-lone-surrogate", {}, ["cancel", "--where", "seed=\udcff", "--db", "{db}"], ["--where 'seed=\\\\udcff' holds a lone surrogate"], "both"),
    ("name-with-control-characters", {"g.yaml": 'name: "a\\tb"\naxes: {seed: [0]}\n'}, ["enqueue", "g.yaml", "--db", "{newdb}"], ["holds control characters"], "both"),
    ("name-longer-than-its-column", {"g.yaml": "name: " + "x" * 201 + "\naxes: {seed: [0]}\n"}, ["enqueue", "g.yaml", "--db", "{newdb}"],
     ["name: at most 200 characters (the database's column), got 201"], "both"),
]

#: Cases run a second time as a real `python -m harness.cli` process: the in-process
#: runner must give the same result as the command. One per way an error reaches the user:
#: a grid file's (GridlabError before any database), a database's (with a password to hide),
#: one from a database read (markup in stored names), one at the database's rows (a job id),
#: and click's own usage errors.
SUBPROCESS_TOO = ("yaml-syntax", "db-password-not-shown", "markup-grid-name", "show-unknown-job", "unknown-command")


# --- databases ---------------------------------------------------------------------------------


def _pg_url(name: str) -> str:
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def _need_pg() -> None:
    reason = pg_unavailable_reason()
    if reason:
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run, not skip)")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    """backend -> URL of a gridlab database with grid g enqueued (made on first use)."""
    made: dict[str, str] = {}
    pg_names: list[str] = []

    def get(backend: str) -> str:
        if backend not in made:
            folder = tmp_path_factory.mktemp(f"existing-{backend}")
            (folder / "g.yaml").write_text(GOOD)
            if backend == "sqlite":
                url = f"sqlite:///{folder / 'gridlab.db'}"
            else:
                _need_pg()
                name = f"gridlab_test_{uuid.uuid4().hex[:12]}"
                _pg_admin(f'CREATE DATABASE "{name}"')
                pg_names.append(name)
                url = _pg_url(name)
            r = cli.invoke(["enqueue", "g.yaml", "--db", url], folder)
            assert r.code == 0, r.stderr
            made[backend] = url
        return made[backend]

    yield get
    for name in pg_names:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _pg_rows(url: str) -> dict[str, str]:
    """Each table of a PostgreSQL database with a hash of all its rows."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        tables = [t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
        return {t: hashlib.sha256(repr(conn.execute(f'SELECT * FROM "{t}" ORDER BY 1').fetchall()).encode()).hexdigest()
                for t in tables}


def _state(url: str) -> object:
    if url.startswith("sqlite:///"):
        return _files(Path(url.removeprefix("sqlite:///")).parent)
    return _pg_rows(url)


def _prepare(case_id: str, tmp: Path) -> tuple[dict[str, str | None], dict]:
    """Databases some cases need (made before the snapshot), their environment changes and
    the module attributes they patch (in-process only)."""
    import sqlite3

    from slurm import sqlite_safety

    env: dict[str, str | None] = {"GRIDLAB_DB": None}
    patches: dict = {}
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
    if case_id == "sbatch-missing":  # a machine without Slurm's commands
        env["PATH"] = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "sbatch").exists())
    if case_id.startswith("slurm-sqlite-"):  # Slurm's commands present (a stand-in sbatch that must never run)
        bin_dir = tmp.parent / f"{tmp.name}-bin"
        bin_dir.mkdir()
        (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'sbatch must not be called' >&2\nexit 99\n")
        (bin_dir / "sbatch").chmod(0o755)
        env["PATH"] = os.pathsep.join([str(bin_dir), os.environ["PATH"]])
        if case_id == "slurm-sqlite-network-fs":
            mounts = tmp.parent / f"{tmp.name}-mountinfo"
            mounts.write_text(NFS_EVERYWHERE)
            patches[(sqlite_safety, "MOUNTINFO")] = mounts
        if case_id == "slurm-sqlite-workers-on-two-nodes":
            patches[(sqlite_safety, "slurm_nodes")] = lambda settings: ["node1", "node2"]
    return env, patches


def _params():
    out = []
    for case in CASES:
        backends = {"none": ["none"], "both": ["sqlite", "postgresql"]}.get(case[4], [case[4]])
        for b in backends:
            marks = [pytest.mark.postgres] if b == "postgresql" else []
            out.append(pytest.param(*case[:4], b, marks=marks, id=case[0] if b == "none" else f"{case[0]}[{b}]"))
    return out


@pytest.mark.parametrize(("case_id", "files", "argv", "needles", "backend"), _params())
def test_bad_input(case_id, files, argv, needles, backend, tmp_path, existing):
    if backend == "postgresql":
        _need_pg()
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("{tmp}", str(tmp_path)), encoding="utf-8", errors="surrogatepass")
    env, patches = _prepare(case_id, tmp_path)
    db = existing(backend) if any("{db}" in a for a in argv) else None
    new_pg, newdb = None, ""
    if any("{newdb}" in a for a in argv):
        if backend == "postgresql":
            new_pg = f"gridlab_test_{uuid.uuid4().hex[:12]}"
            _pg_admin(f'CREATE DATABASE "{new_pg}"')
            newdb = _pg_url(new_pg)
        else:
            newdb = f"sqlite:///{tmp_path / 'new.db'}"
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{db}", db or "").replace("{newdb}", newdb) for a in argv]
    try:
        before, before_db = _files(tmp_path), _state(db) if db else None
        r = cli.invoke(argv, tmp_path, env, patches)
        check(r, needles)
        _SEEN[case_id] = r.stderr.strip()
        assert _files(tmp_path) == before, "a failed command must not write anything"
        if db:
            assert _state(db) == before_db, "the existing database must be unchanged"
        if new_pg:
            assert _pg_rows(newdb) == {}, "the new PostgreSQL database must still have no tables"
        if case_id in SUBPROCESS_TOO and backend in ("none", "sqlite"):
            again = cli.run(argv, cwd=tmp_path, env=env, timeout=120)
            assert (again.returncode, again.stderr) == (r.code, r.stderr)
    finally:
        if new_pg:
            _pg_admin(f'DROP DATABASE IF EXISTS "{new_pg}" WITH (FORCE)')


def check(r: cli.Run, needles: list[str]) -> None:
    cli.assert_one_line_error(r, *needles)
    assert r.stdout == "", r.stdout
    for secret in PASSWORDS:
        assert secret not in r.stdout + r.stderr, f"password {secret!r} leaked"


#: The error line each case printed (filled by test_bad_input, read by the next test).
_SEEN: dict[str, str] = {}


def test_every_case_names_its_own_problem():
    """A needle that almost any message contains proves nothing. Each case's needles,
    taken together, must not all be found in the error another case printed (cases run
    above, in this session), and none may be shorter than 8 characters."""
    for case_id, _files, _argv, needles, _backends in CASES:
        assert all(len(n) >= 8 for n in needles), (case_id, [n for n in needles if len(n) < 8])
    if len(_SEEN) < 2:
        pytest.skip("needs the catalogue's cases to have run in this session")
    loose = {}
    for case_id, _files, _argv, needles, _backends in CASES:
        also = [other for other, line in _SEEN.items()
                if other != case_id and all(n in line for n in needles) and other not in _FAMILIES.get(case_id, ())]
        if also:
            loose[case_id] = also
    assert not loose, f"these cases' needles also match other cases' errors (make them specific): {loose}"


#: Cases that share their distinctive words on purpose (the same check, another input).
_FAMILIES = {
    "top-level-list": {"empty-file"}, "empty-file": {"top-level-list"},
    "unknown-axis": {"several-problems-at-once"}, "wrong-type-number": {"several-problems-at-once"},
    "db-wrong-scheme": {"db-password-wrong-scheme"},
    "retry-unknown-grid": {"markup-grid-option"},
    "markup-grid-name-closing-tag": {"markup-grid-name"},
}
