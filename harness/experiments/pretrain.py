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

# The loop's settings live beside the loop, so the testbed recipe can read them too.
from harness.training.causal_lm_settings import CORPORA, MODELS, PARAMS  # noqa: F401


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
