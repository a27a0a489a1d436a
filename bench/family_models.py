"""Random-weight models in each family's layout, with SmolLM2's tokenizer: for tests and for timing engines.
`--tokenizer sentencepiece` (gemma, gemma2, gemma3, phi3) saves instead a tiny sentencepiece tokenizer trained
here on evalsets/demo (tokenizer.model + tokenizer.json, the family's chat turn markers as special tokens): the kind
of tokenizer those checkpoints ship, which llama.cpp's Gemma, Gemma 2 and Phi-3 converters read. `--tokenizer bpe`
(qwen2): a tiny byte-level BPE with Qwen2's pre-tokenizer and ChatML turn markers, trained here likewise.

Weights are random (seeded): they time an engine and pin its numerics, they do not answer anything. Sizes:
`TINY` (hidden 64, 2 layers: tests) or `SMOL` (SmolLM2-135M's: hidden 576, 30 layers, 9 query / 3 K/V heads
of 64, MLP 1536, tied embeddings: bench/eval_throughput.py --model).

    python bench/family_models.py qwen2 /tmp/qwen2-smol --size smol
    python bench/family_models.py gemma2 /tmp/gemma2-tiny --size tiny --tokenizer sentencepiece
"""
from __future__ import annotations

import argparse
import json
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
TOKENIZERS = ("smollm2", "sentencepiece", "bpe")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")
_CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
           "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
_GEMMA_CHAT = ("{{ bos_token }}{% for m in messages %}"
               "{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
               "{% if role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
               "{{ '<start_of_turn>' + role + '\\n' + m['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
               "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}")
_PHI3_CHAT = ("{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] + '<|end|>\\n' }}{% endfor %}"
              "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}")
# per family: sentencepiece ids, turn markers (Gemma's inside the sentencepiece model, as Gemma's are; the others
# added after it, as Phi-3's are), tokenizer class, eos (None: sentencepiece's), chat template
_GEMMA_SP = ({"pad_id": 0, "eos_id": 1, "bos_id": 2, "unk_id": 3, "pad_piece": "<pad>", "eos_piece": "<eos>",
              "bos_piece": "<bos>", "unk_piece": "<unk>"}, ("<start_of_turn>", "<end_of_turn>"), True,
             "GemmaTokenizer", None, _GEMMA_CHAT)
_LLAMA_IDS = {"unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1}
SENTENCEPIECE = {
    "gemma": _GEMMA_SP, "gemma2": _GEMMA_SP, "gemma3": _GEMMA_SP,
    "phi3": (_LLAMA_IDS, ("<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"), False,
             "LlamaTokenizer", "<|endoftext|>", _PHI3_CHAT),
}


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


def sentencepiece_tokenizer(family: str, out_dir: Path, vocab_size: int = 512):
    """A sentencepiece tokenizer trained (BPE, byte fallback, seeded data order) on evalsets/demo's messages, in
    `family`'s style (SENTENCEPIECE), saved to `out_dir` with its tokenizer.model; returns the loaded tokenizer."""
    import io
    import tempfile

    import sentencepiece as spm
    import transformers as tf

    if family not in SENTENCEPIECE:
        raise ValueError(f"no sentencepiece tokenizer style for {family}: one of {', '.join(SENTENCEPIECE)}")
    ids, markers, markers_inside, cls_name, eos, template = SENTENCEPIECE[family]
    texts = _demo_texts()
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size,
                                   model_type="bpe", byte_fallback=True, character_coverage=1.0, num_threads=1,
                                   user_defined_symbols=list(markers) if markers_inside else [],
                                   add_dummy_prefix=not markers_inside, minloglevel=2, **ids)
    with tempfile.TemporaryDirectory() as fresh:  # converted from tokenizer.model alone, never an older tokenizer.json
        (Path(fresh) / "tokenizer.model").write_bytes(model.getvalue())
        (Path(fresh) / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": cls_name}))
        tok = getattr(tf, cls_name).from_pretrained(fresh)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.model").write_bytes(model.getvalue())
    tok.add_special_tokens({"additional_special_tokens": list(markers)})
    if eos:
        tok.eos_token = eos
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.chat_template = template
    tok.save_pretrained(str(out_dir))
    return tok


def _demo_texts() -> list[str]:
    return [m["content"] for line in (REPO / "evalsets" / "demo" / "train.jsonl").read_text().splitlines()
            for m in json.loads(line)["messages"]]


def bpe_tokenizer(family: str, out_dir: Path, vocab_size: int = 600):
    """A byte-level BPE with Qwen2's pre-tokenizer, trained on evalsets/demo's messages, ChatML turn markers as
    special tokens (as Qwen2's): saved to `out_dir`; returns the tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if family != "qwen2":
        raise ValueError(f"no BPE tokenizer style for {family}: qwen2 only")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_SPLIT), "isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe.train_from_iterator(_demo_texts(), trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                               show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=specials[1:])
    tok.chat_template = _CHATML
    tok.save_pretrained(str(out_dir))
    return tok


def build(family: str, out_dir: Path, size: dict = TINY, seed: int = 0, tokenizer: str = "smollm2",
          **config) -> Path:
    """Save a random `family` model and its tokenizer (SmolLM2's, or one trained here: `tokenizer="sentencepiece"`,
    sentencepiece_tokenizer; `"bpe"`, bpe_tokenizer) to `out_dir` (a model.path for source=hf)."""
    from transformers import AutoTokenizer

    from harness.models import resolve_tokenizer_source

    out_dir = Path(out_dir)
    if tokenizer == "sentencepiece":
        tok = sentencepiece_tokenizer(family, out_dir)
    elif tokenizer == "bpe":
        tok = bpe_tokenizer(family, out_dir)
    elif tokenizer == "smollm2":
        tok = AutoTokenizer.from_pretrained(str(resolve_tokenizer_source()))
    else:
        raise ValueError(f"tokenizer {tokenizer!r}: one of {', '.join(TOKENIZERS)}")
    model = family_model(family, size, tok, seed, **config)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tok.save_pretrained(str(out_dir))
    return out_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("family", choices=FAMILIES)
    ap.add_argument("out")
    ap.add_argument("--size", choices=("tiny", "smol"), default="smol")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", choices=TOKENIZERS, default="smollm2")
    a = ap.parse_args()
    print(build(a.family, Path(a.out), SMOL if a.size == "smol" else TINY, a.seed, a.tokenizer))


if __name__ == "__main__":
    main()
