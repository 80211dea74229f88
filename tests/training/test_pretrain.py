"""The pretrain experiment: a causal LM from scratch on the corpus every clone has, its probes
(attention entropy and NaN counts per layer and head on training batches, one row per layer and
step), a divergence probed before the job ends, and the testbed it publishes for sft grids."""

from __future__ import annotations

import json

import pytest

from db import views
from db.session import scope
from harness.models import pretrained, registry
from harness.training import attention_log
from jobs import reports, states
from tests.support.results import metrics_of, run_dir, summaries_of
from tests.training.conftest import THIRD_PARTY_WARNINGS

pytestmark = [pytest.mark.unit, *THIRD_PARTY_WARNINGS]

SMALL = {"corpus": "synthetic", "corpus_chars": 60_000, "layers": 2, "hidden": 32, "heads": 2, "batch_size": 4,
         "seq_len": 32, "eval_batches": 2, "warmup_steps": 2}


def _grid(name: str, **settings) -> str:
    fixed = {**SMALL, **settings}
    return f"name: {name}\nexperiment: pretrain\nfixed: {json.dumps(fixed)}\naxes: {{activation: [relu]}}\n"


def _job(queue):
    (job,) = reports.jobs(queue.engine)
    return job


def test_pretrain_logs_curves_probes_and_an_attention_log(run_grid, tmp_path):
    queue = run_grid(_grid("pt", steps=12, entropy_every=5, eval_every=6, checkpoint_every=6, log_every=3,
                           block_norms="none"))
    job = _job(queue)
    assert job.state == states.SUCCEEDED, job
    names = {p.name for p in metrics_of(queue, job.id)}
    assert {"loss", "token_accuracy", "grad_norm", "val_loss", "val_perplexity", "val_token_accuracy",
            "attn_entropy_norm/L0", "attn_entropy/L1", "attn_nan"} <= names
    assert not any(".H" in n for n in names)  # heads live in the attention log, not in metric names
    summary = summaries_of(queue, job.id)
    assert summary["block_norms_removed"] == 4 and summary["steps"] == 12
    assert summary["attention_log_rows"] == 2 * 3  # 2 layers x probes at steps 1, 5, 10
    folder = run_dir(queue, tmp_path / "runs", job.id)
    rows = attention_log.read(folder / attention_log.FILE)
    assert [(r["step"], r["layer"]) for r in rows] == [(1, 0), (1, 1), (5, 0), (5, 1), (10, 0), (10, 1)]
    assert all(len(r["entropy_norm"]) == 2 and len(r["nan"]) == 2 for r in rows)
    assert (folder / attention_log.HEATMAP).is_file()
    # the same rows in the database, for the dashboard's heatmap
    with scope(queue.engine, write=False) as conn:
        stored = [row for layer in (0, 1) for row in views.attention_of_layer(conn, job.id, layer)]
        assert [r.layer for r in views.attention_at_last_step(conn, job.id)] == [0, 1]
    assert sorted((r.step, r.layer, list(r.entropy_norm), list(r.nan)) for r in stored) == \
        [(r["step"], r["layer"], r["entropy_norm"], r["nan"]) for r in rows]


def test_a_non_finite_loss_is_probed_per_layer_and_ends_the_job_diverged(run_grid):
    queue = run_grid(_grid("boom", steps=40, lr=1.0e4, max_grad_norm=0.0, entropy_every=0, block_norms="none",
                           final_norm="none", fp16=True, warmup_steps=0))
    job = _job(queue)
    assert job.state == states.DIVERGED, job
    summary = summaries_of(queue, job.id)
    assert summary["diverged_step"] >= 1
    names = {p.name for p in metrics_of(queue, job.id)}
    assert any(n.startswith("diverged/nonfinite/transformer.h.") for n in names)
    assert "diverged/attn_nan" in names


def test_publish_needs_the_testbed_recipe():
    from harness.experiments import pretrain
    from harness.params import resolve

    spec = resolve(pretrain.PARAMS, {"publish": True, "steps": 10})
    assert "steps" in pretrain.check_spec(spec)
    assert pretrain.check_spec(resolve(pretrain.PARAMS, {"publish": True})) is None


@pytest.fixture
def small_testbed(monkeypatch):
    """The testbed recipe cut down to seconds, for the registry and publish tests."""
    real = pretrained.recipe

    def small(name):
        return {**real(name), **SMALL, "steps": 6}

    monkeypatch.setattr(pretrained, "recipe", small)
    return small


def test_a_testbed_name_is_pretrained_once_and_loads_in_float32(small_testbed, tmp_path, monkeypatch):
    import torch

    name = "gridlab/tiny-pythia-pretrained"
    assert registry.family_of(name).name == "gpt_neox" and name in registry.known_names()
    loaded = registry.load(name, cache_dir=tmp_path)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    info = json.loads((pretrained.path(name, tmp_path) / pretrained.INFO_FILE).read_text())
    assert info["recipe"]["model"] == "tiny-pythia" and len(info["corpus_sha256"]) == 64 and "val_loss" in info

    from harness.training import causal_lm

    monkeypatch.setattr(causal_lm, "train_offline", lambda spec: pytest.fail("built twice"))
    registry.load(name, cache_dir=tmp_path)


def test_a_pretrain_job_publishes_the_testbed_model(small_testbed, run_grid, tiny_cache):
    name = "gridlab/tiny-gpt2-pretrained"
    recipe = small_testbed(name)
    fixed = {k: v for k, v in recipe.items() if k != "model"}
    text = (f"name: pub\nexperiment: pretrain\nfixed: {json.dumps({**fixed, 'publish': True, 'entropy_every': 0})}\n"
            "axes: {model: [tiny-gpt2]}\n")
    queue = run_grid(text)
    job = _job(queue)
    assert job.state == states.SUCCEEDED, job
    assert summaries_of(queue, job.id)["published"] == 1.0
    assert pretrained.is_built(name, tiny_cache)
