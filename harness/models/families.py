"""What gridlab knows about each supported architecture.

A `Family` holds the facts the rest of the harness needs and cannot read from the model
itself: which `config.model_type` values belong to it, whether it is encoder-decoder, where its
MLP activation lives and which config field names it, which projections adapters target, and
the shape of its tiny offline variant.
"""

from __future__ import annotations

import dataclasses
from typing import Any



# eq=False: families are singletons, compared and hashed by identity.
@dataclasses.dataclass(frozen=True, eq=False)
class Family:
    name: str
    model_types: tuple[str, ...]
    seq2seq: bool
    # Class names of the modules that own an `act` attribute (the MLP activation).
    mlp_classes: tuple[str, ...]
    # Config fields that name the MLP activation; updated by `surgery.swap_activation` so a
    # saved config reloads with the swapped activation.
    activation_config_fields: tuple[str, ...]
    # LoRA targets: every attention and MLP projection (peft's own default is attention only).
    lora_targets: tuple[str, ...]
    # Keyword arguments for the tiny offline variant's config class.
    tiny_config: dict[str, Any]
    # Extra LoraConfig/IA3Config keywords (GPT-2 stores Conv1D weights transposed).
    adapter_extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Class names of the transformer blocks (one per layer), for per-layer diagnostics.
    block_classes: tuple[str, ...] = ()
    # What each norm normalises, by the last part of its module name: "attn" (the input of an
    # attention sub-layer), "ffn" (of a feed-forward sub-layer) or "final" (the stack's output).
    # DyT's initial alpha can differ per role, as the DyT paper sets it for its LLMs. A name
    # missing here (T5's "layer_norm") takes its role from its parent module's class name.
    norm_roles: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def ia3_targets(self) -> tuple[str, ...]:
        import peft.utils.constants as peft_constants  # heavy: only when adapters are set up

        return tuple(peft_constants.TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING[self.model_types[0]])

    @property
    def ia3_feedforward(self) -> tuple[str, ...]:
        import peft.utils.constants as peft_constants

        return tuple(peft_constants.TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING[self.model_types[0]])


GPT2 = Family(
    name="gpt2",
    model_types=("gpt2",),
    seq2seq=False,
    mlp_classes=("GPT2MLP",),
    activation_config_fields=("activation_function",),
    lora_targets=("c_attn", "c_proj", "c_fc"),
    adapter_extra={"fan_in_fan_out": True},
    block_classes=("GPT2Block",),
    norm_roles={"ln_1": "attn", "ln_cross_attn": "attn", "ln_2": "ffn", "ln_f": "final"},
    tiny_config={"n_embd": 64, "n_layer": 2, "n_head": 2, "n_positions": 256},
)

GPT_NEOX = Family(
    name="gpt_neox",
    model_types=("gpt_neox",),
    seq2seq=False,
    mlp_classes=("GPTNeoXMLP",),
    activation_config_fields=("hidden_act",),
    lora_targets=("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
    block_classes=("GPTNeoXLayer",),
    norm_roles={"input_layernorm": "attn", "post_attention_layernorm": "ffn", "final_layer_norm": "final"},
    tiny_config={
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 256,
        "max_position_embeddings": 256,
    },
)

T5 = Family(
    name="t5",
    model_types=("t5",),
    seq2seq=True,
    mlp_classes=("T5DenseActDense", "T5DenseGatedActDense"),
    activation_config_fields=("dense_act_fn", "feed_forward_proj"),
    lora_targets=("q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"),
    block_classes=("T5Block",),
    # layer.k.layer_norm: T5LayerSelfAttention / T5LayerCrossAttention -> attn, T5LayerFF -> ffn
    norm_roles={"final_layer_norm": "final"},
    tiny_config={"d_model": 64, "d_kv": 32, "d_ff": 128, "num_layers": 2, "num_heads": 2},
)

ALL = (GPT2, GPT_NEOX, T5)


def for_model_type(model_type: str) -> Family | None:
    """The family whose architecture `model_type` (a transformers config field) names."""
    return next((family for family in ALL if model_type in family.model_types), None)


def of_config(config) -> Family:
    """The family of a transformers config; a ValueError naming the supported ones otherwise."""
    model_type = getattr(config, "model_type", None)
    family = for_model_type(model_type)
    if family is None:
        supported = ", ".join(t for f in ALL for t in f.model_types)
        raise ValueError(f"model type {model_type!r} is not a supported family; gridlab supports {supported}")
    return family


def of_model(model) -> Family:
    return of_config(getattr(model, "config", None))
