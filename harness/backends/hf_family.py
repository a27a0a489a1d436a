"""Which models the lean forward (harness.backends.hf_lean) runs, and how each family's layer differs.

Why one description per family, not one forward per family: Llama, Mistral, Qwen2/2.5, Qwen3, Gemma 1/2/3
and Phi-3 share the decoder layer (pre-norm attention with rotary embeddings, gated MLP); what differs is a
handful of facts the one lean forward reads: which projections feed attention and the MLP (separate q/k/v or
Phi-3's fused `qkv_proj`), biases, a per-head RMSNorm on q and k (Qwen3, Gemma 3), norms around the attention
and MLP outputs (Gemma 2/3), rotary tables per layer type (Gemma 3's local layers), attention and final logit
soft-capping (Gemma 2), sliding windows. The norms, the activation, the embedding (Gemma's sqrt(hidden)
scale) and the rotary tables are the model's own modules, so their numerics are the model's; the attention
scaling is read from each attention module (Gemma's query_pre_attn_scalar).

Sliding windows: the lean forward attends to every column. That equals the model only while no row is longer
than the smallest window (`LeanSpec.window`); the hf backend sends the requests whose prompt plus new tokens could
pass it to the transformers forward, and says so (harness.backends.hf.HFBackend._past_window).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    attn_in: tuple[str, ...] = ("q_proj", "k_proj", "v_proj")  # attention's input projections, in output order
    mlp_in: tuple[str, ...] = ("gate_proj", "up_proj")  # the MLP's input projections: gate then up
    qk_norm: bool = False  # self_attn.q_norm / k_norm over each head's vector, before rotary (Qwen3, Gemma 3)
    sandwich: bool = False  # post_attention_layernorm on the attention output, pre/post_feedforward around the MLP
    window_from_config: bool = False  # config.sliding_window on every layer (Mistral), else self_attn.sliding_window
    rope_per_layer_type: bool = False  # rotary_emb(x, positions, layer_type) (Gemma 3: local layers' own base)

    @property
    def projections(self) -> tuple[str, ...]:
        return (*self.attn_in, "o_proj", *self.mlp_in, "down_proj")

    @property
    def fused(self) -> tuple[tuple[str, ...], ...]:
        """Projections that read the same input, one product each."""
        return (self.attn_in, ("o_proj",), self.mlp_in, ("down_proj",))


LLAMA = Family()
FAMILIES = {  # the causal-LM class -> its family
    "LlamaForCausalLM": LLAMA,
    "MistralForCausalLM": Family(window_from_config=True),
    "Qwen2ForCausalLM": LLAMA,
    "Qwen3ForCausalLM": Family(qk_norm=True),
    "GemmaForCausalLM": LLAMA,
    "Gemma2ForCausalLM": Family(sandwich=True),
    "Gemma3ForCausalLM": Family(qk_norm=True, sandwich=True, rope_per_layer_type=True),
    "Phi3ForCausalLM": Family(attn_in=("qkv_proj",), mlp_in=("gate_up_proj",), window_from_config=True),
}


@dataclass
class LeanSpec:
    """What the lean forward needs to know of one model beyond its modules."""
    family: Family
    window: int | None  # the smallest sliding window of any layer (None: no layer has one)
    attn_softcap: float | None
    final_softcap: float | None


def base_model(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _window(family: Family, cfg, attn) -> int | None:
    w = getattr(cfg, "sliding_window", None) if family.window_from_config else getattr(attn, "sliding_window", None)
    return int(w) if w else None


def describe(model) -> tuple[LeanSpec | None, str | None]:
    """The lean forward's description of `model`, or None and why it cannot run on it."""
    import torch

    base = base_model(model)
    cfg = getattr(base, "config", None)
    name = type(base).__name__
    family = FAMILIES.get(name)
    if family is None:
        return None, f"{name} has no lean forward (families: {', '.join(sorted(FAMILIES))})"
    if getattr(cfg, "use_bidirectional_attention", False):
        return None, "bidirectional attention"
    inner = getattr(base, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(base, "lm_head"):
        return None, f"{name} without the usual .model.layers / .lm_head"
    peft_cfg = getattr(model, "peft_config", None) or {}
    for ad, pc in peft_cfg.items():
        if type(pc).__name__ != "LoraConfig":
            return None, f"adapter {ad}: {type(pc).__name__} (only LoRA)"
        if getattr(pc, "use_dora", False) or getattr(pc, "lora_bias", False):
            return None, f"adapter {ad}: DoRA / LoRA bias"
        if getattr(pc, "modules_to_save", None) or getattr(pc, "trainable_token_indices", None):
            return None, f"adapter {ad}: modules_to_save / trainable tokens"
    windows = []
    for layer in inner.layers:
        at, mlp = layer.self_attn, layer.mlp
        if not callable(getattr(mlp, "act_fn", None) or getattr(mlp, "activation_fn", None)):
            return None, f"{name}: MLP without act_fn"
        if family.qk_norm and not (hasattr(at, "q_norm") and hasattr(at, "k_norm")):
            return None, f"{name}: attention without q_norm / k_norm"
        for group in family.fused:  # plain floating-point Linear weights only (not 4-bit / 8-bit ones)
            biased = set()
            for p in group:
                mod = getattr(at if p in family.attn_in or p == "o_proj" else mlp, p, None)
                lin = mod.base_layer if hasattr(mod, "base_layer") else mod
                if mod is None:
                    return None, f"{name}: no {p} projection"
                if type(lin) is not torch.nn.Linear or not lin.weight.is_floating_point():
                    dtype = getattr(getattr(lin, "weight", None), "dtype", None)
                    return None, f"{type(lin).__name__} projection with {dtype} weights (only plain float Linear)"
                biased.add(lin.bias is not None)
            if len(biased) > 1:
                return None, f"biases on some of {'/'.join(group)} but not all"
        windows.append(_window(family, cfg, at))
    allowed = set(family.projections)
    for mod_name, mod in model.named_modules():
        if hasattr(mod, "lora_A") and mod_name.rsplit(".", 1)[-1] not in allowed:
            if any(True for _ in mod.lora_A.keys()):
                return None, f"LoRA on {mod_name} (only the attention and MLP projections)"
        if hasattr(mod, "lora_embedding_A") and len(mod.lora_embedding_A):
            return None, f"LoRA on embeddings ({mod_name})"
    window = min((w for w in windows if w), default=None)
    return LeanSpec(family, window, getattr(cfg, "attn_logit_softcapping", None),
                    getattr(cfg, "final_logit_softcapping", None)), None


def unsupported(model) -> str | None:
    """Why `model` cannot run on the lean forward (None if it can)."""
    return describe(model)[1]


__all__ = ["FAMILIES", "Family", "LeanSpec", "describe", "unsupported"]
