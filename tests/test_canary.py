"""Canary: an all-zero adapter is caught, real (random) adapters pass."""
from __future__ import annotations

import pytest

from harness.backends.base import Completion, ServeSpec
from harness.canary import check_adapters_applied
from harness.io import UserError
from tests.conftest import TINY_CFG


@pytest.fixture(scope="module")
def backend(tiny_adapters):
    from harness.backends.hf import HFBackend

    return HFBackend(ServeSpec(TINY_CFG, dict(tiny_adapters)), device="cpu")


def test_random_adapters_pass(backend):
    check_adapters_applied(backend, ["a1", "a2"])
    check_adapters_applied(backend, ["base"])  # nothing to check


def test_zero_adapter_caught(backend):
    with pytest.raises(UserError, match=r"adapter 'zero' is not applied: its outputs/logits equal the base"):
        check_adapters_applied(backend, ["a1", "zero", "a2"], n=2, max_new_tokens=4)


def test_through_cache(backend, tmp_path):
    from harness.backends.cache import CachedBackend

    c = CachedBackend(backend, tmp_path / "c.jsonl")
    check_adapters_applied(c, ["a1"], prompts=["hi", [{"role": "user", "content": "yo"}]])
    with pytest.raises(UserError, match="zero"):
        check_adapters_applied(c, ["zero"])


class IgnoringBackend:
    """A backend that silently serves the base model for every key (and has no logits())."""

    name = "ignoring"

    def model_keys(self):
        return ["base", "x"]

    def model_identity(self, key):
        return key

    def generate(self, requests, progress=None):
        return [Completion(text="same " + r.message_dicts()[-1]["content"]) for r in requests]

    def close(self):
        pass


def test_backend_that_ignores_adapters():
    with pytest.raises(UserError, match=r"adapter 'x' is not applied: its outputs equal"):
        check_adapters_applied(IgnoringBackend(), ["x"])


def test_adapter_not_learned(tiny_adapters, tmp_path):
    """The reasons an adapter is the base model unchanged; a trained (random) adapter has none."""
    import json
    import shutil

    from harness.canary import adapter_not_learned

    assert adapter_not_learned(tiny_adapters["a1"]) is None
    assert "LoRA B weight is zero" in adapter_not_learned(tiny_adapters["zero"])
    run = tmp_path / "run"
    shutil.copytree(tiny_adapters["a1"], run / "adapter")
    (run / "metrics.json").write_text(json.dumps({"best_val_loss": 2.0, "improved": False}))
    assert "improved=false" in adapter_not_learned(run / "adapter")
    (run / "metrics.json").write_text(json.dumps({"best_val_loss": 1.0, "improved": True}))
    assert adapter_not_learned(run / "adapter") is None
    # no LoRA tensors at all is a configuration error for the canary, not "did not learn"
    from safetensors.torch import save_file
    import torch

    empty = tmp_path / "empty"
    empty.mkdir()
    save_file({"other.weight": torch.zeros(2)}, str(empty / "adapter_model.safetensors"))
    assert adapter_not_learned(empty) is None
