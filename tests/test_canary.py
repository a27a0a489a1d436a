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
