"""Normalisation layers that norm ablations swap in: DyT, RMSNorm, and no norm at all.

- `DyT` (Dynamic Tanh, Zhu et al. 2025, "Transformers without Normalization"):
  ``weight * tanh(alpha * x) + bias`` with a learnable scalar `alpha`.
- `RMSNorm`: ``weight * x / sqrt(mean(x^2) + eps) + bias``, computed in float32.
- `NoNorm`: the identity, remembering the shape of the norm it replaced.

Each takes its `weight` and `bias` from the norm it replaces (see `from_norm`): a replacement has
a bias exactly when the replaced norm had one (T5's RMS-style norm has none), and `eps` carries
over. `kind_of` names the kind of any norm module gridlab knows, its own or the families'.
"""

from __future__ import annotations

import torch
from torch import nn

KINDS = ("layernorm", "dyt", "rmsnorm", "none")
DEFAULT_ALPHA = 0.5  # the DyT paper's initial alpha for non-LLM models


class DyT(nn.Module):
    def __init__(self, dim: int, alpha: float = DEFAULT_ALPHA, bias: bool = True):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((1,), float(alpha)))
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.tanh(self.alpha * x) * self.weight
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, alpha={self.alpha.item():.4g}, bias={self.bias is not None}"


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6, bias: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)
        y = normed * self.weight
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, bias={self.bias is not None}"


class NoNorm(nn.Identity):
    """The identity, keeping what a later swap back to a real norm needs to rebuild one."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = False):
        super().__init__()
        self.dim, self.eps, self.has_bias = dim, eps, bias

    def extra_repr(self) -> str:
        return f"{self.dim}"


def kind_of(module: nn.Module) -> str | None:
    """'layernorm', 'rmsnorm', 'dyt', 'none', 'healing' (a norm being replaced during training,
    `harness.models.healing`), or None when `module` is not a norm."""
    if isinstance(module, nn.LayerNorm):
        return "layernorm"
    if isinstance(module, DyT):
        return "dyt"
    if isinstance(module, NoNorm):
        return "none"
    # T5LayerNorm is RMS-style (no mean, no bias); other families name theirs *RMSNorm.
    class_name = type(module).__name__
    if class_name == "HealingNorm":
        return "healing"
    if isinstance(module, RMSNorm) or class_name == "T5LayerNorm" or class_name.endswith("RMSNorm"):
        return "rmsnorm"
    return None


def from_norm(kind: str, source: nn.Module, alpha: float = DEFAULT_ALPHA) -> nn.Module:
    """A `kind` norm taking `source`'s weight, bias and eps, on `source`'s device and dtype."""
    if kind_of(source) == "healing":
        raise ValueError("a norm being healed cannot be swapped again; swap before healing.wrap")
    weight = getattr(source, "weight", None)
    bias = getattr(source, "bias", None)
    if isinstance(source, NoNorm):
        dim, has_bias = source.dim, source.has_bias
    else:
        dim, has_bias = weight.shape[0], bias is not None
    eps = next((getattr(source, name) for name in ("eps", "variance_epsilon") if hasattr(source, name)), 1e-5)
    if kind == "layernorm":
        new = nn.LayerNorm(dim, eps=eps, bias=has_bias)
    elif kind == "rmsnorm":
        new = RMSNorm(dim, eps=eps, bias=has_bias)
    elif kind == "dyt":
        new = DyT(dim, alpha=alpha, bias=has_bias)
    elif kind == "none":
        return NoNorm(dim, eps=eps, bias=has_bias)
    else:
        raise ValueError(f"unknown norm kind {kind!r}; use one of {', '.join(KINDS)}")
    if weight is not None:
        new.to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            new.weight.copy_(weight)
            if bias is not None:
                new.bias.copy_(bias)
    return new
