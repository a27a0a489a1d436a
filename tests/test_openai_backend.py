"""OpenAIBackend: retries/backoff, clear errors, secret hygiene, and a real llama.cpp server.

The first group runs against a small scripted OpenAI-compatible HTTP server on loopback (a real
socket + real openai client; the server's replies are scripted so 429/5xx/outages are
deterministic). The `llamacpp` group runs against a real llama.cpp server, stopped and restarted
mid-run.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.backends._process import free_port
from harness.backends.base import BASE, BackendError, GenParams, Request, ServeSpec
from harness.backends.openai_backend import OpenAIBackend

SECRET = "sk-test-SECRET-0123456789abcdef"


class Scripted(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port, script, models=None):
        self.script = list(script)  # status codes to answer in order; then 200 forever
        self.models = models  # GET /v1/models entries (None: no such endpoint, 404)
        self.calls = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", port), Handler)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        srv: Scripted = self.server  # type: ignore[assignment]
        if srv.models is None or not self.path.endswith("/models"):
            self.send_error(404)
            return
        data = json.dumps({"object": "list", "data": [{"object": "model", "created": time.time(), **m}
                                                      for m in srv.models]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(n) or b"{}")
        srv: Scripted = self.server  # type: ignore[assignment]
        with srv.lock:
            srv.calls.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            status = srv.script.pop(0) if srv.script else 200
        if status != 200:
            # a careless server that echoes the credentials: the backend must scrub them
            msg = {"error": {"message": f"scripted failure, you sent {self.headers.get('Authorization')}"}}
            data = json.dumps(msg).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        last = body["messages"][-1]["content"] if "messages" in body else body.get("prompt", "")
        resp = {
            "id": "x", "object": "chat.completion", "created": 0, "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"echo:{body.get('model')}:{last}"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
        data = json.dumps(resp).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def scripted():
    servers = []

    def start(script=(), port=None, models=None):
        s = Scripted(port or free_port(), script, models)
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _backend(port, **kw):
    spec = ServeSpec(model_cfg={"name": "m", "served_name": "served-base"}, adapters={})
    opts = dict(base_url=f"http://127.0.0.1:{port}/v1", api_key_env="HARNESS_TEST_KEY", backoff_base_s=0.01,
                backoff_max_s=0.05, timeout_s=5, model_names={"ad1": "served-ad1"})
    opts.update(kw)
    return OpenAIBackend(spec, **opts)


def _req(key=BASE, text="hi", **p):
    return Request(key, [{"role": "user", "content": text}], GenParams(max_new_tokens=8, **p))


def test_order_names_and_auth(scripted, monkeypatch):
    monkeypatch.setenv("HARNESS_TEST_KEY", SECRET)
    s = scripted()
    b = _backend(s.server_port, concurrency=3)
    seen = []
    reqs = [_req(BASE, f"q{i}") if i % 2 else _req("ad1", f"q{i}") for i in range(7)]
    out = b.generate(reqs, progress=seen.append)
    assert [c.text for c in out] == [f"echo:{'served-base' if i % 2 else 'served-ad1'}:q{i}" for i in range(7)]
    assert sum(seen) == 7 and out[0].prompt_tokens == 3 and out[0].completion_tokens == 2
    assert all(c["auth"] == f"Bearer {SECRET}" for c in s.calls)
    assert b.model_keys() == [BASE, "ad1"]


def test_retries_on_429_and_5xx(scripted):
    s = scripted([429, 500, 503])
    b = _backend(s.server_port, concurrency=1, max_retries=5)
    out = b.generate([_req()])
    assert out[0].text.startswith("echo:") and len(s.calls) == 4


def test_persistent_5xx_is_an_error_completion_without_secret(scripted, monkeypatch, caplog):
    """5xx after the last retry: that request is an error (named URL, attempts, status), the others are answered."""
    monkeypatch.setenv("HARNESS_TEST_KEY", SECRET)
    s = scripted([500] * 3)
    b = _backend(s.server_port, max_retries=2, concurrency=1)
    caplog.set_level(logging.DEBUG)
    out = b.generate([_req(text="first"), _req(text="second")])
    assert out[0].finish_reason == "error" and out[0].text == "" and out[0].error
    msg = out[0].error
    assert f"127.0.0.1:{s.server_port}" in msg and "3 attempt" in msg and "HTTP 500" in msg
    assert out[1].error is None and out[1].text == "echo:served-base:second"
    assert SECRET not in msg and SECRET not in repr(out[0])
    assert SECRET not in repr(b) and SECRET not in str(b) and SECRET not in repr(vars(b))
    assert SECRET not in caplog.text
    assert len(s.calls) == 4


def test_connection_refused_retries_then_error():
    port = free_port()  # nothing listens here
    b = _backend(port, max_retries=2)
    t0 = time.monotonic()
    with pytest.raises(BackendError, match=rf"127\.0\.0\.1:{port}.*APIConnectionError"):
        b.generate([_req()])
    assert time.monotonic() - t0 < 10


def test_outage_then_recovery(scripted):
    port = free_port()
    b = _backend(port, max_retries=8, backoff_base_s=0.1, backoff_max_s=0.4)
    result = {}

    def run():
        result["out"] = b.generate([_req(text="late")])

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.5)  # requests fail with connection refused meanwhile
    scripted(port=port)
    t.join(20)
    assert result["out"][0].text == "echo:served-base:late"


def test_unknown_key_and_4xx(scripted):
    from harness.io import UserError

    s = scripted([404, 400])
    b = _backend(s.server_port)
    with pytest.raises(UserError, match="unknown model key"):
        b.generate([_req("nope")])
    with pytest.raises(BackendError, match="HTTP 404"):
        b.generate([_req()])
    out = b.generate([_req()])  # 400: that one request fails, the run goes on
    assert out[0].finish_reason == "error" and out[0].text == "" and "HTTP 400" in out[0].error


def test_identity_names_url_and_served_model(scripted):
    """Two servers serving different models under one name never share an identity (so never cached answers)."""
    spec = ServeSpec(model_cfg={"name": "m", "served_name": "x"}, adapters={})
    one = scripted(models=[{"id": "x", "root": "/models/llama-8b", "owned_by": "vllm"}])
    two = scripted(models=[{"id": "x", "root": "/models/qwen-7b", "owned_by": "vllm"}])
    a = OpenAIBackend(spec, base_url=f"http://127.0.0.1:{one.server_port}/v1", api_key_env="")
    a_again = OpenAIBackend(spec, base_url=f"http://127.0.0.1:{one.server_port}/v1/", api_key_env="")
    b = OpenAIBackend(spec, base_url=f"http://127.0.0.1:{two.server_port}/v1", api_key_env="")
    assert a.model_identity(BASE) == a_again.model_identity(BASE)  # "created" changes per call: not used
    assert a.model_identity(BASE) != b.model_identity(BASE)
    assert a.reported_model(a.base_url, "x")["root"] == "/models/llama-8b"
    # the same model moved to another server (same port reused by a server reporting the same): same answer set
    one.models = [{"id": "x", "root": "/models/qwen-7b", "owned_by": "vllm"}]
    fresh = OpenAIBackend(spec, base_url=f"http://127.0.0.1:{one.server_port}/v1", api_key_env="")
    assert fresh.model_identity(BASE) != a.model_identity(BASE)
    # a server without /models: identity from URL + name, still URL-specific
    bare = scripted()
    c = OpenAIBackend(spec, base_url=f"http://127.0.0.1:{bare.server_port}/v1", api_key_env="")
    assert c.reported_model(c.base_url, "x") is None and c.model_identity(BASE) not in (a.model_identity(BASE),
                                                                                         b.model_identity(BASE))
    # nothing listening: cannot serve at all
    dead = OpenAIBackend(spec, base_url=f"http://127.0.0.1:{free_port()}/v1", api_key_env="", max_retries=1,
                         backoff_base_s=0.01, backoff_max_s=0.02)
    with pytest.raises(BackendError, match="cannot list models"):
        dead.model_identity(BASE)


def test_literal_key_and_url_credentials_never_shown(scripted, caplog):
    """api_key and user:pw@ in base_url are used for the requests but appear in no repr, error or log."""
    caplog.set_level(logging.DEBUG)
    s = scripted([400], models=[{"id": "served-base"}])
    pw = "pw-SECRET-987654321"
    url = f"http://alice:{pw}@127.0.0.1:{s.server_port}/v1"
    b = _backend(s.server_port, base_url=url, api_key=SECRET, api_key_env="", concurrency=1)
    assert b.base_url == f"http://127.0.0.1:{s.server_port}/v1"
    out = b.generate([_req(text="one"), _req(text="two")])  # the first is rejected (400), the second answered
    import base64

    assert s.calls[0]["auth"] == "Basic " + base64.b64encode(f"alice:{pw}".encode()).decode()  # httpx: userinfo
    assert out[0].finish_reason == "error" and out[1].text == "echo:served-base:two"
    ident = b.model_identity(BASE)
    clean = _backend(s.server_port, api_key_env="")
    assert ident == clean.model_identity(BASE)  # credentials are not part of the identity
    keyed = _backend(s.server_port, api_key=SECRET, api_key_env="")
    keyed.generate([_req(text="three")])
    assert s.calls[-1]["auth"] == f"Bearer {SECRET}"
    for text in (repr(b), str(b), repr(vars(b)), out[0].error, caplog.text, ident):
        assert SECRET not in text and pw not in text and "alice" not in text
    with pytest.raises(BackendError) as ei:  # an error text that echoes the credentials is scrubbed
        b._client(b.base_url)  # (client built with the credentials)
        raise BackendError(b._scrub(f"boom {url} {SECRET}"))
    assert SECRET not in str(ei.value) and pw not in str(ei.value)


def test_make_backend_openai():
    from harness.backends.registry import make_backend
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load("conf/backend/openai.yaml"))
    b = make_backend(cfg, ServeSpec(model_cfg={"name": "m"}))
    assert isinstance(b, OpenAIBackend) and b.base_url.startswith("http")


# ------------------------------------------------------------------ real llama.cpp server

llamacpp = pytest.mark.llamacpp


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (pip install 'lora-harness[llamacpp]')")
    from harness.gguf import convert_hf_to_gguf
    from harness.backends.llama_server import LlamaServer
    from harness.models import resolve_model

    from conftest import TINY_CFG

    spec = resolve_model(TINY_CFG)
    gguf = convert_hf_to_gguf(spec.path, outtype="f32")
    with LlamaServer(gguf, {}, n_ctx=512, n_threads=1) as srv:
        yield srv


@llamacpp
def test_real_server_chat_and_logprobs(real_server):
    b = OpenAIBackend(ServeSpec(model_cfg={"name": "tiny"}), base_url=real_server.base_url, api_key_env="",
                      model_names={BASE: BASE}, concurrency=2)
    out = b.generate([_req(text="hello", logprobs=2), _req(text="hello", logprobs=2)])
    assert out[0].text == out[1].text and out[0].completion_tokens > 0
    assert out[0].logprobs and len(out[0].logprobs[0]["top"]) >= 1


@llamacpp
def test_real_server_outage_restart_and_giving_up(real_server):
    b = OpenAIBackend(ServeSpec(model_cfg={"name": "tiny"}), base_url=real_server.base_url, api_key_env="",
                      model_names={BASE: BASE}, concurrency=2, max_retries=40, backoff_base_s=0.2, backoff_max_s=2.0)  # ~60 s: a restart under load is slow
    before = b.generate([_req(text="one")])[0].text
    real_server.kill(BASE)
    result = {}

    def run():
        try:
            result["out"] = b.generate([_req(text="one"), _req(text="two")])
        except Exception as e:  # pragma: no cover - reported below
            result["err"] = e

    t = threading.Thread(target=run)
    t.start()
    time.sleep(1.0)  # the requests are failing and backing off now
    real_server.restart(BASE)
    t.join(150)
    assert "err" not in result, result.get("err")
    assert result["out"][0].text == before  # greedy: same output after the restart
    # a server that never comes back: a clear error naming the URL
    real_server.kill(BASE)
    quick = OpenAIBackend(ServeSpec(model_cfg={"name": "tiny"}), base_url=real_server.base_url, api_key_env="",
                          model_names={BASE: BASE}, max_retries=2, backoff_base_s=0.05, backoff_max_s=0.1)
    with pytest.raises(BackendError, match=real_server.base_url.replace(".", r"\.")):
        quick.generate([_req()])
    real_server.restart(BASE)


@llamacpp
def test_real_server_prompt_over_context_is_an_error_completion(real_server):
    """A real llama.cpp server refusing a prompt longer than its context (n_ctx=512): an error, not an answer."""
    b = OpenAIBackend(ServeSpec(model_cfg={"name": "tiny"}), base_url=real_server.base_url, api_key_env="",
                      model_names={BASE: BASE}, concurrency=1, max_retries=1, backoff_base_s=0.05, backoff_max_s=0.1)
    out = b.generate([_req(text="word " * 800), _req(text="hello")])
    assert out[0].finish_reason == "error" and out[0].text == "" and out[0].error
    assert real_server.base_url in out[0].error
    assert out[1].error is None and out[1].completion_tokens > 0
