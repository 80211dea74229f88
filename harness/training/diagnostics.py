"""Evaluation-time probes from the ReLU-vs-GELU study: attention entropy and non-finite values.

One extra forward pass on one validation batch, in eval mode and without gradients:

- attention entropy per layer and head, ``-sum(p * log p)`` over the keys, averaged over the
  real (unpadded) query positions; attention probabilities need the eager attention
  implementation, so it is switched on for this pass only and switched back after;
- NaN/inf counts per layer: forward hooks on each transformer block count the non-finite
  values in its output hidden states (and the logits count as one more "layer").

Names: ``attn_entropy/<stack>L<layer>.H<head>`` (stack is ``enc.``/``dec.`` for T5) and
``nonfinite/<block module name>``.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.models import families


def probe(model: nn.Module, batch: dict[str, torch.Tensor], family: families.Family) -> dict[str, float]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    counts: dict[str, int] = {}
    blocks = {name: m for name, m in base.named_modules() if type(m).__name__ in family.block_classes}

    def hook_for(name: str):
        def hook(_module, _inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            if torch.is_tensor(hidden):
                counts[name] = counts.get(name, 0) + int((~torch.isfinite(hidden)).sum())
        return hook

    handles = [m.register_forward_hook(hook_for(name)) for name, m in blocks.items()]
    previous = base.config._attn_implementation
    was_training = model.training
    model.eval()
    try:
        if previous != "eager":
            base.set_attn_implementation("eager")
        with torch.no_grad():
            out = model(**batch, output_attentions=True)
    finally:
        for h in handles:
            h.remove()
        if previous != "eager":
            base.set_attn_implementation(previous)
        model.train(was_training)

    values: dict[str, float] = {f"nonfinite/{name}": float(n) for name, n in counts.items()}
    values["nonfinite/logits"] = float((~torch.isfinite(out.logits)).sum())
    mask = batch.get("attention_mask")
    if family.seq2seq:
        stacks = {"enc.": (out.encoder_attentions, mask), "dec.": (out.decoder_attentions, _decoder_mask(batch))}
    else:
        stacks = {"": (out.attentions, mask)}
    for prefix, (attentions, query_mask) in stacks.items():
        for layer, probs in enumerate(attentions or ()):
            for head, value in enumerate(entropy(probs, query_mask).tolist()):
                values[f"attn_entropy/{prefix}L{layer}.H{head}"] = value
    return values


def entropy(probs: torch.Tensor, query_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean attention entropy per head of ``probs`` [batch, heads, queries, keys]."""
    p = probs.float()
    h = -(p * torch.log(p.clamp_min(1e-12))).sum(-1)  # [batch, heads, queries]
    if query_mask is None:
        return h.mean(dim=(0, 2))
    w = query_mask[:, None, : h.shape[-1]].to(h.dtype)
    return (h * w).sum(dim=(0, 2)) / w.sum(dim=(0, 2)).clamp_min(1.0)


def _decoder_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    labels = batch.get("labels")
    return None if labels is None else (labels != -100).long()
