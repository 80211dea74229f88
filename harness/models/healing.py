"""A "healed" norm swap: the model's norms are replaced gradually during fine-tuning.

Heimersheim (2024, arXiv 2409.13710) removes every LayerNorm of a pretrained GPT-2 by
fine-tuning, disabling them one layer at a time with a few optimizer steps between: first the
norms before the MLPs (``ln_2``) in layer order, then those before attention (``ln_1``), then the
final ``ln_f``; the later GPT-2 XL work (submarat/removing-layer-norm) keeps that order. Swapping
them all at once, as a naive swap does, hands the fine-tuning a broken model; swapped one at a
time, each layer's change is small enough for the rest of the network to absorb.

`HealingNorm` holds a norm's original (`source`) and its replacement (`target`, a DyT or the
identity) and mixes their outputs, ``(1 - mix) * source(x) + mix * target(x)``; `mix` is a plain
attribute, set from the optimizer step by :func:`set_step` (so a resumed run recomputes it and
a checkpoint need not store it). Two schedules over the first ``heal_steps`` steps:

- ``layerwise``: the recipe's order (feed-forward norms, then attention norms, then final norms,
  each in layer order), norm i switched from source to target, at once, at step
  ``round(heal_steps * (i + 1) / n)``; when a norm switches, its target takes the source's
  *current* weight and bias (fine-tuned so far), as the removal recipe keeps the trained LN
  parameters, and a DyT target's alpha is fitted again on the model as it is at that step
  (:func:`harness.models.calibrate.refit`), as the recipe measures the std it freezes from the
  model being fine-tuned, not from the model it started from;
- ``blend``: every norm's `mix` rises linearly from 0 to 1 over ``heal_steps``.

After ``heal_steps`` every norm is its target alone: the model that is evaluated and saved at
the end has no LayerNorm left in its computation (the source modules stay in the state dict,
unused, so a checkpoint loads into the same structure).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from harness.models import surgery

SCHEDULES = ("instant", "layerwise", "blend")
#: Role order of the layerwise schedule (the removal recipe's: MLP norms first).
ROLE_ORDER = ("ffn", "attn", "final")


class HealingNorm(nn.Module):
    def __init__(self, source: nn.Module, target: nn.Module, switch_step: int = 0) -> None:
        super().__init__()
        self.source = source
        self.target = target
        self.switch_step = switch_step  # layerwise: the step from which target alone runs
        self.mix = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mix >= 1.0:
            return self.target(x)
        if self.mix <= 0.0:
            return self.source(x)
        return (1.0 - self.mix) * self.source(x) + self.mix * self.target(x)

    def extra_repr(self) -> str:
        return f"mix={self.mix:.3g}, switch_step={self.switch_step}"


def wrap(model: nn.Module, originals: Mapping[str, nn.Module], *, schedule: str, heal_steps: int) -> list[str]:
    """Put a `HealingNorm` at every module name of `originals` (the norms a swap replaced, as
    they were before it): its source the original, its target what the swap put there.
    Returns the names in the order the schedule switches them."""
    if schedule not in SCHEDULES[1:]:
        raise ValueError(f"unknown heal schedule {schedule!r}; use one of {', '.join(SCHEDULES[1:])}")
    if heal_steps < 1:
        raise ValueError(f"heal_steps must be at least 1, got {heal_steps}")
    roles = {name: role for name, role in surgery.norm_roles(model).items() if name in originals}
    order = sorted(roles, key=lambda name: ROLE_ORDER.index(roles[name]))  # stable: layer order kept
    for i, name in enumerate(order):
        switch = round(heal_steps * (i + 1) / len(order)) if schedule == "layerwise" else heal_steps
        model.set_submodule(name, HealingNorm(originals[name], model.get_submodule(name), switch))
    model._gridlab_heal = (schedule, heal_steps)  # read by set_step
    return order


def set_step(model: nn.Module, step: int, *, carry_parameters: bool = True) -> list[HealingNorm]:
    """Set every healing norm's mix for optimizer step `step` (the steps done so far); returns
    the norms that switched to their target at this call. A layerwise norm switching here takes
    its source's current weight and bias into its target when `carry_parameters` (a resumed run
    sets the step without carrying: its checkpoint already holds the target's own)."""
    healing = [m for m in model.modules() if isinstance(m, HealingNorm)]
    if not healing:
        return []
    schedule, heal_steps = _schedule_of(model)
    switched_now = []
    for module in healing:
        if schedule == "blend":
            module.mix = min(max(step / heal_steps, 0.0), 1.0)
        else:
            switched = step >= module.switch_step
            if switched and module.mix < 1.0 and carry_parameters:
                _carry(module.source, module.target)
                switched_now.append(module)
            module.mix = 1.0 if switched else 0.0
    return switched_now


def healed(model: nn.Module) -> int:
    """How many healing norms run their target alone."""
    return sum(m.mix >= 1.0 for m in model.modules() if isinstance(m, HealingNorm))


def _schedule_of(model: nn.Module) -> tuple[str, int]:
    for module in model.modules():  # a peft wrapper holds the base model deeper down
        if hasattr(module, "_gridlab_heal"):
            return module._gridlab_heal
    raise ValueError("the model has healing norms but no schedule; put them in place with healing.wrap")


def _carry(source: nn.Module, target: nn.Module) -> None:
    weight, bias = getattr(source, "weight", None), getattr(source, "bias", None)
    with torch.no_grad():
        if weight is not None and getattr(target, "weight", None) is not None:
            target.weight.copy_(weight)
        if bias is not None and getattr(target, "bias", None) is not None:
            target.bias.copy_(bias)


def progress(model: nn.Module) -> float:
    """The mean mix over the healing norms (1.0 when healing is over, or there is none)."""
    mixes = [m.mix for m in model.modules() if isinstance(m, HealingNorm)]
    return sum(mixes) / len(mixes) if mixes else 1.0
