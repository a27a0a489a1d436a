"""Any OpenAI-compatible chat-completions server (OpenAI, vLLM serve, llama.cpp server, ...).

Model keys map to served model names: "base" -> the base model's served name, each adapter
name -> the name the server serves it under (vLLM `--lora-modules name=path`, a llama.cpp
alias). `model_names` in the config overrides any of them.

Reliability: up to `concurrency` requests in flight; each one is retried with exponential
backoff + jitter (base * 2^attempt, capped at backoff_max_s) on 429, 5xx, connection errors and
timeouts, `max_retries` times. Then:
- the server is unreachable (connection refused after every retry): BackendError naming the URL,
  the model and the last error (nothing can be served);
- 429/5xx/timeouts that persist, and other 4xx (e.g. a prompt longer than the server's context):
  that one request gets an error completion (Completion.failure: finish_reason "error", `error` says
  why), so one bad item does not sink an evaluation and is never scored as a wrong answer;
- 401/403/404 raise BackendError at once (misconfiguration: key, URL or model name).

Cache identity (model_identity): the served name, the adapter file hash when it is a local folder,
the base URL without credentials, and what the server reports for that model on /models (id, root,
parent, owned_by), so two servers serving different models under one name never share cached
completions. Backends that start their own server (llama.cpp, vLLM) pass identities explicitly.

Secrets: the key comes from the environment variable named by `api_key_env` or from `api_key`
(a literal, e.g. passed by a caller that read it from elsewhere); credentials in `base_url`
(`https://user:pw@host`) are sent as HTTP Basic auth (httpx's rule; then they replace the bearer
key) but stripped from `base_url`. None of them is
logged or shown in repr/str of the backend or of any error (error texts are scrubbed). Without a
key, a placeholder is sent (fine for local servers).
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

from urllib.parse import urlsplit, urlunsplit

from harness import control_tokens
from harness.backends.base import (BASE, BackendError, Completion, GenParams, ProgressFn, Request, ServeSpec,
                                   adapter_digest, cut_at_json_end)
from harness.io import UserError, stable_hash

log = logging.getLogger(__name__)
NO_KEY = "sk-no-key-required"
REPORTED_FIELDS = ("id", "root", "parent", "owned_by")  # stable fields of a /models entry ("created" is not)

__all__ = ["BackendError", "OpenAIBackend", "public_url"]


def public_url(url: str) -> str:
    """`url` without `user:password@` (what may be shown, logged and hashed)."""
    parts = urlsplit(str(url))
    if parts.username is None and parts.password is None:
        return str(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class _Secret:
    """Holds a credential; repr/str never show it (so dumps of the backend's __dict__ don't either)."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = str(value or "")

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***" if self._value else "''"

    __str__ = __repr__


# The loggers that can see a credential: ours and those of the client libraries this backend drives (the openai
# SDK's request dumps, httpx's and httpcore's DEBUG lines). A filter sits on each of them, not on the process.
# A logging.Filter on a logger sees only the records made by that very logger, so besides these names every
# logger of a package whose name starts with CLIENT_PACKAGES (httpx2, httpcore2 too) gets it once it exists.
SECRET_LOGGERS = (__name__, "openai", "openai._base_client", "httpx", "httpcore.connection", "httpcore.http11",
                  "httpcore.http2", "httpcore.proxy")
CLIENT_PACKAGES = ("openai", "httpx", "httpcore")


class _HideSecrets(logging.Filter):
    """Replaces known credential values by *** in the records of the loggers it is attached to."""

    def __init__(self) -> None:
        super().__init__()
        self.values: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.values:
            return True
        try:
            msg = record.getMessage()
        except Exception:  # a malformed record is the logging module's business
            return True
        if any(v in msg for v in self.values):
            for v in sorted(self.values, key=len, reverse=True):
                msg = msg.replace(v, "***")
            record.msg, record.args = msg, None
        return True


_HIDE = _HideSecrets()


def hide_in_logs(*values: str) -> None:
    """Replace these values by *** from now on in the records of SECRET_LOGGERS (ours, openai's, httpx's)."""
    _HIDE.values.update(v for v in values if v and len(v) >= 4)
    if not _HIDE.values:
        return
    _filter_client_loggers()


def _filter_client_loggers() -> None:
    """Put the filter on SECRET_LOGGERS and on every client-package logger created so far (after `import openai`)."""
    if not _HIDE.values:
        return
    existing = [name for name, lg in list(logging.root.manager.loggerDict.items())
                if isinstance(lg, logging.Logger) and name.split(".")[0].startswith(CLIENT_PACKAGES)]
    for name in dict.fromkeys([*SECRET_LOGGERS, *existing]):
        logger = logging.getLogger(name)
        if _HIDE not in logger.filters:
            logger.addFilter(_HIDE)


def _userinfo(url: str) -> list[str]:
    parts = urlsplit(str(url))
    out = [v for v in (parts.password, parts.username) if v]
    if "@" in parts.netloc:
        out.insert(0, parts.netloc.rsplit("@", 1)[0])
    return out


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
        api_key: str | None = None,
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
        prompt_tokenizer: Any = None,
    ):
        if not base_url and not base_urls:
            raise UserError("backend.base_url is required for the openai backend (e.g. http://127.0.0.1:8000/v1)")
        self.check_options({"base_url": base_url, "concurrency": concurrency, "max_retries": max_retries,
                            "timeout_s": timeout_s, "backoff_base_s": backoff_base_s, "backoff_max_s": backoff_max_s})
        self.spec = spec
        self._secret_urls: dict[str, _Secret] = {}  # public url -> url with credentials (used only to connect)
        self.base_url = self._register_url(base_url)
        self.api_key_env = str(api_key_env or "")
        self._literal_key = _Secret(api_key or "")
        hide_in_logs(self._api_key(), *[v for u in self._secret_urls.values() for v in (u.reveal(), *_userinfo(u.reveal()))])
        self.concurrency = max(1, int(concurrency))
        self.timeout_s = float(timeout_s)
        self.max_retries = max(0, int(max_retries))
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        # per-key URL overrides (one llama.cpp server per adapter); the default is base_url
        self._urls = {k: self._register_url(v) for k, v in (base_urls or {}).items()}
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
        self.prompt_tokenizer = prompt_tokenizer  # its control tokens must not reach a prompt-string server

    @classmethod
    def check_options(cls, opts: dict) -> None:
        for name, least in (("concurrency", 1), ("max_retries", 0)):
            v = opts.get(name, least)
            if not isinstance(v, int) or isinstance(v, bool) or v < least:
                raise UserError(f"backend.{name}: must be an integer >= {least} (got {v!r})")
        for name in ("timeout_s", "backoff_base_s", "backoff_max_s"):
            v = opts.get(name, 1.0)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                raise UserError(f"backend.{name}: must be a number of seconds > 0 (got {v!r})")
        url = opts.get("base_url", "http://x")
        if url and not str(url).startswith(("http://", "https://")):
            raise UserError(f"backend.base_url: must start with http:// or https:// (got {public_url(str(url))!r})")

    # ------------------------------------------------------------------ protocol
    def model_keys(self) -> list[str]:
        return list(dict.fromkeys([BASE, *self.model_names]))

    def model_identity(self, model_key: str) -> str:
        """Hash of served name, adapter file hash, base URL (no credentials) and the server's /models entry."""
        self._check_key(model_key)
        if model_key in self._identities:
            return self._identities[model_key]
        adapter_hash = None
        d = self.spec.adapters.get(model_key)
        if d is not None and (Path(d) / "adapter_model.safetensors").is_file():
            adapter_hash = adapter_digest(Path(d))
        served = self.model_names[model_key]
        url = self.url_for(model_key)
        ident = stable_hash({"served": served, "adapter": adapter_hash, "url": url,
                             "reported": self.reported_model(url, served)}, 16)
        self._identities[model_key] = ident
        return ident

    def reported_model(self, url: str, served: str) -> dict | None:
        """The server's /models entry for `served` (stable fields only); None when the server lists none.

        BackendError when the server cannot be reached at all (after retries): nothing can be served.
        """
        import openai

        cache = self.__dict__.setdefault("_reported", {})
        if url not in cache:
            attempt = 0
            while True:
                try:
                    cache[url] = {m.id: m.model_dump() for m in self._client(url).models.list()}
                    break
                except (openai.APIConnectionError, openai.APITimeoutError) as e:
                    if attempt >= self.max_retries:
                        raise BackendError(self._scrub(f"{url}: cannot list models after {attempt + 1} attempt(s): "
                                                       f"{type(e).__name__}: {e}")) from None
                except (openai.APIStatusError, ValueError, TypeError) as e:  # no /models endpoint, odd reply
                    log.info("%s: /models unavailable (%s); identity uses the served name only", url,
                             self._scrub(str(e))[:200])
                    cache[url] = {}
                    break
                time.sleep(self._delay(attempt))
                attempt += 1
        entry = cache[url].get(served)
        return None if entry is None else {k: entry.get(k) for k in REPORTED_FIELDS}

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

    def _register_url(self, url: str | None) -> str:
        real = str(url or "").rstrip("/")
        shown = public_url(real)
        if shown != real:
            self._secret_urls[shown] = _Secret(real)
            import base64

            parts = urlsplit(real)
            basic = base64.b64encode(f"{parts.username or ''}:{parts.password or ''}".encode()).decode()
            hide_in_logs(real, basic, *_userinfo(real))
        return shown

    def _api_key(self) -> str:
        if self._literal_key.reveal():
            return self._literal_key.reveal()
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""

    def _scrub(self, text: str) -> str:
        secrets = [self._api_key()]
        for real in self._secret_urls.values():
            secrets += [real.reveal(), *_userinfo(real.reveal())]
        for s in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
            text = text.replace(s, "***")
        return text

    def _client(self, url: str):
        with self._lock:
            c = self._clients.get(url)
            if c is None:
                try:
                    import openai
                except ImportError as e:  # pragma: no cover - openai is a core dependency
                    raise UserError("the openai backend needs the `openai` package: pip install openai") from e
                c = openai.OpenAI(base_url=self._secret_urls[url].reveal() if url in self._secret_urls else url, api_key=self._api_key() or NO_KEY,
                                  max_retries=0, timeout=self.timeout_s)
                _filter_client_loggers()  # the SDK's HTTP stack is imported now: its loggers exist
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
        refused = control_tokens.refusal(self.prompt_tokenizer, r.message_dicts()) if self.prompt_renderer else None
        if refused:
            return Completion.failure(refused)
        want_lp = bool(r.params.logprobs) and self._logprobs_ok.get(url, self._logprobs_default)
        last: str = ""
        unreachable = False
        attempt = 0
        t_start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            try:
                client = self._client(url)
                kw = self._kwargs(r, served, want_lp)
                if self.prompt_renderer is not None:
                    resp = client.completions.create(**kw)
                else:
                    resp = client.chat.completions.create(**kw)
                return cut_at_json_end(self._to_completion(resp, time.perf_counter() - t0), r.params)
            except openai.APITimeoutError as e:  # the server is there but this request took too long
                last, unreachable = f"{type(e).__name__}: {e}", False
            except openai.APIConnectionError as e:
                last, unreachable = f"{type(e).__name__}: {e}", True
            except openai.APIStatusError as e:
                status = e.status_code
                msg = self._scrub(f"HTTP {status}: {_err_text(e)}")
                unreachable = False
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
                    return Completion.failure(f"{url}: model {served!r}: {msg}", time.perf_counter() - t0)
            if attempt >= self.max_retries:
                what = f"{url}: model {served!r}: no completion after {attempt + 1} attempt(s); last error: {self._scrub(last)}"
                if unreachable:
                    raise BackendError(what) from None
                log.warning("%s", what)
                return Completion.failure(what, time.perf_counter() - t_start)
            time.sleep(self._delay(attempt))
            attempt += 1

    @staticmethod
    def _to_completion(resp, latency: float) -> Completion:
        """The server's answer; a 200 reply that holds no answer (no choices, a content filter's withheld text, a
        message without text) is an error completion: counted as an error, never scored, never cached."""
        choices = getattr(resp, "choices", None)
        if not choices:
            return Completion.failure("the server replied without an answer (no choices)", latency)
        choice = choices[0]
        usage = getattr(resp, "usage", None)
        fr = choice.finish_reason or "stop"
        if fr == "content_filter":
            return Completion.failure("the server's content filter withheld the answer (finish_reason "
                                      "content_filter)", latency)
        if not hasattr(choice, "text") and (choice.message is None or choice.message.content is None):
            return Completion.failure(f"the server's answer has no text (finish_reason {str(fr)[:40]})", latency)
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
            text = choice.message.content
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
