"""Issue #22 items 1, 2: a run or sweep directory from someone else never chooses what runs, where prompts go or
which credential is sent. Its backend section (kind, python, mode, host, base_url, api_key_env, ...) is not used;
generation uses the user's own backend (conf/ + the command line), and one note line says so."""
from __future__ import annotations

import stat

import pytest

from harness.cli import main as cli
from hostile_kit import RecordingServer, assert_one_line_error, copy_sweep, only_run, plant_config, pristine_sweep, \
    run_cli

TOKEN = "victim-token-Zq81-never-leaves"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return pristine_sweep(tmp_path_factory)


@pytest.fixture()
def server():
    s = RecordingServer()
    yield s
    s.stop()


def _evil_script(tmp_path):
    marker = tmp_path / "EXECUTED"
    evil = tmp_path / "evil.sh"
    evil.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    evil.chmod(evil.stat().st_mode | stat.S_IXUSR)
    return evil, marker


def _backend_notes(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if "its backend settings" in ln]


def test_foreign_vllm_python_is_never_executed(pristine, tmp_path, capsys):
    sweep = copy_sweep(pristine, tmp_path / "foreign")
    evil, marker = _evil_script(tmp_path)
    plant_config(only_run(sweep), backend={"kind": "vllm", "python": str(evil), "mode": "server", "host": "0.0.0.0"})
    assert cli(["eval", str(sweep), "--no-progress", "--force"]) == 0
    assert not marker.exists()
    notes = _backend_notes(capsys.readouterr().err)
    assert len(notes) == 1 and all(k in notes[0] for k in ("kind", "python", "mode", "host"))
    assert "0.0.0.0" not in notes[0] and str(evil) not in notes[0]  # names only: values may be secrets


def test_foreign_openai_endpoint_gets_no_token_and_no_prompts(pristine, tmp_path, server, monkeypatch, capsys):
    sweep = copy_sweep(pristine, tmp_path / "foreign")
    monkeypatch.setenv("VICTIM_TOKEN", TOKEN)
    plant_config(only_run(sweep), backend={"kind": "openai", "base_url": server.url, "api_key_env": "VICTIM_TOKEN"})
    assert cli(["eval", str(sweep), "--no-progress", "--force"]) == 0
    assert server.requests == []
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err and len(_backend_notes(out.err)) == 1


def test_foreign_literal_key_and_base_urls_are_not_used(pristine, tmp_path, server, capsys):
    """Every backend option counts, not a list of known-bad ones: base_urls / identities / api_key too."""
    sweep = copy_sweep(pristine, tmp_path / "foreign")
    plant_config(only_run(sweep), backend={"kind": "openai", "base_url": server.url, "base_urls": {"base": server.url},
                                           "api_key": "sk-planted-" + "x" * 20, "identities": {"base": "forged"}})
    assert cli(["eval", str(sweep), "--no-progress", "--force"]) == 0
    assert server.requests == []


def test_users_own_backend_on_the_command_line_is_used(pristine, tmp_path, server, monkeypatch, capsys):
    """The positive control: what this user gives (backend=openai + its URL and key variable) is their choice."""
    sweep = copy_sweep(pristine, tmp_path / "mine")
    monkeypatch.setenv("MY_TOKEN", TOKEN)
    rc = cli(["eval", str(sweep), "--no-progress", "backend=openai", f"backend.base_url={server.url}",
              "backend.api_key_env=MY_TOKEN", "backend.max_retries=0", "eval.canary=false"])
    assert rc == 0
    chats = [r for r in server.requests if r["path"].endswith("/chat/completions")]
    assert chats and all(r["headers"].get("authorization") == f"Bearer {TOKEN}" for r in chats)


def test_gate_against_never_uses_a_foreign_sweeps_backend(pristine, tmp_path, server, monkeypatch, capsys):
    """`harness gate NEW --against PREVIOUS`, both someone else's: no request, no execution; the released model
    is scored with the user's backend."""
    new = copy_sweep(pristine, tmp_path / "new")
    prev = copy_sweep(pristine, tmp_path / "prev")
    evil, marker = _evil_script(tmp_path)
    monkeypatch.setenv("VICTIM_TOKEN", TOKEN)
    plant_config(only_run(new), backend={"kind": "openai", "base_url": server.url, "api_key_env": "VICTIM_TOKEN"})
    plant_config(only_run(prev), backend={"kind": "vllm", "python": str(evil), "mode": "server"})
    (prev / "report").mkdir(exist_ok=True)
    (prev / "report" / "verdict.json").write_text('{"chosen": "%s"}' % only_run(prev).name)
    rc = cli(["gate", str(new), "--against", str(prev), "--quiet"])
    assert rc in (0, 1, 3)
    assert server.requests == [] and not marker.exists()
    assert len(_backend_notes(capsys.readouterr().err)) == 1


def test_gguf_package_name_never_imports_code(pristine, tmp_path):
    """model.package is looked up, never imported: `evilpkg.sub` would run evilpkg/__init__.py from the cwd."""
    sweep = copy_sweep(pristine, tmp_path / "foreign")
    marker = tmp_path / "IMPORTED"
    (tmp_path / "evilpkg").mkdir()
    (tmp_path / "evilpkg" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    plant_config(only_run(sweep), model={"name": "x", "source": "gguf_package", "package": "evilpkg.sub",
                                         "gguf_file": "m.gguf"})
    r = run_cli("eval", str(sweep), "--no-progress", cwd=tmp_path)  # `python -m` puts the cwd on sys.path
    assert not marker.exists()
    assert_one_line_error(r.returncode, r.stderr, "model.package")
