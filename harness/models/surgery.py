"""Architecture surgery for ablations: swap every norm, or every MLP activation, of a model.

Swaps happen in place on a loaded model, before adapters are attached, and return a report of
what changed so a run can record it. A module already of the requested kind is kept as it is
(GPT-2 asked for `layernorm` changes nothing; T5 asked for `rmsnorm` keeps its own RMS norm),
and `keep` keeps every norm whatever its kind (T5 asked for `layernorm` gets mean-centring
LayerNorms in place of its RMS norms; asked for `keep`, nothing changes).

DyT's initial alpha can be one value, one per norm *role* (`alphas_by_role`: the norms before
attention, before the feed-forward layer, and the final norm, as the DyT paper sets them for its
LLMs), or one per module (a calibration's fit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping

from torch import nn
from transformers.activations import ACT2FN

from harness.models import families, norms

ACTIVATIONS = ("gelu", "relu")
#: `swap_norm`'s "change nothing": every norm stays the model's own.
KEEP = "keep"
ROLES = ("attn", "ffn", "final")


@dataclasses.dataclass(frozen=True)
class SwapReport:
    kind: str
    replaced: tuple[str, ...]  # module names now of `kind`
    kept: tuple[str, ...]  # module names that already were

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def norm_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every norm module of `model` by name, in module order (final norms included). The two
    norms inside a healing norm (`harness.models.healing`) are its own, not listed apart."""
    found: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if norms.kind_of(module) is not None and not any(name.startswith(f"{outer}.") for outer in found):
            found[name] = module
    return found


def norm_roles(model: nn.Module) -> dict[str, str]:
    """The role ("attn", "ffn" or "final") of every norm of `model`, by module name.

    The family's table names most (GPT-2's ln_1/ln_2/ln_f, NeoX's input/post-attention/final);
    T5's ``layer.k.layer_norm`` takes it from its sub-layer (self- or cross-attention, or FF).
    """
    table = families.of_model(model).norm_roles
    roles = {}
    for name in norm_modules(model):
        last = name.rsplit(".", 1)[-1]
        role = table.get(last)
        if role is None:
            parent = type(model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model).__name__
            role = "attn" if "Attention" in parent else "ffn" if parent.endswith(("FF", "MLP")) else None
        if role is None:
            raise ValueError(f"no norm role for {name!r} (parent {parent}); add it to the family's norm_roles")
        roles[name] = role
    return roles


def alphas_by_role(model: nn.Module, attn: float, ffn: float, final: float) -> dict[str, float]:
    """DyT's initial alpha for every norm of `model`: `attn` for the norms that feed attention
    (self- and cross-), `ffn` for those that feed the MLP, `final` for the stacks' last norms."""
    by_role = {"attn": attn, "ffn": ffn, "final": final}
    return {name: by_role[role] for name, role in norm_roles(model).items()}


def swap_norm(model: nn.Module, kind: str, alpha: float | Mapping[str, float] = norms.DEFAULT_ALPHA, *,
              roles: Collection[str] = ROLES) -> SwapReport:
    """Make every norm of `model` a `kind` norm (layernorm, dyt, rmsnorm or none), or with
    `keep` leave every norm as it is. `roles` limits the swap to the norms of those roles
    (the ReLU study removes the block norms, "attn" and "ffn", and keeps the final one).

    `alpha` is DyT's initial alpha: one value for all layers, or a mapping from module name to
    value (`alphas_by_role`, or a calibration's `alphas`) that must cover every replaced module.
    """
    if kind == KEEP:
        return SwapReport(KEEP, (), tuple(norm_modules(model)))
    if kind not in norms.KINDS:
        raise ValueError(f"unknown norm kind {kind!r}; use one of {KEEP}, {', '.join(norms.KINDS)}")
    found = norm_modules(model)
    wanted = set(found) if set(roles) >= set(ROLES) else {n for n, r in norm_roles(model).items() if r in roles}
    to_replace = [name for name, module in found.items() if name in wanted and norms.kind_of(module) != kind]
    per_layer = alpha if isinstance(alpha, Mapping) else dict.fromkeys(to_replace, alpha)
    missing = [name for name in to_replace if name not in per_layer]
    if kind == "dyt" and missing:
        raise ValueError(f"no calibrated alpha for {', '.join(missing)}; calibrate this same model first")
    for name in to_replace:
        model.set_submodule(name, norms.from_norm(kind, found[name], per_layer.get(name, norms.DEFAULT_ALPHA)))
    kept = tuple(name for name in found if name not in to_replace)
    return SwapReport(kind, tuple(to_replace), kept)


def activation_kind(act: nn.Module) -> str:
    name = type(act).__name__.lower()
    return "gelu" if "gelu" in name else "relu" if "relu" in name else name


def swap_activation(model: nn.Module, name: str) -> SwapReport:
    """Make the MLP activation of every layer `name` (gelu or relu) and record it in the config.

    A GELU variant (GPT-2's tanh approximation, say) counts as gelu and is kept.
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; use one of {', '.join(ACTIVATIONS)}")
    family = families.of_model(model)
    mlps = {n: m for n, m in model.named_modules() if type(m).__name__ in family.mlp_classes}
    replaced = tuple(n for n, m in mlps.items() if activation_kind(m.act) != name)
    for mlp_name in replaced:
        mlps[mlp_name].act = ACT2FN[name]
    if replaced:
        _record_activation(model.config, family, name)
    kept = tuple(n for n in mlps if n not in replaced)
    return SwapReport(name, tuple(f"{n}.act" for n in replaced), tuple(f"{n}.act" for n in kept))


def _record_activation(config, family: families.Family, name: str) -> None:
    """Write `name` into the config fields that choose the activation, so a saved model reloads with it."""
    for field in family.activation_config_fields:
        if field == "feed_forward_proj":  # T5: "relu" or "gated-gelu"; keep the gating
            value = f"gated-{name}" if config.is_gated_act else name
        else:
            value = name
        setattr(config, field, value)
