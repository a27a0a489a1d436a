"""Any OpenAI-compatible chat-completions server (OpenAI, vLLM serve, llama.cpp server, ...).

Model keys map to served model names: "base" -> the base model's served name, each adapter
name -> the name the server serves it under (vLLM `--lora-modules name=path`, a llama.cpp
alias). `model_names` in the config overrides any of them.

Reliability: up to `concurrency` requests in flight; each one is retried with exponential
backoff + full jitter (base * 2^attempt, capped at backoff_max_s) on 429, 5xx, connection
errors and timeouts, `max_retries` times; then BackendError names the URL, the model and the
last error. 401/403/404 raise BackendError at once (misconfiguration: key, URL or model name).
Other 4xx (e.g. a prompt longer than the server's context) give that one request an empty
Completion with finish_reason="error" so one bad item does not sink a whole evaluation.

Secrets: the API key is read only from the environment variable named by `api_key_env`; it is
never stored in config, logged, or shown in repr/str of the backend or of any error (error texts
are scrubbed). Without the variable, a placeholder key is sent (fine for local servers).
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.backends.base import BASE, Completion, GenParams, ProgressFn, Request, ServeSpec
from harness.io import UserError, sha256_file, stable_hash

log = logging.getLogger(__name__)
NO_KEY = "sk-no-key-required"


class BackendError(RuntimeError):
    """A serving backend could not produce a completion (after retries, or misconfigured)."""


def _served_base_name(spec: ServeSpec) -> str:
    cfg = spec.model_cfg or {}
    for k in ("served_name", "path", "name"):
        v = cfg.get(k) if hasattr(cfg, "get") else None
        if v:
            return str(v)
    return BASE


class OpenAIBackend:
    name = "openai"

    def __init__(
        self,
        spec: ServeSpec,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        model_names: dict[str, str] | None = None,
        concurrency: int = 4,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        base_urls: dict[str, str] | None = None,
        identities: dict[str, str] | None = None,
        logprobs_supported: bool = True,
        prompt_renderer: Callable[[list[dict]], str] | None = None,
    ):
        if not base_url and not base_urls:
            raise UserError("backend.base_url is required for the openai backend (e.g. http://127.0.0.1:8000/v1)")
        self.spec = spec
        self.base_url = str(base_url or "").rstrip("/")
        self.api_key_env = str(api_key_env or "")
        self.concurrency = max(1, int(concurrency))
        self.timeout_s = float(timeout_s)
        self.max_retries = max(0, int(max_retries))
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        # per-key URL overrides (one llama.cpp server per adapter); the default is base_url
        self._urls = {k: str(v).rstrip("/") for k, v in (base_urls or {}).items()}
        names = {BASE: _served_base_name(spec)}
        names.update({k: k for k in spec.adapters})
        names.update({str(k): str(v) for k, v in (model_names or {}).items()})
        self.model_names = names
        self._identities = dict(identities or {})
        self._logprobs_ok: dict[str, bool] = {}
        self._logprobs_default = bool(logprobs_supported)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._rng = random.Random()
        # With a renderer, prompts are rendered here (harness.prompts, the training format) and sent
        # to /v1/completions; without one, messages go to /v1/chat/completions (the server renders).
        self.prompt_renderer = prompt_renderer

    # ------------------------------------------------------------------ protocol
    def model_keys(self) -> list[str]:
        return list(dict.fromkeys([BASE, *self.model_names]))

    def model_identity(self, model_key: str) -> str:
        """Hash of the served model name (+ the adapter file hash when the adapter is a local folder)."""
        self._check_key(model_key)
        if model_key in self._identities:
            return self._identities[model_key]
        adapter_hash = None
        d = self.spec.adapters.get(model_key)
        if d is not None and (Path(d) / "adapter_model.safetensors").is_file():
            adapter_hash = sha256_file(Path(d) / "adapter_model.safetensors")
        ident = stable_hash({"served": self.model_names[model_key], "adapter": adapter_hash}, 16)
        self._identities[model_key] = ident
        return ident

    def generate(self, requests: Sequence[Request], progress: ProgressFn | None = None) -> list[Completion]:
        for r in requests:
            self._check_key(r.model_key)
        out: list[Completion | None] = [None] * len(requests)
        if not requests:
            return []
        progress_lock = threading.Lock()

        def work(i: int) -> None:
            out[i] = self._one(requests[i])
            if progress is not None:
                with progress_lock:
                    progress(1)

        if self.concurrency == 1 or len(requests) == 1:
            for i in range(len(requests)):
                work(i)
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests)), thread_name_prefix="openai") as ex:
                futures = [ex.submit(work, i) for i in range(len(requests))]
                try:
                    for f in futures:
                        f.result()
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
        return out  # type: ignore[return-value]

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
        for c in clients.values():
            try:
                c.close()
            except Exception:
                pass

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_url={self.base_url!r}, api_key_env={self.api_key_env!r}, models={self.model_names!r})"

    __str__ = __repr__

    # ------------------------------------------------------------------ internals
    def url_for(self, model_key: str) -> str:
        return self._urls.get(model_key, self.base_url)

    def _check_key(self, model_key: str) -> None:
        if model_key not in self.model_names:
            raise UserError(f"unknown model key {model_key!r} for the openai backend (known: {', '.join(self.model_keys())})")

    def _api_key(self) -> str:
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""

    def _scrub(self, text: str) -> str:
        key = self._api_key()
        if key and len(key) >= 4:
            text = text.replace(key, "***")
        return text

    def _client(self, url: str):
        with self._lock:
            c = self._clients.get(url)
            if c is None:
                try:
                    import openai
                except ImportError as e:  # pragma: no cover - openai is a core dependency
                    raise UserError("the openai backend needs the `openai` package: pip install openai") from e
                c = openai.OpenAI(base_url=url, api_key=self._api_key() or NO_KEY, max_retries=0, timeout=self.timeout_s)
                self._clients[url] = c
            return c

    def _kwargs(self, r: Request, served: str, with_logprobs: bool) -> dict:
        p: GenParams = r.params
        kw: dict[str, Any] = dict(
            model=served,
            max_tokens=int(p.max_new_tokens),
            temperature=float(p.temperature),
            top_p=float(p.top_p),
            seed=int(p.seed),
        )
        if p.stop:
            kw["stop"] = list(p.stop)
        if self.prompt_renderer is not None:
            kw["prompt"] = self.prompt_renderer(r.message_dicts())
            if p.logprobs and with_logprobs:
                kw["logprobs"] = int(p.logprobs)
        else:
            kw["messages"] = r.message_dicts()
            if p.logprobs and with_logprobs:
                kw["logprobs"] = True
                kw["top_logprobs"] = int(p.logprobs)
        return kw

    def _delay(self, attempt: int) -> float:
        cap = min(self.backoff_max_s, self.backoff_base_s * (2 ** attempt))
        return self._rng.uniform(cap / 2, cap)  # "equal jitter": never zero, never above the cap

    def _one(self, r: Request) -> Completion:
        import openai

        url = self.url_for(r.model_key)
        served = self.model_names[r.model_key]
        want_lp = bool(r.params.logprobs) and self._logprobs_ok.get(url, self._logprobs_default)
        last: str = ""
        attempt = 0
        while True:
            t0 = time.perf_counter()
            try:
                client = self._client(url)
                kw = self._kwargs(r, served, want_lp)
                if self.prompt_renderer is not None:
                    resp = client.completions.create(**kw)
                else:
                    resp = client.chat.completions.create(**kw)
                return self._to_completion(resp, time.perf_counter() - t0)
            except (openai.APIConnectionError, openai.APITimeoutError) as e:  # includes timeouts
                last = f"{type(e).__name__}: {e}"
            except openai.APIStatusError as e:
                status = e.status_code
                msg = self._scrub(f"HTTP {status}: {_err_text(e)}")
                if status == 429 or status >= 500:
                    last = msg
                elif status in (401, 403, 404):
                    raise BackendError(f"{url}: model {served!r}: {msg}") from None
                elif want_lp and "logprob" in msg.lower():
                    self._logprobs_ok[url] = False  # server cannot do logprobs: go on without them
                    want_lp = False
                    continue
                else:
                    log.warning("%s: model %r: request rejected: %s", url, served, msg)
                    return Completion(text="", finish_reason="error", latency_s=time.perf_counter() - t0)
            if attempt >= self.max_retries:
                raise BackendError(
                    f"{url}: model {served!r}: no completion after {attempt + 1} attempt(s); last error: {self._scrub(last)}"
                ) from None
            time.sleep(self._delay(attempt))
            attempt += 1

    @staticmethod
    def _to_completion(resp, latency: float) -> Completion:
        choice = resp.choices[0]
        usage = getattr(resp, "usage", None)
        fr = choice.finish_reason or "stop"
        logprobs = None
        lp = getattr(choice, "logprobs", None)
        if hasattr(choice, "text"):  # /v1/completions
            text = choice.text or ""
            if lp is not None and getattr(lp, "tokens", None):
                tops = lp.top_logprobs or [None] * len(lp.tokens)
                logprobs = [
                    {"token": t, "logprob": float(l if l is not None else float("nan")),
                     "top": {k: float(v) for k, v in (top or {}).items()}}
                    for t, l, top in zip(lp.tokens, lp.token_logprobs or [None] * len(lp.tokens), tops)
                ]
        else:
            text = (choice.message.content if choice.message is not None else None) or ""
        if lp is not None and getattr(lp, "content", None):
            logprobs = [
                {
                    "token": t.token,
                    "logprob": float(t.logprob),
                    "top": {tt.token: float(tt.logprob) for tt in (t.top_logprobs or [])},
                }
                for t in lp.content
            ]
        return Completion(
            text=text,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            finish_reason="length" if fr == "length" else "stop",
            latency_s=latency,
            logprobs=logprobs,
        )


def _err_text(e) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        m = err.get("message") if isinstance(err, dict) else body.get("message") or err
        if m:
            return str(m)[:500]
    return str(getattr(e, "message", e))[:500]
