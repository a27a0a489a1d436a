"""Issue #22 item 6 (the brief's item 4): a model's identity is every file of its adapter (adapter_config.json
included) + the backend that generates it + the generation settings; any change re-generates, never reuses."""
from __future__ import annotations

import json

import pytest

from harness.cli import main as cli
from hostile_kit import RecordingServer, copy_sweep, only_run, pristine_sweep


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return pristine_sweep(tmp_path_factory)


def _eval_json(sweep, capsys, *extra) -> dict:
    assert cli(["eval", str(sweep), "--no-progress", "--json", *extra]) == 0
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):])


def test_unchanged_sweep_is_up_to_date(pristine, tmp_path, capsys):
    """The control: nothing changed, nothing is generated (so the tests below fail only for their change)."""
    s = _eval_json(copy_sweep(pristine, tmp_path / "s"), capsys)
    assert s["skipped"] is True


def test_changed_adapter_config_regenerates_that_adapter(pristine, tmp_path, capsys):
    sweep = copy_sweep(pristine, tmp_path / "s")
    cfg_path = only_run(sweep) / "adapter" / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["lora_alpha"] = cfg["lora_alpha"] * 50
    cfg_path.write_text(json.dumps(cfg))
    s = _eval_json(sweep, capsys)
    adapter = only_run(sweep).name
    assert s["skipped"] is False
    assert s["cache"]["misses"] == s["models"][adapter]["n"] > 0  # only its requests, none from the cache


def test_changed_adapter_config_with_force_never_reuses_the_cache(pristine, tmp_path, capsys):
    sweep = copy_sweep(pristine, tmp_path / "s")
    cfg_path = only_run(sweep) / "adapter" / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["lora_alpha"] = cfg["lora_alpha"] * 50
    cfg_path.write_text(json.dumps(cfg))
    s = _eval_json(sweep, capsys, "--force")
    assert s["cache"]["misses"] == s["models"][only_run(sweep).name]["n"] > 0


def test_other_backend_is_not_reported_as_done(pristine, tmp_path, capsys):
    """The same models through another backend (the user's choice) are generated again, not 'up to date'."""
    sweep = copy_sweep(pristine, tmp_path / "s")
    server = RecordingServer()
    try:
        s = _eval_json(sweep, capsys, "backend.kind=openai", f"backend.base_url={server.url}", "eval.canary=false",
                       "backend.max_retries=0")
    finally:
        server.stop()
    assert s["skipped"] is False
    assert len([r for r in server.requests if r["path"].endswith("/chat/completions")]) == \
           sum(m["n"] for m in s["models"].values())


def test_adapter_identity_ignores_the_order_peft_writes_target_modules_in(tmp_path):
    """PEFT saves target_modules from a set: the same adapter saved twice must keep one identity (else a resumed
    sweep regenerates everything), while a changed setting still makes a new one."""
    import json as _json

    from harness.backends.base import adapter_identity

    def adapter(name: str, modules: list[str], alpha: int):
        d = tmp_path / name
        d.mkdir()
        (d / "adapter_model.safetensors").write_bytes(b"weights")
        (d / "adapter_config.json").write_text(_json.dumps({"lora_alpha": alpha, "target_modules": modules}))
        return adapter_identity("base", d)

    a = adapter("a", ["q_proj", "v_proj", "o_proj"], 16)
    assert adapter("b", ["o_proj", "q_proj", "v_proj"], 16) == a
    assert adapter("c", ["o_proj", "q_proj", "v_proj"], 32) != a
