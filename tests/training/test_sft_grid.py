"""The sft experiment's settings are checked when a grid is loaded; the shipped grids validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.enqueue import new_jobs
from harness.grid import GridFileError, load, parse

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _problems(text: str) -> str:
    with pytest.raises(GridFileError) as caught:
        parse(text, "g.yaml")
    return str(caught.value)


def test_unknown_model_is_a_grid_error_naming_the_known_ones():
    message = _problems("name: x\nexperiment: sft\naxes: {model: [gpt-17]}\n")
    assert "unknown model 'gpt-17'" in message and "tiny-gpt2" in message and "EleutherAI/pythia-410m" in message


def test_bad_values_are_all_reported_at_once():
    message = _problems("name: x\nexperiment: sft\naxes: {norm: [batchnorm], peft: [prefix]}\n")
    assert "axes.norm[0]" in message and "axes.peft[0]" in message


def test_full_method_needs_full_strategy():
    message = _problems("name: x\nexperiment: sft\naxes: {peft: [lora, full], strategy: [frozen, full]}\n")
    assert "peft 'full' trains every parameter" in message and "'peft': 'full', 'strategy': 'frozen'" in message


def test_local_model_directory_is_accepted(tmp_path, tiny_cache):
    from harness.models import tiny

    path = tiny.ensure("tiny-pythia", tiny_cache)
    grid = parse(f"name: x\nexperiment: sft\naxes: {{model: ['{path}']}}\n")
    assert [c.spec["model"] for c in grid.cells()] == [str(path)]


def test_demo_grid_covers_every_norm_method_and_strategy():
    grid = load(ROOT / "grids" / "demo.yaml")
    specs = [job.spec for job in new_jobs(grid) if job.experiment == "sft"]
    assert grid.experiment == "sft"
    assert {s["norm"] for s in specs} == {"layernorm", "dyt", "rmsnorm", "none"}
    assert {s["peft"] for s in specs} == {"lora", "ia3", "full"}
    assert {s["strategy"] for s in specs} == {"frozen", "selective", "full"}
    assert {s["model"] for s in specs} == {"tiny-gpt2", "tiny-pythia", "tiny-t5"}
    assert any(s["dyt_calibrate"] for s in specs) and {s["activation"] for s in specs} >= {"gelu", "relu"}
