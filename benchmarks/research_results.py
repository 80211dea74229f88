"""The tables of RESULTS.md, read from a results database: means and 95% intervals over seeds.

    python -m benchmarks.research_results seed_miniature [--db URL]
    python -m benchmarks.research_results relu_gelu_miniature [--db URL]

prints Markdown. Intervals are Student-t intervals over the seeds of a cell group (n - 1 degrees
of freedom; "n/a" for a single seed); a gap between two arms is computed per seed (the arms share
their seed: the same data split, order and adapter initialisation) and its interval is over
those paired gaps. The intervals are :func:`db.stats.mean_interval`'s, the one implementation
``gridlab report`` (which prints the Key Results of any grid with a norm factor, with paired t tests),
``gridlab compare`` and the dashboard use.

It reads through the queue's API (``Queue.summaries``) and writes nothing.
"""

from __future__ import annotations

import argparse
import math
import os
from collections import defaultdict

from db import stats

SEED_ARMS = {  # (norm, dyt_calibrate, heal) -> arm name, in table order
    ("keep", False, "instant"): "LayerNorm (kept)",
    ("dyt", False, "instant"): "DyT, alpha 0.5",
    ("dyt", True, "instant"): "DyT calibrated",
    ("dyt", True, "layerwise"): "DyT healed",
    ("none", False, "instant"): "no norm",
}
STRATEGIES = {("lora", "frozen"): "LoRA frozen", ("lora", "selective"): "LoRA + norms", ("full", "full"): "full SFT"}


def interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high) of the 95% t interval (db.stats); low and high are NaN with fewer than two values."""
    found = stats.mean_interval(v for v in values if v is not None)
    return found.mean, found.low, found.high


def fmt(values: list[float], digits: int = 3, suffix: str = "") -> str:
    mean, low, high = interval(values)
    if math.isnan(mean):
        return "n/a"
    if math.isnan(low):
        return f"{mean:.{digits}f}{suffix} (n=1)"
    return f"{mean:.{digits}f}{suffix} [{low:.{digits}f}, {high:.{digits}f}]"


def _jobs(queue, grid: str) -> dict[int, dict]:
    """job id -> {"factors" (the cell's whole spec: fixed settings and factors), "state", "summary"}."""
    from jobs import reports

    jobs: dict[int, dict] = {}
    for record in reports.jobs(queue.engine, grid=grid):
        spec = reports.job(queue.engine, record.id).spec  # the listing has the factors only; the fixed settings are in the spec
        jobs[record.id] = {"factors": {**spec, **record.factors}, "state": record.state, "summary": {}}
    for row in reports.summaries(queue.engine, grid):
        jobs[row.id]["summary"][row.name] = row.value
    return jobs


def seed_miniature(queue, grid: str) -> str:
    cells = defaultdict(dict)  # (model, strategy, arm) -> seed -> summary
    states = defaultdict(int)
    for job in _jobs(queue, grid).values():
        f = job["factors"]
        if f.get("experiment") == "judge" or "compare" in f:  # a judge job
            continue
        arm = SEED_ARMS[(f.get("norm", "keep"), f["dyt_calibrate"], f.get("heal", "instant"))]
        strategy = STRATEGIES[(f["peft"], f["strategy"])]
        states[job["state"]] += 1
        if job["state"] == "succeeded":
            cells[(f["model"], strategy, arm)][f["seed"]] = job["summary"]
    out = [f"Jobs: {dict(states)}", ""]
    models = sorted({k[0] for k in cells})
    for model in models:
        out += [f"#### {model}", "",
                "| strategy | arm | val loss as loaded | val loss at step 0 (after the swap) | val loss after fine-tuning | gap to LayerNorm |",
                "|---|---|---|---|---|---|"]
        for strategy in STRATEGIES.values():
            baseline = cells.get((model, strategy, SEED_ARMS[("keep", False, "instant")]), {})
            for arm in SEED_ARMS.values():
                runs = cells.get((model, strategy, arm), {})
                if not runs:
                    continue
                gaps = [100 * (runs[s]["val_loss"] / baseline[s]["val_loss"] - 1) for s in runs if s in baseline]
                gap = "" if arm.startswith("LayerNorm") else fmt(gaps, 1, " %")
                out.append(f"| {strategy} | {arm} (n={len(runs)}) | {fmt([r.get('val_loss_as_loaded') for r in runs.values()])} | "
                           f"{fmt([r.get('val_loss_step0') for r in runs.values()])} | "
                           f"{fmt([r.get('val_loss') for r in runs.values()])} | {gap} |")
        out.append("")
    return "\n".join(out)


def relu_gelu(queue, grid: str) -> str:
    cells = defaultdict(dict)  # (block_norms, activation) -> seed -> summary
    states = defaultdict(int)
    diverged = defaultdict(int)
    for job in _jobs(queue, grid).values():
        f = job["factors"]
        states[job["state"]] += 1
        key = (f["block_norms"], f["activation"]) if not f.get("fp16") else (f["block_norms"] + ", fp16", f["activation"])
        if job["state"] == "succeeded":
            cells[key][f["seed"]] = job["summary"]
        elif job["state"] == "diverged":
            diverged[key] += 1
    out = [f"Jobs: {dict(states)}", "",
           "| block norms | activation | val perplexity | val loss | token accuracy | final-step normalised entropy, mean over heads, L0..L3 | heads overloaded (>= 3/4 max) | attention NaNs | diverged |",
           "|---|---|---|---|---|---|---|---|---|"]
    for norms_kind in ("none", "keep", "none, fp16"):
        for act in ("gelu", "relu"):
            runs = cells.get((norms_kind, act), {})
            if not runs and not diverged.get((norms_kind, act)):
                continue
            layers = sorted({k for r in runs.values() for k in r if k.startswith("attn_entropy_norm_final/")})
            entropy = ", ".join(f"{interval([r.get(k) for r in runs.values()])[0]:.2f}" for k in layers)
            label = {"none": "removed", "keep": "LayerNorm", "none, fp16": "removed, float16"}[norms_kind]
            out.append(f"| {label} | {act} (n={len(runs)}) | "
                       f"{fmt([r.get('val_perplexity') for r in runs.values()], 2)} | {fmt([r.get('val_loss') for r in runs.values()])} | "
                       f"{fmt([r.get('val_token_accuracy') for r in runs.values()])} | {entropy} | "
                       f"{fmt([r.get('attn_overloaded_share_final') for r in runs.values()], 2)} | "
                       f"{sum(r.get('attn_nan_total', 0) or 0 for r in runs.values()):.0f} | {diverged.get((norms_kind, act), 0)} |")
    out += ["", "| block norms | perplexity gap, GELU over ReLU (paired by seed) | the paper (LN-free) |", "|---|---|---|"]
    for norms_kind in ("none", "keep"):
        g, r = cells.get((norms_kind, "gelu"), {}), cells.get((norms_kind, "relu"), {})
        # the paper's 8.2 %: ReLU's perplexity improvement over GELU, (GELU - ReLU) / GELU
        gaps = [100 * (g[s]["val_perplexity"] - r[s]["val_perplexity"]) / g[s]["val_perplexity"] for s in g if s in r]
        out.append(f"| {'removed' if norms_kind == 'none' else 'LayerNorm'} | {fmt(gaps, 1, ' %')} | "
                   f"{'8.2 %' if norms_kind == 'none' else ''} |")
    return "\n".join(out)


def main(argv=None) -> None:
    from db import engine as db_engine
    from jobs.queue import Queue

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", help="seed_miniature or relu_gelu_miniature (or a grid of the same shape)")
    parser.add_argument("--db", default=os.environ.get("GRIDLAB_DB", "sqlite:///gridlab.db"))
    args = parser.parse_args(argv)
    queue = Queue(db_engine.create(args.db))
    kind = relu_gelu if "relu" in args.grid else seed_miniature
    print(kind(queue, args.grid))


if __name__ == "__main__":
    main()
