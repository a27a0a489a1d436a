"""Issue #22 item 4: llama.cpp's convert_hf_to_gguf.py loads several architectures' tokenizers with
trust_remote_code=True, so a model folder carrying its own code (`auto_map` in config.json or
tokenizer_config.json, or a *.py) must never reach it unless the user allowed remote code on their own command
line. llama.cpp is not needed: a stand-in converter (LORA_HARNESS_LLAMACPP_SCRIPTS) records that it was started
and runs the folder's *.py files, as loading remote code would."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from hostile_kit import REPO, assert_one_line_error, copy_sweep, only_run, pristine_sweep, run_cli

FAKE_CONVERTER = """
import pathlib, runpy, sys
model = pathlib.Path(sys.argv[1])
pathlib.Path({ran!r}).write_text(str(model))
for py in sorted(model.rglob("*.py")):
    runpy.run_path(str(py))
out = sys.argv[sys.argv.index("--outfile") + 1]
pathlib.Path(out).write_bytes(b"GGUF-not-really")
"""


@pytest.fixture
def converter(tmp_path):
    """A stand-in llama.cpp script folder; returns (env, path of its 'I ran' marker, path the evil code writes)."""
    d = tmp_path / "llama.cpp"
    (d / "gguf-py" / "gguf").mkdir(parents=True)
    ran = tmp_path / "converter-ran"
    for name in ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py"):
        (d / name).write_text(FAKE_CONVERTER.format(ran=str(ran)))
    return {"LORA_HARNESS_LLAMACPP_SCRIPTS": str(d), "LORA_HARNESS_CACHE": str(tmp_path / "cache")}, ran, \
        tmp_path / "EVIL-RAN"


def _model_folder(root, evil, where: str):
    d = root / "model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    code = f"open({str(evil)!r}, 'w').write('ran')\n"
    if where in ("config.json", "tokenizer_config.json"):
        p = d / where
        data = json.loads(p.read_text())
        data["auto_map"] = {"AutoTokenizer": ["tok.EvilTokenizer", None], "AutoConfig": "tok.EvilConfig"}
        p.write_text(json.dumps(data))
        (d / "sub").mkdir()
        (d / "sub" / "tok.py").write_text(code)
    else:
        (d / where).write_text(code)
    return d


@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json", "modeling_evil.py"])
def test_gguf_convert_refuses_a_folder_with_its_own_code(tmp_path, converter, where):
    env, ran, evil = converter
    model = _model_folder(tmp_path, evil, where)
    r = _gguf(["convert", str(model), "--out", str(tmp_path / "m.gguf")], env)
    assert_one_line_error(r.returncode, r.stderr, "carries its own code", "model.trust_remote_code=true")
    assert not ran.exists() and not evil.exists() and not (tmp_path / "m.gguf").exists()
    # the user's own opt-in converts it (and the stand-in shows what the converter would have run)
    r = _gguf(["convert", str(model), "--out", str(tmp_path / "m.gguf"), "--trust-remote-code"], env)
    assert r.returncode == 0, r.stderr
    assert ran.exists() and evil.exists()


def test_gguf_convert_lora_refuses_a_base_folder_with_its_own_code(tmp_path, converter):
    env, ran, evil = converter
    base = _model_folder(tmp_path, evil, "config.json")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 8)
    r = _gguf(["convert-lora", str(adapter), "--base", str(base), "--out", str(tmp_path / "a.gguf")], env)
    assert_one_line_error(r.returncode, r.stderr, "carries its own code", "auto_map in config.json")
    assert not ran.exists() and not evil.exists()


def test_a_plain_folder_still_converts(tmp_path, converter):
    """The control: without code of its own the folder goes to the converter (so the refusals above are ours)."""
    env, ran, evil = converter
    model = _model_folder(tmp_path, evil, "none.txt")
    r = _gguf(["convert", str(model), "--out", str(tmp_path / "m.gguf")], env)
    assert r.returncode == 0, r.stderr
    assert ran.exists() and not evil.exists()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return pristine_sweep(tmp_path_factory)


def test_export_gguf_of_a_run_whose_base_has_auto_map_is_refused(pristine, tmp_path, converter):
    """harness export --format gguf merges into a fresh folder, which keeps the base's auto_map: refused before
    the converter starts unless --trust-remote-code is given."""
    from harness.models import resolve_model

    env, ran, evil = converter
    run = only_run(copy_sweep(pristine, tmp_path / "s"))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    base = tmp_path / "base"
    shutil.copytree(resolve_model(cfg["model"]).path, base)
    conf = json.loads((base / "config.json").read_text())
    conf["auto_map"] = {"AutoTokenizer": ["tok.EvilTokenizer", None]}
    (base / "config.json").write_text(json.dumps(conf))
    cfg["model"] = {**cfg["model"], "source": "hf", "path": str(base)}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    man = json.loads((run / "manifest.json").read_text())  # the same weights, now in their own folder
    man["base_model"]["identity"] = resolve_model(cfg["model"]).identity
    (run / "manifest.json").write_text(json.dumps(man))
    r = run_cli("export", str(run), "--format", "gguf", "--quant", "f16", "--no-check", "--out", str(tmp_path / "out"),
                env=env)
    assert_one_line_error(r.returncode, r.stderr, "carries its own code", "auto_map in config.json")
    assert not ran.exists() and not (tmp_path / "out").exists()


def _gguf(args, env):
    """`python -m harness.gguf ...`, the converter's own command line."""
    return subprocess.run([sys.executable, "-m", "harness.gguf", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **env, "PYTHONPATH": str(REPO)}, timeout=300)
