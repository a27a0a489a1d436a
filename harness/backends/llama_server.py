"""llama.cpp's OpenAI-compatible server (`python -m llama_cpp.server`), managed as a context manager.

llama-cpp-python's server applies at most one LoRA per loaded model, and with several models in a
config file it *reloads* the model whenever a request names a different one. So every model key
gets its own server process: "base" without a LoRA, each adapter with its GGUF LoRA applied. All
listen on loopback; `urls` maps model key -> base_url ("http://host:port/v1"), and every process
serves its model under the model key as alias.

No orphans: the processes are started and stopped by harness.backends._process (own process group,
stopped on exit from the with-block, on an exception, on Ctrl-C, on SIGTERM and at interpreter exit;
a watchdog inside each server ends it within a second if this process is killed hard).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable

from harness.backends._process import (free_port, register, signal_group, spawn_module, stop_processes, tail,
                                       unregister, wait_ready)
from harness.backends.base import BASE, check_model_key
from harness.io import UserError

__all__ = ["LlamaServer", "free_port", "llamacpp_available"]

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
        for k in self.lora_ggufs:
            check_model_key(k)  # becomes a --model_alias argument and a log file name
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
            signal_group(old, signal.SIGKILL)
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
            signal_group(p, signal.SIGKILL)
            with contextlib.suppress(Exception):
                p.wait(timeout=5)

    def log_tail(self, key: str, n: int = 15) -> str:
        return tail(self._logs.get(key), n)

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
