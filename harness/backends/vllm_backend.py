"""vLLM backend (CUDA): the base model with every adapter as a LoRA, selected per request.

mode="inprocess": one vllm.LLM(enable_lora=True) in this process; each adapter gets one
LoRARequest (stable integer id), requests for the base model pass none. All requests go to
llm.generate in one call, so vLLM batches base and adapters together.

mode="server": `vllm serve <model> --enable-lora --lora-modules name=path ... --served-model-name base`
in its own process group (stopped like the llama.cpp servers: harness.llama_server), then
OpenAIBackend against it.

Prompts are rendered here with harness.prompts.render_prompt (the training format) and sent as
plain text prompts (in-process) or to /v1/completions (server), never through vLLM's own chat
template handling.

max_lora_rank defaults to the largest `r` among the adapters (adapter_config.json, rank_pattern
included), rounded up to a rank vLLM accepts; max_loras defaults to the number of adapters.
vllm is imported lazily: without it, or without CUDA, construction raises UserError.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

from harness.backends.base import BASE, Completion, GenParams, ProgressFn, Request, ServeSpec, ServedAdapters
from harness.io import UserError


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
NEEDS = "vllm backend needs a CUDA GPU and `pip install lora-harness[vllm]`"


def adapter_rank(adapter_dir: str | os.PathLike) -> int:
    """The largest LoRA rank in a PEFT adapter_config.json (r and any rank_pattern override)."""
    p = Path(adapter_dir) / "adapter_config.json"
    try:
        cfg = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: cannot read adapter config: {e}") from e
    ranks = [int(cfg.get("r") or 0)] + [int(v) for v in (cfg.get("rank_pattern") or {}).values()]
    return max(ranks)


def round_lora_rank(r: int) -> int:
    for v in VLLM_LORA_RANKS:
        if v >= r:
            return v
    raise UserError(f"LoRA rank {r} is larger than vLLM supports (max {VLLM_LORA_RANKS[-1]})")


def check_vllm() -> None:
    """UserError unless vllm is importable and a CUDA GPU is visible."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise UserError(f"{NEEDS} (vllm is not installed)")
    try:
        import torch

        ok = torch.cuda.is_available()
    except Exception:  # pragma: no cover
        ok = False
    if not ok:
        raise UserError(f"{NEEDS} (no CUDA GPU visible)")


class VLLMBackend(ServedAdapters):
    name = "vllm"

    def __init__(
        self,
        spec: ServeSpec,
        mode: str = "inprocess",
        max_loras: int | None = None,
        max_lora_rank: int | None = None,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        dtype: str = "auto",
        seed: int = 0,
        tensor_parallel_size: int = 1,
        enforce_eager: bool = False,
        host: str = "127.0.0.1",
        port: int | None = None,
        concurrency: int = 32,
        timeout_s: float = 600.0,
        max_retries: int = 3,
        startup_timeout_s: float = 900.0,
        extra_args: Sequence[str] = (),
        engine_kwargs: dict | None = None,
        log_dir: str | None = None,
        dry_run: bool = False,
    ):
        """dry_run=True builds the engine/serve arguments only (no vllm, no GPU): for tests and inspection."""
        if mode not in ("inprocess", "server"):
            raise UserError(f"backend.mode must be inprocess or server (got {mode!r})")
        from harness.models import resolve_model

        self.mode = mode
        self.model_spec = resolve_model(spec.model_cfg)
        self.adapter_dirs: dict[str, Path] = {}
        for key, adir in (spec.adapters or {}).items():
            key, adir = str(key), Path(adir)
            if key == BASE:
                raise UserError(f"adapter name {key!r} is reserved for the base model")
            if not (adir / "adapter_config.json").is_file():
                raise UserError(f"{adir}: no adapter_config.json (not a PEFT adapter folder)")
            self.adapter_dirs[key] = adir
        ranks = [adapter_rank(d) for d in self.adapter_dirs.values()]
        self.max_lora_rank = round_lora_rank(max(ranks + [int(max_lora_rank or 0), 1]))
        self.max_loras = int(max_loras) if max_loras else max(1, len(self.adapter_dirs))
        self.engine_args: dict[str, Any] = dict(
            model=str(self.model_spec.path),
            tokenizer=str(self.model_spec.path),
            enable_lora=True,
            max_loras=self.max_loras,
            max_lora_rank=self.max_lora_rank,
            gpu_memory_utilization=float(gpu_memory_utilization),
            dtype=dtype,
            seed=int(seed),
            tensor_parallel_size=int(tensor_parallel_size),
            trust_remote_code=self.model_spec.trust_remote_code,
            enforce_eager=bool(enforce_eager),
        )
        if max_model_len:
            self.engine_args["max_model_len"] = int(max_model_len)
        self.engine_args.update(engine_kwargs or {})
        self.host, self.port = host, port
        self.extra_args = tuple(str(a) for a in extra_args)
        self._client_opts = dict(concurrency=concurrency, timeout_s=timeout_s, max_retries=max_retries)
        self.startup_timeout_s = float(startup_timeout_s)
        self.log_dir = log_dir
        self.llm = None
        self.client = None
        self._server = None
        if dry_run:
            return
        check_vllm()
        from harness.models import load_tokenizer

        self.tokenizer = load_tokenizer(self.model_spec)
        if mode == "inprocess":
            self._start_inprocess()
        else:
            self._start_server(spec)

    # ------------------------------------------------------------------ argument building (unit-tested)
    def lora_requests(self) -> dict[str, Any]:
        """name -> LoRARequest(name, int id starting at 1, path)."""
        from vllm.lora.request import LoRARequest

        return {k: LoRARequest(k, i + 1, str(d)) for i, (k, d) in enumerate(self.adapter_dirs.items())}

    def serve_args(self, port: int) -> list[str]:
        """Arguments of `vllm serve` (after the word serve)."""
        a = self.engine_args
        args = [
            str(a["model"]),
            "--served-model-name", BASE,
            "--host", self.host,
            "--port", str(port),
            "--enable-lora",
            "--max-loras", str(a["max_loras"]),
            "--max-lora-rank", str(a["max_lora_rank"]),
            "--gpu-memory-utilization", str(a["gpu_memory_utilization"]),
            "--dtype", str(a["dtype"]),
            "--seed", str(a["seed"]),
            "--tensor-parallel-size", str(a["tensor_parallel_size"]),
        ]
        if self.adapter_dirs:
            args += ["--lora-modules", *[f"{k}={d}" for k, d in self.adapter_dirs.items()]]
        if "max_model_len" in a:
            args += ["--max-model-len", str(a["max_model_len"])]
        if a.get("trust_remote_code"):
            args.append("--trust-remote-code")
        if a.get("enforce_eager"):
            args.append("--enforce-eager")
        return args + list(self.extra_args)

    @staticmethod
    def sampling_kwargs(p: GenParams) -> dict[str, Any]:
        kw: dict[str, Any] = dict(
            n=1,
            max_tokens=int(p.max_new_tokens),
            temperature=float(p.temperature),
            top_p=float(p.top_p) if p.temperature > 0 else 1.0,
            seed=int(p.seed),
            stop=list(p.stop) or None,
        )
        if p.logprobs:
            kw["logprobs"] = int(p.logprobs)
        return kw

    # ------------------------------------------------------------------ startup
    def _start_inprocess(self) -> None:
        try:
            from vllm import LLM
        except Exception as e:
            raise UserError(f"{NEEDS} (import failed: {e})") from e
        self.llm = LLM(**self.engine_args)
        self._lora = self.lora_requests()

    def _start_server(self, spec: ServeSpec) -> None:
        import tempfile

        from harness.backends.openai_backend import OpenAIBackend
        from harness.llama_server import free_port, register, spawn_module, stop_processes, unregister, wait_ready
        from harness.prompts import render_prompt

        port = self.port or free_port(self.host)
        log_dir = Path(self.log_dir or tempfile.mkdtemp(prefix="vllm-server-"))
        log = log_dir / "vllm.log"
        proc = spawn_module("vllm.entrypoints.cli.main", ["serve", *self.serve_args(port)], log)
        backend = self

        class _Handle:
            def stop(self_inner):
                stop_processes([proc], timeout_s=30)
                unregister(self_inner)

        self._server = _Handle()
        register(self._server)
        url = f"http://{self.host}:{port}/v1"
        try:
            wait_ready(proc, url + "/models", time.monotonic() + self.startup_timeout_s, log, "vllm server")
            tok = self.tokenizer
            self.client = OpenAIBackend(
                spec,
                base_url=url,
                api_key_env="",
                model_names={BASE: BASE, **{k: k for k in self.adapter_dirs}},
                identities={k: backend.model_identity(k) for k in backend.model_keys()},
                prompt_renderer=lambda messages: render_prompt(tok, messages),
                **self._client_opts,
            )
        except BaseException:
            self._server.stop()
            raise

    # ------------------------------------------------------------------ protocol
    def generate(self, requests: Sequence[Request], progress: ProgressFn | None = None) -> list[Completion]:
        self.check_keys(r.model_key for r in requests)
        if self.client is not None:
            return self.client.generate(requests, progress)
        if not requests:
            return []
        from vllm import SamplingParams

        from harness.prompts import render_prompt

        prompts = [render_prompt(self.tokenizer, r.message_dicts()) for r in requests]
        params = [SamplingParams(**self.sampling_kwargs(r.params)) for r in requests]
        loras = [None if r.model_key == BASE else self._lora[r.model_key] for r in requests]
        t0 = time.perf_counter()
        outs = self.llm.generate(prompts, params, lora_request=loras, use_tqdm=False)
        per = (time.perf_counter() - t0) / len(requests)
        result = [self._to_completion(o, per) for o in outs]
        if progress is not None:
            progress(len(result))
        return result

    def _to_completion(self, o, latency: float) -> Completion:
        c = o.outputs[0]
        logprobs = None
        if c.logprobs:
            logprobs = []
            for tid, step in zip(c.token_ids, c.logprobs):
                chosen = step.get(tid)
                logprobs.append(
                    {
                        "token": (chosen.decoded_token if chosen is not None else self.tokenizer.decode([tid])) or "",
                        "logprob": float(chosen.logprob) if chosen is not None else float("nan"),
                        "top": {(lp.decoded_token or str(t)): float(lp.logprob) for t, lp in step.items()},
                    }
                )
        return Completion(
            text=c.text,
            prompt_tokens=len(o.prompt_token_ids or []),
            completion_tokens=len(c.token_ids),
            finish_reason="length" if c.finish_reason == "length" else "stop",
            latency_s=latency,
            logprobs=logprobs,
        )

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self.llm is not None:
            self.llm = None
            try:
                import gc

                import torch

                gc.collect()
                torch.cuda.empty_cache()
            except Exception:  # pragma: no cover
                pass
