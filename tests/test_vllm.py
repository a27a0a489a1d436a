"""vLLM backend: argument building and the clear error without vllm/CUDA (no GPU on CI).

The `gpu` test runs a real in-process vLLM engine when vllm and CUDA are present.
"""
from __future__ import annotations

import importlib.util
import json

import pytest

from harness.backends.base import BASE, GenParams, Request, ServeSpec
from harness.backends.vllm_backend import VLLMBackend, adapter_rank, round_lora_rank
from harness.io import UserError

from conftest import TINY_CFG, make_random_adapter


def _has_vllm_gpu() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def adapters(tiny_spec, tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm_adapters")
    a = make_random_adapter(tiny_spec, root / "r4", r=4, seed=1)
    b = make_random_adapter(tiny_spec, root / "r12", r=12, seed=2)
    return {"r4": a, "r12": b}


def test_rank_rounding():
    assert [round_lora_rank(r) for r in (1, 2, 8, 9, 16, 17, 64, 65, 300, 512)] == [1, 8, 8, 16, 16, 32, 64, 128, 320, 512]
    with pytest.raises(UserError, match="larger than vLLM supports"):
        round_lora_rank(1024)


def test_adapter_rank_reads_rank_pattern(adapters, tmp_path):
    assert adapter_rank(adapters["r12"]) == 12
    d = tmp_path / "ad"
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"r": 8, "rank_pattern": {"q_proj": 48}}))
    assert adapter_rank(d) == 48


def test_engine_and_serve_args(adapters):
    b = VLLMBackend(ServeSpec(TINY_CFG, adapters), dry_run=True, gpu_memory_utilization=0.5, max_model_len=512)
    a = b.engine_args
    assert a["enable_lora"] is True and a["max_loras"] == 2 and a["max_lora_rank"] == 16
    assert a["gpu_memory_utilization"] == 0.5 and a["max_model_len"] == 512
    assert a["model"] == str(b.model_spec.path)
    s = b.serve_args(8123)
    assert s[0] == str(b.model_spec.path)
    assert "--enable-lora" in s and s[s.index("--max-lora-rank") + 1] == "16" and s[s.index("--port") + 1] == "8123"
    mods = s[s.index("--lora-modules") + 1: s.index("--lora-modules") + 3]
    assert mods == [f"r4={adapters['r4']}", f"r12={adapters['r12']}"]
    assert s[s.index("--served-model-name") + 1] == BASE
    # explicit settings win (rank still rounded up to an accepted value)
    b2 = VLLMBackend(ServeSpec(TINY_CFG, adapters), dry_run=True, max_loras=1, max_lora_rank=40)
    assert b2.engine_args["max_loras"] == 1 and b2.engine_args["max_lora_rank"] == 64
    assert b2.model_keys() == [BASE, "r4", "r12"]


def test_sampling_kwargs():
    kw = VLLMBackend.sampling_kwargs(GenParams(max_new_tokens=7, temperature=0.0, top_p=0.5, stop=("\n",), seed=3, logprobs=2))
    assert kw == {"n": 1, "max_tokens": 7, "temperature": 0.0, "top_p": 1.0, "seed": 3, "stop": ["\n"], "logprobs": 2}
    kw = VLLMBackend.sampling_kwargs(GenParams(temperature=0.7, top_p=0.9))
    assert kw["top_p"] == 0.9 and kw["stop"] is None and "logprobs" not in kw


def test_identity_matches_hf_scheme(adapters, tiny_spec):
    from harness.backends.base import adapter_identity

    b = VLLMBackend(ServeSpec(TINY_CFG, adapters), dry_run=True)
    assert b.model_identity(BASE) == tiny_spec.identity
    assert b.model_identity("r4") == adapter_identity(tiny_spec.identity, adapters["r4"])


def test_bad_mode_and_missing_adapter(tmp_path):
    with pytest.raises(UserError, match="inprocess or server"):
        VLLMBackend(ServeSpec(TINY_CFG, {}), mode="ray", dry_run=True)
    with pytest.raises(UserError, match="adapter_config.json"):
        VLLMBackend(ServeSpec(TINY_CFG, {"x": tmp_path}), dry_run=True)


@pytest.mark.skipif(_has_vllm_gpu(), reason="vllm and CUDA present: the clear-error path does not apply")
def test_clear_error_without_vllm_or_cuda(adapters):
    from harness.backends.base import make_backend

    with pytest.raises(UserError, match=r"vllm backend needs a CUDA GPU and `pip install lora-harness\[vllm\]`"):
        make_backend({"kind": "vllm"}, ServeSpec(TINY_CFG, adapters))


@pytest.mark.gpu
@pytest.mark.skipif(not _has_vllm_gpu(), reason="needs vllm and a CUDA GPU")
def test_vllm_inprocess_real(adapters):  # pragma: no cover - GPU only
    b = VLLMBackend(ServeSpec(TINY_CFG, adapters), gpu_memory_utilization=0.3, max_model_len=512, enforce_eager=True)
    try:
        reqs = [Request(k, [{"role": "user", "content": "hello"}], GenParams(max_new_tokens=8)) for k in (BASE, "r4", BASE)]
        out = b.generate(reqs)
        assert out[0].text == out[2].text and out[0].completion_tokens > 0
    finally:
        b.close()
