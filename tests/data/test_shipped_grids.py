"""Every grid file that ships validates as a user would check it (``gridlab enqueue --dry-run``), and
the seed replication grids hold what the seeds ran plus what they lacked."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from harness import enqueue, grid
from tests.support.cli import invoke

ROOT = Path(__file__).resolve().parents[2]
GRIDS = sorted(ROOT.joinpath("grids").glob("*.yaml"))
SHARED_DATA = ROOT / ".." / "shared" / "data"


def _needs_shared_data(path: Path) -> None:
    if "../shared/data/" in path.read_text() and not SHARED_DATA.is_dir():
        pytest.skip(f"{path.name} reads MT-Bench from {SHARED_DATA}, which is not here")


@pytest.mark.e2e
@pytest.mark.parametrize("path", GRIDS, ids=[p.name for p in GRIDS])
def test_every_shipped_grid_passes_a_dry_run(path, tmp_path):
    """``gridlab enqueue GRID --dry-run`` as a user types it, in this process (tests/e2e runs the
    console script itself as a subprocess)."""
    _needs_shared_data(path)
    db = f"sqlite:///{tmp_path / 'dry.db'}"
    done = invoke(["enqueue", str(path.relative_to(ROOT)), "--dry-run", "--db", db], ROOT)
    assert done.code == 0, done.stdout + done.stderr
    assert "dry run: nothing written" in done.stdout and " new" in done.stdout


def _cells(name: str) -> tuple[grid.Grid, list[dict]]:
    path = ROOT / "grids" / name
    _needs_shared_data(path)
    g = grid.load(path)
    return g, [cell.spec for cell in g.cells()]


@pytest.mark.unit
def test_the_seed_grid_runs_the_seeds_conditions_and_the_fix():
    g, specs = _cells("seed_replication.yaml")
    assert {s["model"] for s in specs} == {"distilgpt2", "EleutherAI/pythia-14m", "EleutherAI/pythia-70m",
                                           "EleutherAI/pythia-410m"}
    arms = Counter((s["norm"], s["dyt_alpha"], s["dyt_calibrate"], s["heal"]) for s in specs)
    # LayerNorm kept, DyT at the seeds' fixed alpha swapped at once, DyT calibrated and healed
    assert set(arms) == {("keep", 0.5, False, "instant"), ("dyt", 0.5, False, "instant"), ("dyt", 0.5, True, "layerwise")}
    assert {(s["peft"], s["strategy"]) for s in specs} == {("lora", "frozen"), ("lora", "selective"), ("full", "full")}
    sources = {(s["dataset"], s["data_path"]) for s in specs}
    assert sources == {
        ("alpaca", "tatsu-lab/alpaca"),
        ("sharegpt", "hf://datasets/anon8231489123/ShareGPT_Vicuna_unfiltered/ShareGPT_V3_unfiltered_cleaned_split.json"),
        ("rewild", "nyu-dice-lab/wildchat50m-rewild-sft-385700"),
    }
    assert {s["seed"] for s in specs} == {0, 1, 2} and len(specs) == 4 * 3 * 3 * 3 * 3
    assert all(s["eval_prompts"].endswith("mt_bench_question.jsonl") and s["eval_prompt_limit"] == 0 for s in specs)
    assert all(s["eval_max_new_tokens"] >= 256 for s in specs)
    judges = [job for job in enqueue.new_jobs(g) if job.experiment == "judge"]
    assert len(judges) == 4 * 3 * 3 * 3  # DyT at 0.5 against LayerNorm, per model, strategy, dataset, seed
    assert {(j.spec["value_a"], j.spec["value_b"]) for j in judges} == {("dyt", "keep")}


@pytest.mark.unit
def test_the_peft_study_keeps_each_models_own_norms():
    _, specs = _cells("seed_replication_peft.yaml")
    assert {(s["model"], s["peft"]) for s in specs} == {(m, p) for m in ("gpt2", "t5-small") for p in ("lora", "ia3", "full")}
    assert {s.get("norm", "keep") for s in specs} == {"keep"} and {s["seed"] for s in specs} == {0, 1, 2}


@pytest.mark.unit
def test_the_relu_gelu_arm_is_the_pretrain_experiment_norm_free_and_with_norms():
    g, specs = _cells("seed_replication_relu_gelu.yaml")
    assert g.experiment == "pretrain"
    assert {(s["block_norms"], s["activation"]) for s in specs} == {(b, a) for b in ("none", "keep") for a in ("gelu", "relu")}
    assert {s["block_norms"] for s in specs if s["fp16"]} == {"none"} and len(specs) == 18


@pytest.mark.unit
def test_the_scale_out_grid_gives_pythia_two_gpus_and_lets_distilgpt2_cells_share_one():
    from harness import experiments
    from harness.params import resolve
    from jobs import resources

    g = grid.load(ROOT / "grids" / "scale_out.yaml")
    sft = experiments.load("sft")
    seen = {}
    for job in enqueue.new_jobs(g):
        cls = resources.from_name(job.resource_class)
        ranks = experiments.ranks_for(sft, resolve(sft.PARAMS, job.spec), job.resource_class)
        seen.setdefault((job.spec["model"], job.spec["peft"]), set()).add((cls.gpus, cls.cells(), ranks))
    assert seen == {("EleutherAI/pythia-410m", "full"): {(2, 1, 2)}, ("distilgpt2", "lora"): {(1, 4, 1)}}


@pytest.mark.unit
@pytest.mark.parametrize("name, jobs", [("seed_replication.yaml", 324 + 108), ("seed_replication_peft.yaml", 18),
                                        ("seed_replication_relu_gelu.yaml", 18)])
def test_the_seed_grids_validate_offline(name, jobs, monkeypatch):
    """Validating and expanding a seed grid reads no weights and no data: with the hub switched off,
    every job (cells and judges) still comes out."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    g, _ = _cells(name)
    assert len(enqueue.new_jobs(g)) == jobs
