"""Calibrating DyT's alpha per layer so that DyT starts out imitating the norm it replaces.

On a few batches of training data, forward hooks on the original model capture each norm's
input x and output y. For each layer, with weight w and bias b fixed to the norm's own (DyT
inherits them), alpha is fitted to minimise the mean squared error

    mean((w * tanh(alpha * x) + b - y) ** 2)

by a log-spaced grid search over [1e-3, 1e3] refined with golden-section search around the best
grid point. The fitted alpha, its error, and the error at the default alpha are returned per
layer, to be recorded with the run and passed to `surgery.swap_norm(model, "dyt", alpha=...)`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from harness.models import norms, surgery

_GRID = torch.logspace(-3, 3, 49, dtype=torch.float64)  # 8 points a decade
_GOLDEN_STEPS = 30


@dataclasses.dataclass(frozen=True)
class LayerFit:
    name: str
    alpha: float
    mse: float  # at the fitted alpha
    mse_default: float  # at the default alpha, for comparison


@dataclasses.dataclass(frozen=True)
class Calibration:
    layers: tuple[LayerFit, ...]
    default_alpha: float
    rows: int  # token positions per layer the fit used

    @property
    def alphas(self) -> dict[str, float]:
        return {fit.name: fit.alpha for fit in self.layers}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def calibrate_dyt(
    model: nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    *,
    default_alpha: float = norms.DEFAULT_ALPHA,
    max_rows: int = 2048,
    seed: int = 0,
) -> Calibration:
    """Fit a DyT alpha for every norm of `model` that is not DyT already.

    `batches` are keyword arguments for `model(...)` (input_ids, attention_mask, and labels for
    T5). At most `max_rows` token positions per layer, sampled uniformly with `seed`, are kept.
    """
    targets = {name: m for name, m in surgery.norm_modules(model).items() if norms.kind_of(m) not in ("dyt", "none")}
    if not targets:
        raise ValueError("the model has no norm to calibrate DyT against (already DyT or none)")
    generator = torch.Generator().manual_seed(seed)
    captured = {name: _Reservoir(max_rows, generator) for name in targets}
    handles = [module.register_forward_hook(captured[name].hook) for name, module in targets.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                model(**batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    fits = []
    for name, module in targets.items():
        x, y = captured[name].tensors()
        weight = module.weight.detach().float().cpu()
        bias = module.bias.detach().float().cpu() if getattr(module, "bias", None) is not None else None
        alpha, mse = _fit(x, y, weight, bias)
        fits.append(LayerFit(name, alpha, mse, _mse(default_alpha, x, y, weight, bias)))
    return Calibration(tuple(fits), default_alpha, min(len(r.x) for r in captured.values()))


class _Reservoir:
    """The (input, output) rows one norm saw, thinned to at most `size` by uniform sampling."""

    def __init__(self, size: int, generator: torch.Generator):
        self.size, self.generator = size, generator
        self.x = torch.empty(0)
        self.y = torch.empty(0)

    def hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        x = inputs[0].detach().float().cpu().reshape(-1, inputs[0].shape[-1])
        y = output.detach().float().cpu().reshape(-1, output.shape[-1])
        self.x = torch.cat([self.x.reshape(-1, x.shape[1]), x])
        self.y = torch.cat([self.y.reshape(-1, y.shape[1]), y])
        if len(self.x) > self.size:
            keep = torch.randperm(len(self.x), generator=self.generator)[: self.size]
            self.x, self.y = self.x[keep], self.y[keep]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not len(self.x):
            raise ValueError("a norm saw no input during calibration; give calibrate_dyt at least one batch")
        return self.x, self.y


def _mse(alpha: float, x, y, weight, bias) -> float:
    pred = torch.tanh(alpha * x) * weight
    if bias is not None:
        pred = pred + bias
    return float((pred - y).pow(2).mean())


def _fit(x, y, weight, bias) -> tuple[float, float]:
    def error(log_alpha: float) -> float:
        return _mse(math.exp(log_alpha), x, y, weight, bias)

    grid = [math.log(float(a)) for a in _GRID]
    errors = [error(g) for g in grid]
    best = min(range(len(errors)), key=errors.__getitem__)
    # Golden-section search on log(alpha) between the best grid point's neighbours.
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    error_a, error_b = error(a), error(b)
    for _ in range(_GOLDEN_STEPS):
        if error_a <= error_b:
            hi, b, error_b = b, a, error_a
            a = hi - ratio * (hi - lo)
            error_a = error(a)
        else:
            lo, a, error_a = a, b, error_b
            b = lo + ratio * (hi - lo)
            error_b = error(b)
    log_alpha, mse = (a, error_a) if error_a <= error_b else (b, error_b)
    if errors[best] < mse:  # on a flat stretch the grid point itself can win
        log_alpha, mse = grid[best], errors[best]
    return math.exp(log_alpha), mse
