"""backends._process: SIGTERM/SIGHUP handlers and the atexit hook exist only while a server is registered, and the
process's previous handlers come back after the last one stops."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from harness.backends import _process as P


class _Server:
    def __init__(self):
        self.stopped = 0

    def stop(self):
        self.stopped += 1
        P.unregister(self)


def test_handlers_are_ours_only_while_a_server_runs():
    def mine(signum, frame):
        pass

    old = signal.signal(signal.SIGTERM, mine)
    try:
        a, b = _Server(), _Server()
        P.register(a)
        P.register(b)
        assert signal.getsignal(signal.SIGTERM) is P._on_signal
        P.unregister(a)
        assert signal.getsignal(signal.SIGTERM) is P._on_signal  # b still runs
        P.unregister(b)
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, old)


def test_sigterm_stops_the_servers_then_calls_the_previous_handler():
    seen = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        s = _Server()
        P.register(s)
        os.kill(os.getpid(), signal.SIGTERM)
        assert s.stopped == 1 and seen == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is not P._on_signal  # the last stop gave the old handler back
    finally:
        signal.signal(signal.SIGTERM, old)


def _exit_output(body: str) -> list[str]:
    code = "from harness.backends import _process as P\n" \
           "class S:\n    def __init__(self, name):\n        self.name = name\n" \
           "    def stop(self):\n        print(self.name, 'stopped')\n" + textwrap.dedent(body)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_no_exit_hook_is_left_once_the_last_server_stopped():
    assert _exit_output("""
        s = S("s")
        P.register(s)
        P.unregister(s)
        P._LIVE.add(s)  # tracked again behind the module's back: only a hook left installed would stop it
    """) == []


def test_a_server_still_running_at_exit_is_stopped():
    assert _exit_output("""
        done, running = S("done"), S("running")
        P.register(done)
        P.unregister(done)
        P.register(running)
    """) == ["running stopped"]
