"""llama.cpp's OpenAI-compatible server (`python -m llama_cpp.server`), managed as a context manager.

llama-cpp-python's server applies at most one LoRA per loaded model, and with several models in a
config file it *reloads* the model whenever a request names a different one. So every model key
gets its own server process: "base" without a LoRA, each adapter with its GGUF LoRA applied. All
listen on loopback; `urls` maps model key -> base_url ("http://host:port/v1"), and every process
serves its model under the model key as alias.

No orphans: each process runs in its own process group and is stopped (SIGTERM, then SIGKILL) on
exit from the with-block, on an exception inside it, on Ctrl-C, on SIGTERM to this process, and at
interpreter exit. If this process is killed hard (SIGKILL), a watchdog thread inside each server
notices the parent is gone within a second and ends the server.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import json
from pathlib import Path
from typing import Iterable

from harness.io import UserError
from harness.backends.base import BASE

_LIVE: set["LlamaServer"] = set()
_LIVE_LOCK = threading.Lock()
_HOOKS_INSTALLED = False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _stop_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for s in live:
        with contextlib.suppress(Exception):
            s.stop()


def _on_sigterm(signum, frame):  # pragma: no cover - exercised via subprocess tests
    _stop_all()
    prev = _PREV_HANDLERS.get(signum)
    if callable(prev):
        prev(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


_PREV_HANDLERS: dict = {}


def _install_hooks() -> None:
    global _HOOKS_INSTALLED
    if _HOOKS_INSTALLED:
        return
    _HOOKS_INSTALLED = True
    atexit.register(_stop_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(ValueError, OSError):
                prev = signal.getsignal(sig)
                if prev in (signal.SIG_IGN,):
                    continue
                _PREV_HANDLERS[sig] = prev if callable(prev) else None
                signal.signal(sig, _on_sigterm)
    # Ctrl-C (SIGINT) raises KeyboardInterrupt, which runs __exit__ -> stop().


def llamacpp_available() -> bool:
    import importlib.util

    try:
        return all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette"))
    except (ImportError, ValueError):
        return False


class LlamaServer:
    """Start one llama.cpp server per model key; `with LlamaServer(...) as srv: srv.urls[key]`."""

    def __init__(
        self,
        model_gguf: str | os.PathLike,
        lora_ggufs: dict[str, str | os.PathLike] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        extra_args: Iterable[str] = (),
        serve_base: bool = True,
        startup_timeout_s: float = 120.0,
        log_dir: str | os.PathLike | None = None,
    ):
        self.model_gguf = Path(model_gguf)
        self.lora_ggufs = {k: Path(v) for k, v in (lora_ggufs or {}).items()}
        if BASE in self.lora_ggufs:
            raise UserError(f"adapter name {BASE!r} is reserved for the base model")
        self.host = host
        self.first_port = port
        self.n_ctx = int(n_ctx)
        self.n_threads = int(n_threads) if n_threads else max(1, os.cpu_count() or 1)
        self.extra_args = tuple(str(a) for a in extra_args)
        self.serve_base = serve_base
        self.startup_timeout_s = float(startup_timeout_s)
        self.log_dir = Path(log_dir) if log_dir else None
        self.procs: dict[str, subprocess.Popen] = {}
        self.urls: dict[str, str] = {}
        self._logs: dict[str, Path] = {}
        self._tmpdir: tempfile.TemporaryDirectory | None = None

    # ---------------------------------------------------------------- public
    @property
    def base_url(self) -> str:
        """The URL of the base model's server (or the first one when the base is not served)."""
        if BASE in self.urls:
            return self.urls[BASE]
        return next(iter(self.urls.values()))

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]

    def __enter__(self) -> "LlamaServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self):  # last resort
        with contextlib.suppress(Exception):
            self.stop()

    def start(self) -> "LlamaServer":
        if not llamacpp_available():
            raise UserError("the llama.cpp backend needs llama-cpp-python's server: pip install 'lora-harness[llamacpp]'")
        if not self.model_gguf.is_file():
            raise UserError(f"{self.model_gguf}: GGUF model file not found")
        for k, p in self.lora_ggufs.items():
            if not p.is_file():
                raise UserError(f"{p}: GGUF LoRA file for adapter {k!r} not found")
        register(self)
        if self.log_dir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="llama-server-")
            log_dir = Path(self._tmpdir.name)
        else:
            log_dir = self.log_dir
            log_dir.mkdir(parents=True, exist_ok=True)
        keys = ([BASE] if self.serve_base else []) + list(self.lora_ggufs)
        try:
            for i, key in enumerate(keys):
                port = self.first_port + i if self.first_port else free_port(self.host)
                self._spawn(key, port, log_dir)
            deadline = time.monotonic() + self.startup_timeout_s
            for key in keys:
                self._wait_ready(key, deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        procs, self.procs = self.procs, {}
        stop_processes(list(procs.values()), timeout_s)
        unregister(self)
        if self._tmpdir is not None:
            with contextlib.suppress(Exception):
                self._tmpdir.cleanup()
            self._tmpdir = None

    def restart(self, key: str) -> None:
        """Start the server of `key` again on the same port (after it died or was killed)."""
        url = self.urls[key]
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        old = self.procs.pop(key, None)
        if old is not None:
            _signal_group(old, signal.SIGKILL)
            with contextlib.suppress(Exception):
                old.wait(timeout=5)
        log_dir = self._logs[key].parent
        register(self)
        self._spawn(key, port, log_dir)
        self._wait_ready(key, time.monotonic() + self.startup_timeout_s)

    def kill(self, key: str) -> None:
        """Stop the server of one key (tests: simulate an outage); `restart(key)` brings it back."""
        p = self.procs.get(key)
        if p is not None:
            _signal_group(p, signal.SIGKILL)
            with contextlib.suppress(Exception):
                p.wait(timeout=5)

    def log_tail(self, key: str, n: int = 15) -> str:
        return _tail(self._logs.get(key), n)

    # ---------------------------------------------------------------- internals
    def server_args(self, key: str, port: int) -> list[str]:
        args = [
            "--model", str(self.model_gguf),
            "--model_alias", key,
            "--host", self.host,
            "--port", str(port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads),
            "--n_gpu_layers", "0",
            "--verbose", "False",
        ]
        if key != BASE:
            args += ["--lora_path", str(self.lora_ggufs[key])]
        args += list(self.extra_args)
        return args

    def _spawn(self, key: str, port: int, log_dir: Path) -> None:
        log = log_dir / f"{key}.log"
        self._logs[key] = log
        self.procs[key] = spawn_module("llama_cpp.server", self.server_args(key, port), log)
        self.urls[key] = f"http://{self.host}:{port}/v1"

    def _wait_ready(self, key: str, deadline: float) -> None:
        wait_ready(self.procs[key], self.urls[key] + "/models", deadline, self._logs[key], f"llama.cpp server for {key!r}")

    def __repr__(self) -> str:
        return f"LlamaServer(model={self.model_gguf.name!r}, keys={list(self.urls) or list(self.lora_ggufs)}, pids={self.pids()})"


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        os.killpg(p.pid, sig)  # pid == pgid thanks to start_new_session


# ------------------------------------------------------------------------ shared process helpers


def register(obj) -> None:
    """Track an object with a stop() method: stopped at interpreter exit and on SIGTERM/SIGHUP."""
    _install_hooks()
    with _LIVE_LOCK:
        _LIVE.add(obj)


def unregister(obj) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(obj)


def spawn_module(module: str, args: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
    """Run `python -m <module> <args>` in its own process group, output to log_path, with a parent watchdog."""
    env = dict(os.environ if env is None else env)
    repo_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([repo_root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, "-m", "harness.llama_server", "--parent-pid", str(os.getpid()), "--module", module, "--", *args]
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as fh:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: killpg reaches everything it starts
            env=env,
        )


def _tail(path: Path | None, n: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").strip().splitlines()[-n:])  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""


def wait_ready(p: subprocess.Popen, models_url: str, deadline: float, log_path: Path | None, what: str) -> None:
    """Poll GET models_url until it lists a model; UserError with the log tail if the process dies or time runs out."""
    while True:
        if p.poll() is not None:
            raise UserError(f"{what} exited with code {p.returncode} during startup: {_tail(log_path)}")
        try:
            with urllib.request.urlopen(models_url, timeout=2) as r:
                if json.loads(r.read()).get("data"):
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise UserError(f"{what} not ready at {models_url}: {_tail(log_path)}")
        time.sleep(0.2)


def stop_processes(procs: list[subprocess.Popen], timeout_s: float = 10.0) -> None:
    """SIGTERM each process group, wait, then SIGKILL whatever is left (stragglers included)."""
    for p in procs:
        _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(p, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        _signal_group(p, signal.SIGKILL)  # workers the server forked into its group


# ------------------------------------------------------------------------ child side


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            with contextlib.suppress(Exception):
                os.killpg(os.getpgrp(), signal.SIGKILL)
            os._exit(1)


def _child_main(argv: list[str]) -> None:
    """Run llama_cpp.server with a watchdog that ends it when the parent process disappears."""
    import runpy

    if argv[:1] != ["--parent-pid"] or "--" not in argv:
        raise SystemExit("usage: python -m harness.llama_server --parent-pid PID [--module M] -- <args of python -m M>")
    parent = int(argv[1])
    head, rest = argv[: argv.index("--")], argv[argv.index("--") + 1:]
    module = head[head.index("--module") + 1] if "--module" in head else "llama_cpp.server"
    if os.getppid() != parent:
        raise SystemExit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _child_main(sys.argv[1:])
