"""Evaluate an existing model without training it: answer the prompt set (timed), run lm-eval
tasks and ROUGE/BLEU on a held-out split, like a training job's final step.

Use it to compare trained models saved elsewhere (``model`` is any name or
``save_pretrained`` directory the registry loads) or, with the tiny offline models, to try
the evaluation pipeline end to end (``grids/eval_demo.yaml``).
"""

from __future__ import annotations

from harness.evaluation import hook
from jobs.params import Param

PARAMS = {
    "model": Param(str, help="a model name the registry knows (tiny-gpt2, ...) or a save_pretrained directory"),
    "data": Param(str, "synthetic", "held-out data: 'synthetic' or an Alpaca-format JSON/JSONL file"),
    "synthetic_records": Param(int, 200, "records of the synthetic dataset", minimum=2),
    "validation_share": Param(float, 0.1, "share of the records held out",
                              check=lambda v: None if 0.0 <= v < 1.0 else f"must be a share in [0, 1), got {v!r}"),
    "seed": Param(int, 0, "seed of the split"),
    **hook.PARAMS,
}


def check_spec(spec: dict) -> str | None:
    """A problem with a whole cell's settings together (checked when the grid is loaded)."""
    return hook.check_spec(spec)


def run(ctx) -> None:
    from harness.data import formats, loaders, split, synthetic
    from harness.models import registry

    spec = ctx.spec
    problem = check_spec(spec)
    if problem:
        from harness.params import InvalidSpec

        raise InvalidSpec(problem, "fix the grid file")
    loaded = registry.load(spec["model"])
    if spec["data"] == "synthetic":
        conversations = [formats.alpaca(r) for r in synthetic.records(spec["synthetic_records"], spec["seed"])]
    else:
        conversations = loaders.load(spec["data"], "alpaca").conversations
    _, validation = split.train_validation(conversations, spec["validation_share"], spec["seed"])
    hook.evaluate_after_training(ctx, loaded.model, loaded.tokenizer, validation=validation)
