"""Random-weight models in each family's layout, with SmolLM2's tokenizer: for tests and for timing engines.

Weights are random (seeded): they time an engine and pin its numerics, they do not answer anything. Sizes:
`TINY` (hidden 64, 2 layers: tests) or `SMOL` (SmolLM2-135M's: hidden 576, 30 layers, 9 query / 3 K/V heads
of 64, MLP 1536, tied embeddings: bench/eval_throughput.py --model).

    python bench/family_models.py qwen2 /tmp/qwen2-smol --size smol
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TINY = {"hidden": 64, "inter": 128, "layers": 2, "heads": 4, "kv": 2, "head_dim": 16}
SMOL = {"hidden": 576, "inter": 1536, "layers": 30, "heads": 9, "kv": 3, "head_dim": 64}
# LoRA targets of "all linear" per layout (Phi-3 fuses q/k/v and gate/up)
TARGETS = {"phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")}
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FAMILIES = ("llama", "llama_bias", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3")


def targets(family: str) -> tuple[str, ...]:
    return TARGETS.get(family, ALL_LINEAR)


def family_model(family: str, size: dict, tok, seed: int = 0, **config):
    """A seeded random causal LM of `family`'s class and `size`, its vocabulary `tok`'s; `config`: more settings."""
    import torch
    import transformers as tf

    common = dict(vocab_size=len(tok), hidden_size=size["hidden"], intermediate_size=size["inter"],
                  num_hidden_layers=size["layers"], num_attention_heads=size["heads"],
                  num_key_value_heads=size["kv"], head_dim=size["head_dim"], max_position_embeddings=2048,
                  tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id)
    two = ["sliding_attention", "full_attention"] * size["layers"]
    builders = {
        "llama": (tf.LlamaConfig, tf.LlamaForCausalLM, {}),
        "llama_bias": (tf.LlamaConfig, tf.LlamaForCausalLM, {"attention_bias": True, "mlp_bias": True}),
        "mistral": (tf.MistralConfig, tf.MistralForCausalLM, {"sliding_window": 4096}),
        "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM, {}),
        "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM, {}),
        "gemma": (tf.GemmaConfig, tf.GemmaForCausalLM, {}),
        "gemma2": (tf.Gemma2Config, tf.Gemma2ForCausalLM, {"query_pre_attn_scalar": size["head_dim"],
                                                           "layer_types": two[: size["layers"]]}),
        "gemma3": (tf.Gemma3TextConfig, tf.Gemma3ForCausalLM, {"query_pre_attn_scalar": size["head_dim"],
                                                               "layer_types": two[: size["layers"]]}),
        "phi3": (tf.Phi3Config, tf.Phi3ForCausalLM, {}),
    }
    config_cls, model_cls, extra = builders[family]
    config = config_cls(**common, **{**extra, **config})
    torch.manual_seed(seed)
    return model_cls(config)


def build(family: str, out_dir: Path, size: dict = TINY, seed: int = 0, **config) -> Path:
    """Save a random `family` model and SmolLM2's tokenizer to `out_dir` (a model.path for source=hf)."""
    from transformers import AutoTokenizer

    from harness.models import resolve_tokenizer_source

    tok = AutoTokenizer.from_pretrained(str(resolve_tokenizer_source()))
    model = family_model(family, size, tok, seed, **config)
    out_dir = Path(out_dir)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tok.save_pretrained(str(out_dir))
    return out_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("family", choices=FAMILIES)
    ap.add_argument("out")
    ap.add_argument("--size", choices=("tiny", "smol"), default="smol")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(build(a.family, Path(a.out), SMOL if a.size == "smol" else TINY, a.seed))


if __name__ == "__main__":
    main()
