"""llama.cpp backend: GGUF base + GGUF LoRAs behind llama.cpp's OpenAI-compatible server.

Setup (once): the base model (spec.model_cfg, resolved by harness.models to safetensors) is
converted to GGUF (`outtype`, default f16) and each PEFT adapter to a GGUF LoRA with llama.cpp's
own converters (harness.gguf; cached by content, so reruns reuse them). Then LlamaServer starts
one server process per model key (llama-cpp-python applies one LoRA per loaded model) and
requests go through OpenAIBackend.

Prompts are rendered here with the base model's HF tokenizer and harness.prompts.render_prompt
(exactly the training/hf-backend prompt) and sent to /v1/completions, so the prompt text does
not depend on llama.cpp's chat-template engine.

generate() runs one model key at a time (all of its requests, `concurrency` in flight): only one
server computes at any moment, so each can use every CPU thread without oversubscription.

model_identity() follows the hf backend's scheme (base = ModelSpec.identity; adapter =
harness.backends.base.adapter_identity(base identity, adapter dir)), so caches are shared
across backends: a GGUF f16 model decodes slightly differently from fp32 transformers, and a
user who wants the caches separate can include the backend name in the cache key (cache.py).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from harness.backends.base import Completion, ProgressFn, Request, ServeSpec, ServedAdapters
from harness.io import UserError



GGML_TYPES = {"f32": 0, "f16": 1, "q8_0": 8}


def _cpu_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


class LlamaCppBackend(ServedAdapters):
    name = "llamacpp"

    def __init__(
        self,
        spec: ServeSpec,
        n_ctx: int = 2048,
        threads: int | None = None,
        outtype: str = "f16",
        lora_outtype: str = "f32",
        quant: str | None = None,
        concurrency: int = 2,
        timeout_s: float = 300.0,
        max_retries: int = 3,
        extra_args: Sequence[str] = (),
        startup_timeout_s: float = 180.0,
        log_dir: str | None = None,
        kv_type: str | None = None,
    ):
        """kv_type: KV-cache type f32 | f16 | q8_0; default f32 when outtype is f32 (exact match with fp32
        transformers, also for adapters that make q/k large), llama.cpp's f16 otherwise."""
        from harness.gguf import convert_hf_to_gguf, convert_lora_to_gguf, quantize_gguf  # noqa: I001
        from harness.backends.llama_server import LlamaServer, llamacpp_available
        from harness.models import load_tokenizer, resolve_model

        if not llamacpp_available():
            raise UserError("the llamacpp backend needs llama-cpp-python: pip install 'lora-harness[llamacpp]'")
        self.model_spec = resolve_model(spec.model_cfg)
        model_dir = Path(self.model_spec.path)
        if not model_dir.is_dir():
            raise UserError(f"{model_dir}: the llamacpp backend needs a local model folder (hub ids are not converted)")
        self.check_options({"kv_type": kv_type, "outtype": outtype, "concurrency": concurrency})
        self.adapter_dirs: dict[str, Path] = self._take_adapters(spec.adapters)
        for adir in self.adapter_dirs.values():
            if not (adir / "adapter_model.safetensors").is_file():
                raise UserError(f"{adir}: not a PEFT adapter folder (needs adapter_config.json + adapter_model.safetensors)")
        trc = self.model_spec.trust_remote_code  # the user's own (targets.py drops a foreign directory's)
        self.base_gguf = convert_hf_to_gguf(model_dir, outtype=outtype, trust_remote_code=trc)
        if quant:
            q = self.base_gguf.with_name(self.base_gguf.stem + f"-{quant}.gguf")
            if not q.is_file():
                quantize_gguf(self.base_gguf, q, quant)
            self.base_gguf = q
        self.lora_ggufs = {k: convert_lora_to_gguf(d, model_dir, outtype=lora_outtype, trust_remote_code=trc)
                           for k, d in self.adapter_dirs.items()}
        self.tokenizer = load_tokenizer(self.model_spec)
        kv = kv_type or ("f32" if outtype == "f32" else None)
        if kv is not None:
            if kv not in GGML_TYPES:
                raise UserError(f"backend.kv_type must be one of {', '.join(GGML_TYPES)} (got {kv!r})")
            extra_args = ["--type_k", str(GGML_TYPES[kv]), "--type_v", str(GGML_TYPES[kv]), *extra_args]
        self.server = LlamaServer(
            self.base_gguf,
            self.lora_ggufs,
            n_ctx=n_ctx,
            n_threads=int(threads) if threads else _cpu_threads(),
            extra_args=extra_args,
            startup_timeout_s=startup_timeout_s,
            log_dir=log_dir,
        )
        self.server.start()
        try:
            from harness.backends.openai_backend import OpenAIBackend
            from harness.prompts import render_prompt

            tok = self.tokenizer
            self.client = OpenAIBackend(
                spec,
                base_url=self.server.base_url,
                base_urls=dict(self.server.urls),
                api_key_env="",
                model_names={k: k for k in self.server.urls},
                concurrency=concurrency,
                timeout_s=timeout_s,
                max_retries=max_retries,
                identities={k: self.model_identity(k) for k in self.server.urls},
                prompt_renderer=lambda messages: render_prompt(tok, messages),
                prompt_tokenizer=tok,
            )
        except BaseException:
            self.server.stop()
            raise

    @classmethod
    def check_options(cls, opts: dict) -> None:
        kv = opts.get("kv_type")
        if kv is not None and kv not in GGML_TYPES:
            raise UserError(f"backend.kv_type: must be one of {', '.join(GGML_TYPES)} (got {kv!r})")
        c = opts.get("concurrency", 2)
        if not isinstance(c, int) or isinstance(c, bool) or c < 1:
            raise UserError(f"backend.concurrency: must be an integer >= 1 (got {c!r})")

    # ------------------------------------------------------------------ protocol
    def generate(self, requests: Sequence[Request], progress: ProgressFn | None = None) -> list[Completion]:
        self.check_keys(r.model_key for r in requests)
        out: list[Completion | None] = [None] * len(requests)
        for key in dict.fromkeys(r.model_key for r in requests):
            idx = [i for i, r in enumerate(requests) if r.model_key == key]
            for i, c in zip(idx, self.client.generate([requests[i] for i in idx], progress)):
                out[i] = c
        return out  # type: ignore[return-value]

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        server = getattr(self, "server", None)
        if server is not None:
            server.stop()

    def __enter__(self) -> "LlamaCppBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LlamaCppBackend(base={self.base_gguf.name!r}, adapters={list(self.adapter_dirs)})"
