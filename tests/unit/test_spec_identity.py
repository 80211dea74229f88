"""A grid cell's identity (its spec hash) survives gridlab upgrades.

Re-enqueueing an unchanged grid file after an upgrade must add nothing. The golden file holds
two grid files and their cells' hashes as gridlab wrote them at commit b42c49e, before the sft
experiment had the settings ``packing`` and ``torch_compile``; a setting added since is
*neutral* (harness.params): at its default it stays out of the stored spec and the hash.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import experiments
from harness.enqueue import new_jobs
from harness.grid import parse
from harness.params import resolve

pytestmark = pytest.mark.unit

GOLDEN = json.loads((Path(__file__).parent / "golden" / "spec_hashes_b42c49e.json").read_text())


@pytest.mark.parametrize("name", sorted(GOLDEN["grids"]))
def test_cells_keep_the_hashes_an_older_gridlab_gave_them(name):
    entry = GOLDEN["grids"][name]
    assert [job.spec_hash for job in new_jobs(parse(entry["grid"], name))] == entry["spec_hashes"]


def test_a_neutral_setting_at_its_default_leaves_the_hash_alone_and_changes_it_otherwise():
    base = "name: g\nexperiment: sft\nfixed: {steps: 4%s}\naxes: {seed: [0, 1]}\n"
    plain = [c.spec_hash for c in parse(base % "").cells()]
    assert [c.spec_hash for c in parse(base % ", packing: false").cells()] == plain
    packed = list(parse(base % ", packing: true").cells())
    assert all(c.spec["packing"] is True for c in packed)
    assert not set(c.spec_hash for c in packed) & set(plain)


@pytest.mark.parametrize("setting", ["ranks: 1", "parallelism: ddp"])
def test_the_ranks_settings_at_their_defaults_leave_the_hash_alone(setting):
    base = "name: g\nexperiment: sft\nfixed: {steps: 4%s}\naxes: {seed: [0, 1]}\n"
    assert [c.spec_hash for c in parse(base % f", {setting}").cells()] == [c.spec_hash for c in parse(base % "").cells()]
    spread = list(parse(base % ", ranks: 2").cells())
    assert all(c.spec["ranks"] == 2 for c in spread)
    assert not {c.spec_hash for c in spread} & {c.spec_hash for c in parse(base % "").cells()}


def test_a_stored_spec_without_newer_settings_runs_with_their_defaults():
    """A job enqueued before packing existed (or at its default) is complete when it runs."""
    sft = experiments.load("sft")
    (cell, _) = parse("name: g\nexperiment: sft\naxes: {seed: [0, 1]}\n").cells()
    assert "packing" not in cell.spec and "torch_compile" not in cell.spec
    full = resolve(sft.PARAMS, cell.spec)
    assert full["packing"] is False and full["torch_compile"] is False and full["seed"] == 0
    assert full["ranks"] == 1 and full["parallelism"] == "ddp"
    assert sft.check_spec(full) is None
