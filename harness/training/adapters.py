"""Parameter-efficient fine-tuning set-up: which method, and which parameters train.

Methods: ``lora`` and ``ia3`` attach a peft adapter; ``full`` attaches none.
Strategies:

- ``frozen``: only the adapter trains.
- ``selective``: the adapter and every norm's parameters (LayerNorm, RMSNorm or DyT, alpha
  included) train; the norms go into peft's `modules_to_save`, so they are saved and loaded
  with the adapter. Loading such an adapter needs a base model with the same norm swap.
- ``full``: every parameter trains. With an adapter this also unfreezes the base model, whose
  weights are then not in the adapter file: save the whole model.

``full`` method goes only with the ``full`` strategy. Targets come from the model's family
(`families.Family.lora_targets`, peft's IA3 defaults) unless given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import peft
from torch import nn

from harness.models import families, surgery

METHODS = ("lora", "ia3", "full")
STRATEGIES = ("frozen", "selective", "full")


@dataclasses.dataclass(frozen=True)
class Prepared:
    model: nn.Module  # a peft.PeftModel, or the model itself for method "full"
    trainable: int  # parameters that train
    total: int  # all parameters, adapter and saved norm copies included
    modules_to_save: tuple[str, ...]  # norms saved with the adapter ("selective")


def prepare(
    model: nn.Module,
    *,
    method: str,
    strategy: str,
    r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.0,
    target_modules: Sequence[str] | None = None,
) -> Prepared:
    """Attach `method`'s adapter to `model` (after any surgery) and set what trains per `strategy`."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if method == "full":
        if strategy != "full":
            raise ValueError(f"method 'full' trains every parameter; use strategy 'full', not {strategy!r}")
        model.requires_grad_(True)
        return Prepared(model, *count_parameters(model), ())
    family = families.of_model(model)
    to_save = _norms_with_parameters(model) if strategy == "selective" else ()
    config = _config(family, method, r, lora_alpha, lora_dropout, target_modules, list(to_save) or None)
    wrapped = peft.get_peft_model(model, config)
    if strategy == "full":
        wrapped.requires_grad_(True)
    return Prepared(wrapped, *count_parameters(wrapped), to_save)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; shared (tied) parameters count once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def _norms_with_parameters(model: nn.Module) -> tuple[str, ...]:
    # Full module names: peft matches modules_to_save by suffix, and a full name matches one module.
    return tuple(name for name, module in surgery.norm_modules(model).items() if next(module.parameters(), None) is not None)


def _config(family, method, r, lora_alpha, lora_dropout, target_modules, modules_to_save) -> peft.PeftConfig:
    task = peft.TaskType.SEQ_2_SEQ_LM if family.seq2seq else peft.TaskType.CAUSAL_LM
    if method == "lora":
        return peft.LoraConfig(
            task_type=task,
            r=r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            target_modules=list(target_modules or family.lora_targets),
            modules_to_save=modules_to_save,
            **family.adapter_extra,
        )
    targets = list(target_modules or family.ia3_targets)
    return peft.IA3Config(
        task_type=task,
        target_modules=targets,
        feedforward_modules=[m for m in family.ia3_feedforward if m in targets],
        modules_to_save=modules_to_save,
        **family.adapter_extra,
    )
