"""Calibrating DyT's alpha per layer so that DyT starts out imitating the norm it replaces.

DyT inherits the replaced norm's weight w and bias b; only its scalar alpha is fitted. The fit
uses what the swapped model will see, and nothing else:

- **real tokens only**: the rows of each norm's input are taken where the attention mask is 1
  (for a T5 decoder norm, where the label is not -100); padding never enters the fit;
- **layers in order, on the swapped model's own activations**: norms are fitted in forward
  order, and each norm is swapped to its fitted DyT before the next one is fitted. Norm k's
  input x is therefore what the model with norms 1..k-1 already DyT produces, and its target y is
  the *original* model's output of norm k on the same tokens: an error earlier layers leave in
  the residual stream counts against norm k's fit, as it will count in the swapped model;
- **a library optimiser**: ``mean((w * tanh(alpha * x) + b - y) ** 2)`` is minimised over
  log(alpha) with ``torch.optim.LBFGS`` (strong-Wolfe line search), started from the better of
  the layer's default alpha and 1/std(x) (where tanh(alpha x) ~ alpha x matches LN's x/std).

Per layer the fit records the error at the default alpha (*before*), at the fitted alpha
(*after*), and the *drift*: the error the original norm itself would make on the swapped model's
input (how far earlier swaps moved this layer's input; no alpha can do better than that share).
The model is left as it was (each norm is swapped back); pass `Calibration.alphas` to
`surgery.swap_norm(model, "dyt", alpha=...)`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from harness.data.tokenization import IGNORE
from harness.models import norms, surgery

LOG_ALPHA_BOUNDS = (math.log(1e-3), math.log(1e3))
LBFGS_ITERATIONS = 50


@dataclasses.dataclass(frozen=True)
class LayerFit:
    name: str
    alpha: float
    mse: float  # after: at the fitted alpha
    mse_default: float  # before: at the default alpha
    role: str = ""  # attn, ffn or final
    default_alpha: float = norms.DEFAULT_ALPHA
    drift: float = 0.0  # the original norm's own error on the swapped model's input


@dataclasses.dataclass(frozen=True)
class Calibration:
    layers: tuple[LayerFit, ...]
    default_alpha: float
    rows: int  # real-token rows per layer the fit used (the fewest over the layers)

    @property
    def alphas(self) -> dict[str, float]:
        return {fit.name: fit.alpha for fit in self.layers}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class _Captured(Exception):
    """Raised by a capture hook: the rest of the forward pass is not needed."""


def calibrate_dyt(
    model: nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    *,
    default_alpha: float | Mapping[str, float] = norms.DEFAULT_ALPHA,
    max_rows: int = 4096,
    seed: int = 0,
) -> Calibration:
    """Fit a DyT alpha for every norm of `model` that is not DyT already (see the module).

    `batches` are keyword arguments for `model(...)` (input_ids, attention_mask, and labels for
    T5). `default_alpha` is one value or one per module name (`surgery.alphas_by_role`). At most
    `max_rows` real-token positions per layer, sampled uniformly with `seed`, are used.
    """
    batches = list(batches)
    if not batches:
        raise ValueError("calibration needs data; give calibrate_dyt at least one batch")
    targets = {name: m for name, m in surgery.norm_modules(model).items() if norms.kind_of(m) in ("layernorm", "rmsnorm")}
    if not targets:
        raise ValueError("the model has no norm to calibrate DyT against (already DyT or none)")
    roles = surgery.norm_roles(model)
    defaults = dict(default_alpha) if isinstance(default_alpha, Mapping) else dict.fromkeys(targets, default_alpha)
    rows = _RowPicker(batches, max_rows, seed, seq2seq=getattr(model.config, "is_encoder_decoder", False))
    was_training = model.training
    model.eval()
    fits = []
    try:
        with torch.no_grad():
            reference = _capture(model, batches, rows, targets, output=True)
        for name, original in targets.items():
            with torch.no_grad():
                x = _capture(model, batches, rows, {name: model.get_submodule(name)}, output=False)[name]
            y = reference[name]
            weight = original.weight.detach().double().cpu()
            bias = original.bias.detach().double().cpu() if getattr(original, "bias", None) is not None else None
            start = float(defaults.get(name, norms.DEFAULT_ALPHA))
            alpha, mse = _fit(x, y, weight, bias, start)
            with torch.no_grad():
                drift = float((original(x.to(original.weight.dtype)).double() - y).pow(2).mean())
            fits.append(LayerFit(name, alpha, mse, _mse(math.log(start), x, y, weight, bias), roles.get(name, ""),
                                 start, drift))
            model.set_submodule(name, norms.from_norm("dyt", original, alpha))
    finally:
        for name, original in targets.items():
            model.set_submodule(name, original)
        model.train(was_training)
    first = defaults.get(next(iter(targets)), norms.DEFAULT_ALPHA)
    return Calibration(tuple(fits), float(first), min(len(r) for r in reference.values()))


class _RowPicker:
    """Which flattened (batch, position) rows of a norm's input the fit uses, per batch and stack:
    real tokens only, thinned to an equal share of `max_rows` per batch, the same on every pass."""

    def __init__(self, batches, max_rows: int, seed: int, *, seq2seq: bool):
        self.seq2seq = seq2seq
        self.picks: dict[tuple[int, str], torch.Tensor] = {}
        share = max(1, math.ceil(max_rows / len(batches)))
        for b, batch in enumerate(batches):
            masks = {"enc": batch.get("attention_mask")}
            if seq2seq:
                labels = batch.get("labels")
                masks["dec"] = None if labels is None else labels != IGNORE
            for stack, mask in masks.items():
                real = None if mask is None else mask.reshape(-1).nonzero().squeeze(-1)
                if real is not None and len(real) > share:
                    g = torch.Generator().manual_seed(seed * 1_000_003 + b * 2 + (stack == "dec"))
                    real = real[torch.randperm(len(real), generator=g)[:share]].sort().values
                self.picks[(b, stack)] = real if real is not None else torch.empty(0, dtype=torch.long)
        self.batches = batches
        self.share = share

    def rows(self, b: int, name: str, hidden: torch.Tensor) -> torch.Tensor:
        stack = "dec" if self.seq2seq and name.startswith("decoder.") else "enc"
        flat = hidden.detach().reshape(-1, hidden.shape[-1])
        pick = self.picks[(b, stack)]
        if len(pick) == 0 and self.batches[b].get("attention_mask") is None:  # no mask: every row is real
            pick = torch.arange(min(len(flat), self.share))
        return flat[pick.to(flat.device)].double().cpu()


def _capture(model, batches, rows: _RowPicker, modules: Mapping[str, nn.Module], *, output: bool) -> dict[str, torch.Tensor]:
    """Each module's input (or output) rows over all batches; with one input-capturing module,
    every forward pass stops right after it."""
    store: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
    current = {"b": 0}
    stop_early = not output and len(modules) == 1

    def hook_for(name):
        def hook(_module, inputs, out):
            store[name].append(rows.rows(current["b"], name, out if output else inputs[0]))
            if stop_early:
                raise _Captured
        return hook

    handles = [m.register_forward_hook(hook_for(name)) for name, m in modules.items()]
    try:
        for b, batch in enumerate(batches):
            current["b"] = b
            try:
                model(**batch)
            except _Captured:
                pass
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.cat(parts) for name, parts in store.items() if parts}  # a module not run has none


def _mse(log_alpha: float, x, y, weight, bias) -> float:
    pred = torch.tanh(math.exp(log_alpha) * x) * weight
    if bias is not None:
        pred = pred + bias
    return float((pred - y).pow(2).mean())


def _fit(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
         default_alpha: float) -> tuple[float, float]:
    """(alpha, mse) minimising the DyT error over log(alpha) with L-BFGS, from the better start."""
    lo, hi = LOG_ALPHA_BOUNDS
    starts = [math.log(max(default_alpha, 1e-3)), -math.log(max(float(x.std()), 1e-6))]
    starts = [min(max(s, lo), hi) for s in starts]
    start = min(starts, key=lambda s: _mse(s, x, y, weight, bias))
    log_alpha = torch.tensor([start], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_alpha], lr=1.0, max_iter=LBFGS_ITERATIONS, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        optimiser.zero_grad()
        pred = torch.tanh(log_alpha.clamp(lo, hi).exp() * x) * weight
        if bias is not None:
            pred = pred + bias
        loss = (pred - y).pow(2).mean()
        loss.backward()
        return loss

    optimiser.step(closure)
    fitted = min(max(float(log_alpha.detach()), lo), hi)
    best = min((fitted, start), key=lambda s: _mse(s, x, y, weight, bias))  # never worse than the start
    return math.exp(best), _mse(best, x, y, weight, bias)


def refit(model: nn.Module, switching: Mapping[str, nn.Module], batches: Iterable[Mapping[str, torch.Tensor]], *,
          max_rows: int = 4096, seed: int = 0) -> list[LayerFit]:
    """At a healed swap's switch (:mod:`harness.models.healing`): fit each switching norm's DyT
    alpha again, on the model as it is now (earlier norms already switched, weights fine-tuned
    so far): its input x on the real tokens of `batches`, its target the original norm's output
    on that same input, from the alpha it has. `switching` maps a name to its HealingNorm;
    non-DyT targets are skipped. Sets the alphas and returns the fits."""
    batches = list(batches)
    dyt = {name: m for name, m in switching.items() if isinstance(m.target, norms.DyT)}
    if not dyt or not batches:
        return []
    rows = _RowPicker(batches, max_rows, seed, seq2seq=getattr(getattr(model, "config", None), "is_encoder_decoder", False))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            inputs = _capture(model, batches, rows, dyt, output=False)
    finally:
        model.train(was_training)
    fits = []
    for name, module in dyt.items():
        if name not in inputs:  # not run (peft's original beside the trained copy of a saved module)
            continue
        x = inputs[name]
        source, target = module.source, module.target
        with torch.no_grad():
            y = source(x.to(target.weight.dtype)).double()
        weight = target.weight.detach().double().cpu()
        bias = target.bias.detach().double().cpu() if target.bias is not None else None
        start = float(target.alpha.detach())
        alpha, mse = _fit(x, y, weight, bias, start)
        with torch.no_grad():
            target.alpha.fill_(alpha)
        fits.append(LayerFit(name, alpha, mse, _mse(math.log(max(start, 1e-3)), x, y, weight, bias), default_alpha=start))
    return fits
