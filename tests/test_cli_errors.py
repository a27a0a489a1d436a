"""The CLI's error styles: bad input (UserError) and a backend that cannot serve (BackendError) are one line on
stderr with exit 2; a bug keeps its traceback (exit 1) but never a credential inside it."""
from __future__ import annotations

import types

import pytest

from harness import cli
from harness.backends.base import BackendError


@pytest.fixture
def command(monkeypatch):
    """Install a `harness eval` whose main raises the given exception."""
    def install(exc: BaseException):
        def main(argv):
            raise exc
        real = cli.importlib.import_module

        monkeypatch.setattr(cli.importlib, "import_module",
                            lambda name: types.SimpleNamespace(main=main) if name == "harness.commands.eval" else real(name))
    return install


def test_backend_that_cannot_serve_is_one_line_exit_2(command, capsys):
    command(BackendError("server http://127.0.0.1:9/v1 refused the connection after 3 retries"))
    assert cli.main(["eval", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: server http://127.0.0.1:9/v1 refused")
    assert "re-run the same command to resume" in err and "Traceback" not in err


def test_a_bug_keeps_its_traceback_without_secrets(command, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abcdefghijklmnopqrstuvwx")
    command(RuntimeError("boom with sk-live-abcdefghijklmnopqrstuvwx"))
    assert cli.main(["eval", "x"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "boom" in err and "abcdefghijklmnop" not in err
