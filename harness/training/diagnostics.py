"""Probes from the ReLU-vs-GELU study (Jha and Reagen 2024): attention entropy and non-finite values.

From attention probabilities ``[batch, heads, queries, keys]`` (eager attention):

- **entropy** per layer and head, ``-sum(p * log p)`` over the keys, averaged over the real
  (unpadded) query positions;
- **normalised entropy**: each query's entropy over its maximum, the log of the number of keys it
  can see (a causal query at position i sees i + 1, an encoder query every real key), averaged
  over queries that see at least two keys. 1 is uniform attention; the paper's "entropic
  overload" is a head near its maximum (it reads the band from 3/4 of the maximum up);
- **NaN count** per layer and head in the attention matrices, as the paper counts them, and
  non-finite values in each block's output hidden states (where an instability first shows).

:func:`attention_rows` turns one forward pass's attentions into one :class:`LayerRow` per
layer (the head values as lists), which :mod:`harness.training.attention_log` stores, one row
per layer and step; metrics carry the per-layer means. :func:`probe` is the evaluation-time
pass of the sft recipe, :func:`block_counts` the hooks that count non-finite block outputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from harness.data.tokenization import IGNORE
from harness.models import families


@dataclasses.dataclass(frozen=True)
class LayerRow:
    stack: str  # "" for a decoder-only model, "enc"/"dec" for T5
    layer: int
    entropy: tuple[float, ...]  # per head, nats
    entropy_norm: tuple[float, ...]  # per head, over log(keys)
    nan: tuple[int, ...]  # NaN values per head in the attention matrix
    max_entropy: float  # mean log(keys) over the counted queries

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def entropy(probs: torch.Tensor, query_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean attention entropy per head of ``probs`` [batch, heads, queries, keys]."""
    p = probs.float()
    h = -(p * torch.log(p.clamp_min(1e-12))).sum(-1)  # [batch, heads, queries]
    if query_mask is None:
        return h.mean(dim=(0, 2))
    w = query_mask[:, None, : h.shape[-1]].to(h.dtype)
    return (h * w).sum(dim=(0, 2)) / w.sum(dim=(0, 2)).clamp_min(1.0)


def key_counts(key_mask: torch.Tensor | None, batch: int, queries: int, keys: int, *, causal: bool) -> torch.Tensor:
    """[batch, queries]: how many real keys each query can attend to."""
    if key_mask is None:
        key_mask = torch.ones(batch, keys)
    real = key_mask[:, :keys].float()
    if causal:
        return real.cumsum(-1)[:, :queries]
    return real.sum(-1, keepdim=True).expand(batch, queries)


def layer_row(probs: torch.Tensor, *, stack: str, layer: int, query_mask: torch.Tensor | None,
              key_mask: torch.Tensor | None, causal: bool) -> LayerRow:
    p = probs.detach().float()
    b, heads, q, k = p.shape
    nan = torch.isnan(p).sum(dim=(0, 2, 3))
    finite = torch.nan_to_num(p, nan=0.0)
    h = -(finite * torch.log(finite.clamp_min(1e-12))).sum(-1)  # [b, heads, q]
    qmask = torch.ones(b, q) if query_mask is None else query_mask[:, :q].float()
    n_keys = key_counts(key_mask, b, q, k, causal=causal)
    log_keys = torch.log(n_keys.clamp_min(1.0))
    counted = qmask * (n_keys >= 2).float()  # a query with one key has no choice to make
    norm = h / log_keys.clamp_min(1e-12)[:, None, :]
    weight = counted[:, None, :]
    denom = weight.sum(dim=(0, 2)).clamp_min(1.0)
    mean_h = (h * qmask[:, None, :]).sum(dim=(0, 2)) / qmask[:, None, :].sum(dim=(0, 2)).clamp_min(1.0)
    mean_norm = (norm * weight).sum(dim=(0, 2)) / denom
    max_entropy = float((log_keys * counted).sum() / counted.sum().clamp_min(1.0))
    return LayerRow(stack, layer, tuple(mean_h.tolist()), tuple(mean_norm.tolist()), tuple(int(n) for n in nan.tolist()),
                    max_entropy)


def attention_rows(attentions: Sequence[torch.Tensor] | None, *, stack: str = "", query_mask=None, key_mask=None,
                   causal: bool = True) -> list[LayerRow]:
    return [layer_row(p, stack=stack, layer=i, query_mask=query_mask, key_mask=key_mask, causal=causal)
            for i, p in enumerate(attentions or ())]


def row_metrics(rows: Sequence[LayerRow], prefix: str = "") -> dict[str, float]:
    """Per-layer means over heads (curves), and the NaN total: what goes to the metrics table."""
    values: dict[str, float] = {}
    for row in rows:
        tag = f"{row.stack + '.' if row.stack else ''}L{row.layer}"
        values[f"{prefix}attn_entropy/{tag}"] = sum(row.entropy) / len(row.entropy)
        values[f"{prefix}attn_entropy_norm/{tag}"] = sum(row.entropy_norm) / len(row.entropy_norm)
    if rows:
        values[f"{prefix}attn_nan"] = float(sum(sum(r.nan) for r in rows))
        overloaded = [v for r in rows for v in r.entropy_norm if v >= 0.75]
        values[f"{prefix}attn_overloaded_share"] = len(overloaded) / sum(len(r.entropy_norm) for r in rows)
    return values


class block_counts:
    """Forward hooks on every transformer block counting non-finite values in its output hidden
    states while the ``with`` block runs; ``counts`` maps block module name to count."""

    def __init__(self, model: nn.Module, family: families.Family) -> None:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.blocks = {name: m for name, m in base.named_modules() if type(m).__name__ in family.block_classes}
        self.counts: dict[str, int] = {}
        self._handles = []

    def __enter__(self):
        def hook_for(name):
            def hook(_module, _inputs, output):
                hidden = output[0] if isinstance(output, tuple) else output
                if torch.is_tensor(hidden):
                    self.counts[name] = self.counts.get(name, 0) + int((~torch.isfinite(hidden)).sum())
            return hook

        self._handles = [m.register_forward_hook(hook_for(name)) for name, m in self.blocks.items()]
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        return False


def probe(model: nn.Module, batch: dict[str, torch.Tensor], family: families.Family
          ) -> tuple[dict[str, float], list[LayerRow]]:
    """One extra forward pass on `batch` in eval mode, without gradients, with eager attention
    (switched back after): (metrics, one row per attention layer)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    previous = base.config._attn_implementation
    was_training = model.training
    model.eval()
    try:
        if previous != "eager":
            base.set_attn_implementation("eager")
        with torch.no_grad(), block_counts(model, family) as counter:
            out = model(**batch, output_attentions=True)
    finally:
        if previous != "eager":
            base.set_attn_implementation(previous)
        model.train(was_training)
    values: dict[str, float] = {f"nonfinite/{name}": float(n) for name, n in counter.counts.items()}
    values["nonfinite/logits"] = float((~torch.isfinite(out.logits)).sum())
    mask = batch.get("attention_mask")
    rows: list[LayerRow] = []
    if family.seq2seq:
        dec_mask = _decoder_mask(batch)
        rows += attention_rows(out.encoder_attentions, stack="enc", query_mask=mask, key_mask=mask, causal=False)
        rows += attention_rows(out.decoder_attentions, stack="dec", query_mask=dec_mask, key_mask=dec_mask, causal=True)
    else:
        rows += attention_rows(out.attentions, query_mask=mask, key_mask=mask, causal=True)
    values.update(row_metrics(rows))
    return values, rows


def _decoder_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    labels = batch.get("labels")
    return None if labels is None else (labels != IGNORE).long()
