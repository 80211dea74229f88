"""The GPU throughput benchmark's plumbing, on the CPU: a GPU machine is lent to this project
only now and then, for minutes, so the script must not first be found broken there.

Its smoke mode runs the same code (random-weight model saved and loaded by the registry, an
Alpaca file through the loader, a worker claiming the cell from a SQLite queue, packing, bf16)
at tiny sizes; the FLOP count is checked against DistilGPT2's shapes worked out by hand.
"""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import gpu_throughput

pytestmark = pytest.mark.e2e


def test_flops_per_token_counts_every_matrix_product(tmp_path):
    import transformers

    _, _, shape = gpu_throughput.MODELS["distilgpt2-size"]
    transformers.GPT2Config(**shape).save_pretrained(tmp_path)
    flops, n = gpu_throughput.flops_per_token(tmp_path, mean_length=100.0)
    d, layers, vocab = 768, 6, 50257
    per_layer = d * 3 * d + d * d + 2 * d * 4 * d  # qkv, attention out, MLP in and out
    assert n == layers * per_layer + vocab * d  # + the (tied) output projection; no embedding lookups
    assert flops == 6 * n + 12 * layers * d * 100.0


def test_smoke_run_measures_a_packed_bf16_cell_through_the_worker(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDLAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "results.json"
    gpu_throughput.main(["--smoke", "--models", "pythia-410m-size", "--variants", "fp32,bf16+packing",
                         "--overhead", "", "--out", str(out)])
    results = json.loads(out.read_text())
    rows = results["models"]["pythia-410m-size"]["variants"]
    assert set(rows) == {"fp32", "bf16+packing"}
    for row in rows.values():
        assert row["tokens_per_s"] > 0 and row["step_s"] > 0 and row["peak_mem_mib"] > 0
        assert math.isfinite(row["mean_example_tokens"]) and 8 < row["mean_example_tokens"] <= 128
        assert row["matmul_params"] > 0
