"""Server processes the backends start (llama.cpp, vLLM): spawn, wait until ready, stop; never leave orphans.

Private to harness.backends. Every server runs in its own process group (killpg reaches what it forks)
behind a watchdog that ends the group within a second of this process disappearing (even SIGKILL).
Objects with a stop() method registered here are stopped at interpreter exit and on SIGTERM/SIGHUP; those hooks
are installed only while a registered server runs, and the previous handlers come back when the last one stops.
Ctrl-C raises KeyboardInterrupt, which runs the owners' `finally`/`__exit__`.

Only the standard library is imported at module level: the child side (`python -m
harness.backends._process --parent-pid PID --module M -- ARGS`) also runs under another venv's
interpreter (vLLM's), which does not have this project's dependencies.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

_LIVE: set = set()
_LIVE_LOCK = threading.RLock()
_ATEXIT_SET = False
_PREV_HANDLERS: dict = {}  # signal -> its handler before ours; only while a server is running


def _user_error(msg: str) -> Exception:
    from harness.io import UserError

    return UserError(msg)


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


def _on_signal(signum, frame):
    prev = _PREV_HANDLERS.get(signum)  # read first: the last server's stop() gives the old handlers back
    _stop_all()
    if callable(prev):
        prev(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_hooks() -> None:
    """Our atexit hook and SIGTERM/SIGHUP handlers, while at least one server runs (signals: main thread only)."""
    global _ATEXIT_SET
    if not _ATEXIT_SET:
        atexit.register(_stop_all)
        _ATEXIT_SET = True
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if sig in _PREV_HANDLERS:
            continue
        with contextlib.suppress(ValueError, OSError):
            prev = signal.getsignal(sig)
            if prev == signal.SIG_IGN:
                continue
            signal.signal(sig, _on_signal)
            _PREV_HANDLERS[sig] = prev


def _remove_hooks() -> None:
    """Give the process its previous handlers back once no server runs (unless someone replaced ours since)."""
    global _ATEXIT_SET
    if _ATEXIT_SET:
        atexit.unregister(_stop_all)
        _ATEXIT_SET = False
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be changed there; they are restored by a later unregister on it
    for sig, prev in list(_PREV_HANDLERS.items()):
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(sig) is _on_signal:
                signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
        del _PREV_HANDLERS[sig]


def register(obj) -> None:
    """Track an object with a stop() method: stopped at interpreter exit and on SIGTERM/SIGHUP while it runs."""
    with _LIVE_LOCK:
        _LIVE.add(obj)
        _install_hooks()


def unregister(obj) -> None:
    """Stop tracking `obj`; with no server left, the atexit hook and signal handlers are removed."""
    with _LIVE_LOCK:
        _LIVE.discard(obj)
        if not _LIVE:
            _remove_hooks()


def spawn_module(module: str, args: list[str], log_path: Path, env: dict | None = None,
                 python: str | None = None) -> subprocess.Popen:
    """Run `<python> -m <module> <args>` in its own process group, output to log_path, with a parent watchdog.

    `python` defaults to this interpreter; vLLM passes its own venv's interpreter.
    """
    env = dict(os.environ if env is None else env)
    repo_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([repo_root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [python or sys.executable, "-m", "harness.backends._process", "--parent-pid", str(os.getpid()),
           "--module", module, "--", *args]
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


def tail(path: Path | None, n: int = 15, scrub: Callable[[str], str] | None = None) -> str:
    try:
        text = "\n".join(Path(path).read_text(errors="replace").strip().splitlines()[-n:])  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""
    return scrub(text) if scrub else text


def wait_ready(p: subprocess.Popen, models_url: str, deadline: float, log_path: Path | None, what: str, *,
               expect_model: str | None = None, headers: dict | None = None,
               scrub: Callable[[str], str] | None = None) -> None:
    """Poll GET models_url until it lists a model (`expect_model` among the ids, when given).

    UserError with the log tail if the process dies, or time runs out, or the server answering on the
    port serves other models (another process took the port, or the wrong model was loaded).
    """
    last_ids: list[str] = []
    while True:
        if p.poll() is not None:
            raise _user_error(f"{what} exited with code {p.returncode} during startup: {tail(log_path, scrub=scrub)}")
        try:
            req = urllib.request.Request(models_url, headers=dict(headers or {}))
            with urllib.request.urlopen(req, timeout=2) as r:
                data = json.loads(r.read()).get("data") or []
            last_ids = [str(m.get("id")) for m in data if isinstance(m, dict)]
            if data and (expect_model is None or expect_model in last_ids):
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            seen = f" (it serves {', '.join(last_ids)}; expected {expect_model})" if last_ids else ""
            raise _user_error(f"{what} not ready at {models_url}{seen}: {tail(log_path, scrub=scrub)}")
        time.sleep(0.2)


def signal_group(p: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        os.killpg(p.pid, sig)  # pid == pgid thanks to start_new_session


def stop_processes(procs: list[subprocess.Popen], timeout_s: float = 10.0) -> None:
    """SIGTERM each process group, wait, then SIGKILL whatever is left (stragglers included)."""
    for p in procs:
        signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            signal_group(p, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        signal_group(p, signal.SIGKILL)  # workers the server forked into its group


# ------------------------------------------------------------------------ child side


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            with contextlib.suppress(Exception):
                os.killpg(os.getpgrp(), signal.SIGKILL)
            os._exit(1)


def _child_main(argv: list[str]) -> None:
    """Run `python -m MODULE ARGS` with a watchdog that ends it when the parent process disappears."""
    import runpy

    if argv[:1] != ["--parent-pid"] or "--" not in argv or "--module" not in argv[: argv.index("--")]:
        raise SystemExit("usage: python -m harness.backends._process --parent-pid PID --module M -- <args of python -m M>")
    parent = int(argv[1])
    head, rest = argv[: argv.index("--")], argv[argv.index("--") + 1:]
    module = head[head.index("--module") + 1]
    if os.getppid() != parent:
        raise SystemExit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _child_main(sys.argv[1:])
