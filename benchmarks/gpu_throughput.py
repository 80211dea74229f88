"""Training throughput on an accelerator: tokens/s, MFU, and what bf16, packing and
torch.compile each buy, for a DistilGPT2-sized and a Pythia-410m-sized model; plus the
harness overhead (a gridlab worker vs a bare Trainer script) on the same hardware.

Every run is one ``sft`` cell run exactly as a user's grid runs it: a fresh process, a fresh
SQLite queue, ``jobs.pool.worker_main`` claiming the cell, the model loaded by
``harness.models.registry.load`` from a local ``save_pretrained`` directory, the Alpaca loader
reading a JSONL file, transformers' Trainer with gridlab's callback writing every step's
figures to the database. Nothing here is CUDA-specific: the same code runs on the CPU
(``--smoke``), which is how it is tested.

The models have random weights built from the real configurations (throughput does not
depend on the weights) and a locally trained tokenizer; the data are Alpaca-form records whose
lengths spread like instruction data (most short, a long tail up to ``--max-length``), so
padding wastes a realistic share of each padded batch.

Figures, per variant, from the per-step metrics after ``--warmup`` steps (compilation and
allocator warm-up excluded), medians:
- tokens/s: real (non-pad) tokens per second of optimizer step, as the worker logs them;
- MFU: tokens/s x model FLOPs per token / the accelerator's peak dense bf16 FLOP/s, with FLOPs
  per token = 6 N + 12 L d T (N the weights of every matrix product, the output projection
  included; L layers, d width, T the mean example length: PaLM's appendix B); pad tokens do
  no useful work, so they are not counted;
- peak memory: ``torch.cuda.max_memory_allocated`` (peak RSS on the CPU).

    python -m benchmarks.gpu_throughput                 # both models, every variant, overhead pair
    python -m benchmarks.gpu_throughput --smoke         # tiny sizes, a few steps: checks the plumbing on a CPU
    python -m benchmarks.gpu_throughput --out results.json --models distilgpt2-size
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness_overhead import bench_env, run_bare, run_worker

#: Random-weight stand-ins built from the real models' configurations.
MODELS = {
    "distilgpt2-size": ("GPT2Config", "GPT2LMHeadModel",
                        {"n_layer": 6, "n_embd": 768, "n_head": 12, "n_positions": 1024, "vocab_size": 50257}),
    "pythia-410m-size": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
                         {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                          "intermediate_size": 4096, "rotary_pct": 0.25, "max_position_embeddings": 2048,
                          "use_parallel_residual": True, "vocab_size": 50304}),
}
#: Tiny shapes with the same code paths, for ``--smoke`` on a CPU.
SMOKE_SHAPES = {
    "distilgpt2-size": {"n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 256, "vocab_size": 1024},
    "pythia-410m-size": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                         "intermediate_size": 256, "rotary_pct": 0.25, "max_position_embeddings": 256,
                         "use_parallel_residual": True, "vocab_size": 1024},
}
#: name -> (bf16, packing, torch_compile)
VARIANTS = {
    "fp32": (False, False, False),
    "bf16": (True, False, False),
    "bf16+packing": (True, True, False),
    "bf16+packing+compile": (True, True, True),
}
#: Peak dense bf16 FLOP/s by device name (vendor data sheets; SXM parts).
PEAK_BF16 = {"H200": 989.4e12, "H100": 989.4e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def build_model(name: str, out: Path, *, smoke: bool) -> Path:
    """Save a random-weight model of ``name``'s configuration and gridlab's locally trained
    tokenizer under ``out`` (as ``save_pretrained`` would), and return the directory."""
    import torch
    import transformers

    from harness.models import tiny

    config_class, model_class, shape = MODELS[name]
    if smoke:
        shape = SMOKE_SHAPES[name]
    tokenizer = tiny.build_tokenizer()
    config = getattr(transformers, config_class)(
        **shape, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = getattr(transformers, model_class)(config)
    target = out / name
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def write_data(path: Path, records: int, seed: int = 0) -> Path:
    """Alpaca-form records of spread-out lengths: each joins 1 to 40 synthetic tasks (drawn
    log-uniformly, so most are short and a few are long), instruction and answer alike."""
    from harness.data import synthetic

    rng = random.Random(seed)
    pool = synthetic.records(4000, seed)
    with path.open("w", encoding="utf-8") as f:
        for _ in range(records):
            k = int(math.exp(rng.uniform(0.0, math.log(40.0))))
            parts = rng.sample(pool, k)
            record = {"instruction": " ".join(p["instruction"] for p in parts),
                      "input": " ; ".join(p["input"] for p in parts if p["input"]),
                      "output": " ; ".join(p["output"] for p in parts)}
            f.write(json.dumps(record) + "\n")
    return path


def flops_per_token(model_dir: Path, mean_length: float) -> tuple[float, int]:
    """(6 N + 12 L d T, N): N counts the weights of every matrix product (linear and GPT-2's
    Conv1D layers, the output projection included, tied or not), not embedding lookups."""
    import torch
    import transformers
    from transformers.pytorch_utils import Conv1D

    with torch.device("meta"):
        config = transformers.AutoConfig.from_pretrained(model_dir)
        model = transformers.AutoModelForCausalLM.from_config(config)
    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, (torch.nn.Linear, Conv1D)))
    layers = getattr(config, "num_hidden_layers", None) or config.n_layer
    width = getattr(config, "hidden_size", None) or config.n_embd
    return 6 * n + 12 * layers * width * mean_length, n


def device_peak(override: float | None) -> tuple[str, float | None]:
    import torch

    if not torch.cuda.is_available():
        return "cpu", override
    name = torch.cuda.get_device_name(0)
    if override:
        return name, override
    return name, next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def steady(points: list[tuple[int, float]], warmup: int) -> float:
    """Median of a per-step metric after the warm-up steps."""
    values = [v for step, v in points if step > warmup] or [v for _, v in points]
    return statistics.median(values)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--warmup", type=int, default=20, help="steps left out of the figures")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--records", type=int, default=4000)
    ap.add_argument("--overhead", default="bf16", help="variant for the worker-vs-bare pair ('' to skip)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak dense bf16 TFLOP/s, if not known by name")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes and few steps: check the plumbing on a CPU")
    ap.add_argument("--out", default=None, help="also write the figures here as JSON")
    args = ap.parse_args(argv)
    if args.smoke:
        args.steps, args.warmup, args.batch_size, args.max_length, args.records = 6, 2, 4, 128, 200
    models = [m for m in args.models.split(",") if m]
    variants = [v for v in args.variants.split(",") if v]
    unknown = [m for m in models if m not in MODELS] + [v for v in variants if v not in VARIANTS]
    if unknown or (args.overhead and args.overhead not in VARIANTS):
        ap.error(f"unknown model or variant: {', '.join(unknown or [args.overhead])}")

    device, peak = device_peak(args.peak_tflops * 1e12 if args.peak_tflops else None)
    env = bench_env(threads=int(os.environ.get("GRIDLAB_BENCH_THREADS", "1")))
    env.setdefault("GRIDLAB_CACHE", str(Path(tempfile.gettempdir()) / "gridlab-bench-cache"))
    print(f"device: {device}; peak bf16 {peak / 1e12:.0f} TFLOP/s" if peak else f"device: {device}; peak unknown (no MFU)")
    import torch
    import transformers

    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}; "
          f"{args.steps} steps (first {args.warmup} left out), batch {args.batch_size}, max_length {args.max_length}",
          flush=True)
    results: dict = {"device": device, "peak_flops": peak, "args": vars(args), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = write_data(work / "data.jsonl", args.records)
        for model in models:
            model_dir = build_model(model, work, smoke=args.smoke)
            base = {"model": str(model_dir), "dataset": "alpaca", "data_path": str(data), "peft": "full",
                    "strategy": "full", "norm": "layernorm", "steps": args.steps, "batch_size": args.batch_size,
                    "max_length": args.max_length, "lr": 1e-4, "validation_share": 0.0, "eval_every": 0,
                    "checkpoint_every": args.steps * 10, "diagnostics": False, "seed": 0,
                    "eval_prompts": "", "eval_lm_tasks": "", "eval_references": 0}
            rows, runs = {}, {}
            for variant in variants:
                bf16, packing, compiled = VARIANTS[variant]
                spec = {**base, "bf16": bf16, "packing": packing, "torch_compile": compiled}
                t0 = time.perf_counter()
                run = runs[variant] = run_worker(spec, work, f"{model}-{variant}", env)
                tokens_s = steady(run["metrics"]["tokens_per_s"], args.warmup)
                step_s = steady(run["metrics"]["step_time_s"], args.warmup)
                memory = max(v for _, v in run["metrics"].get("peak_mem_mib", run["metrics"].get("peak_rss_mib", [(0, 0.0)])))
                mean_len = run["summary"].get("train_tokens_mean", float("nan"))
                fpt, n = flops_per_token(model_dir, mean_len if math.isfinite(mean_len) else args.max_length)
                mfu = tokens_s * fpt / peak if peak else None
                rows[variant] = {"tokens_per_s": tokens_s, "step_s": step_s, "mfu": mfu, "peak_mem_mib": memory,
                                 "matmul_params": n, "flops_per_token": fpt, "mean_example_tokens": mean_len,
                                 "wall_s": time.perf_counter() - t0}
                print(f"  {model:17} {variant:22} {tokens_s:12,.0f} tok/s  {step_s * 1e3:8.1f} ms/step  "
                      + (f"MFU {mfu:6.1%}  " if mfu is not None else "")
                      + f"{memory / 1024:6.2f} GiB  ({rows[variant]['wall_s']:.0f} s)", flush=True)
            results["models"][model] = {"variants": rows}
            if args.overhead:
                bf16, packing, compiled = VARIANTS[args.overhead]
                spec = {**base, "bf16": bf16, "packing": packing, "torch_compile": compiled}
                bare_side = run_bare(spec, work, f"{model}-bare", env)
                # the worker side is the same variant's run above where there was one
                worker_side = runs.get(args.overhead) or run_worker(spec, work, f"{model}-pair", env)
                pair = {"variant": args.overhead, "bare_wall": bare_side["wall"], "bare_train": bare_side["train"],
                        "worker_wall": worker_side["wall"], "worker_train": worker_side["train"]}
                results["models"][model]["overhead"] = pair
                print(f"  {model:17} overhead ({args.overhead}): worker/bare Trainer.train "
                      f"{pair['worker_train'] / pair['bare_train']:.3f} ({pair['worker_train']:.1f} s vs "
                      f"{pair['bare_train']:.1f} s), process {pair['worker_wall'] / pair['bare_wall']:.3f}", flush=True)
    print(table(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return results


def table(results: dict) -> str:
    lines = ["", "| model | variant | tokens/s | ms/step | MFU | peak GiB | tokens/s vs fp32 |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for model, entry in results["models"].items():
        rows = entry["variants"]
        ref = rows.get("fp32", {}).get("tokens_per_s")
        for variant, r in rows.items():
            mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
            ratio = f"{r['tokens_per_s'] / ref:.2f}x" if ref else "-"
            lines.append(f"| {model} | {variant} | {r['tokens_per_s']:,.0f} | {r['step_s'] * 1e3:.1f} | {mfu} | "
                         f"{r['peak_mem_mib'] / 1024:.2f} | {ratio} |")
    for model, entry in results["models"].items():
        if "overhead" in entry:
            o = entry["overhead"]
            lines.append(f"\n{model}, {o['variant']}: worker / bare = {o['worker_train'] / o['bare_train']:.3f} "
                         f"(Trainer.train), {o['worker_wall'] / o['bare_wall']:.3f} (whole process)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
