"""Pretrain a small causal LM from scratch on a corpus every clone has.

Two uses, one loop (:mod:`harness.training.causal_lm`):

- **the pretrained testbed**: at the defaults below, ``model: tiny-gpt2`` or ``tiny-pythia``
  builds the testbed model ``gridlab/<model>-pretrained`` (:mod:`harness.models.pretrained`);
  with ``publish: true`` the trained model is saved where the registry resolves that name, so an
  sft grid can fine-tune it (``grids/pretrain.yaml``, then ``grids/seed_miniature.yaml``);
- **the ReLU-vs-GELU study in miniature** (Jha and Reagen 2024): GPT-2-shaped decoders on Python
  code with a 128-token context, ``block_norms: none`` (``ln_1``/``ln_2`` removed, the final norm
  kept), ``activation: gelu`` or ``relu``, with attention entropy and NaN counts per layer and
  head every ``entropy_every`` steps (``grids/relu_gelu_miniature.yaml``).

Heavy imports happen inside :func:`run`.
"""

from __future__ import annotations

from harness.params import Param

MODELS = ("tiny-gpt2", "tiny-pythia")
CORPORA = ("python", "synthetic", "mixed")

PARAMS = {
    # the model
    "model": Param(str, "tiny-gpt2", "family shape to build (initialised from the seed)", choices=MODELS),
    "layers": Param(int, 4, "transformer layers", minimum=1),
    "hidden": Param(int, 64, "hidden size", minimum=8),
    "heads": Param(int, 4, "attention heads", minimum=1),
    "activation": Param(str, "keep", "MLP activation: keep the family's (GELU) or gelu/relu", choices=("keep", "gelu", "relu")),
    "block_norms": Param(str, "keep", "the norms before attention and MLP: keep, or none (removed)", choices=("keep", "none")),
    "final_norm": Param(str, "keep", "the final norm: keep, or none (removed)", choices=("keep", "none")),
    # data
    "corpus": Param(str, "mixed", "python: the standard library's source; synthetic: the instruction records "
                    "rendered; mixed: both (a quarter synthetic)", choices=CORPORA),
    "corpus_chars": Param(int, 3_000_000, "characters of corpus read", minimum=10_000),
    "seq_len": Param(int, 128, "tokens per training window (the paper's context)", minimum=8),
    # optimisation
    "batch_size": Param(int, 16, "windows per step", minimum=1),
    "steps": Param(int, 2000, "optimizer steps", minimum=1),
    "lr": Param(float, 3e-3, "peak learning rate (AdamW, betas 0.9/0.95)", minimum=0.0),
    "warmup_steps": Param(int, 100, "linear warm-up steps, then cosine decay to 0", minimum=0),
    "weight_decay": Param(float, 0.1, "AdamW weight decay (matrices only)", minimum=0.0),
    "max_grad_norm": Param(float, 1.0, "gradient clipping norm", minimum=0.0),
    "fp16": Param(bool, False, "float16 autocast with a gradient scaler (where norm-free instability shows)"),
    "seed": Param(int, 0, "seed for weights and data order"),
    # bookkeeping
    "eval_every": Param(int, 500, "steps between validation evaluations (0: only at the end)", minimum=0),
    "eval_batches": Param(int, 8, "validation batches (fixed windows, the same for every cell)", minimum=1),
    "log_every": Param(int, 10, "steps between logged training figures", minimum=1),
    "checkpoint_every": Param(int, 500, "steps between checkpoints", minimum=1),
    "entropy_every": Param(int, 100, "steps between attention entropy / NaN probes on the training batch (0: none)",
                           minimum=0),
    "publish": Param(bool, False, "save the trained model as the testbed model gridlab/<model>-pretrained "
                     "(needs the testbed recipe: the defaults above)"),
}


def check_spec(spec: dict) -> str | None:
    if spec["hidden"] % spec["heads"]:
        return f"hidden ({spec['hidden']}) must be a multiple of heads ({spec['heads']})"
    if spec["publish"]:
        from harness.models import pretrained

        differences = pretrained.recipe_differences(spec)
        if differences:
            return ("publish builds a testbed model, which needs the testbed recipe; these settings differ from it: "
                    + ", ".join(differences) + " (leave them at their defaults, or set publish: false)")
    return None


def run(ctx) -> None:
    from harness.params import InvalidSpec
    from harness.training import causal_lm

    problem = check_spec(ctx.spec)
    if problem:
        raise InvalidSpec(problem, "fix the grid file")
    result = causal_lm.CausalLMRun(ctx.spec, ctx).setup().train()
    if ctx.spec["publish"]:
        from harness.models import pretrained

        name = pretrained.name_for(ctx.spec)
        pretrained.publish(name, result.model, result.tokenizer, result.info)
        ctx.summary({"published": 1.0})
