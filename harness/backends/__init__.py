"""Serving: one interface, several real backends (hf, llamacpp, vllm, openai), built by kind through the registry."""
from harness.backends.base import BackendError, Backend, Completion, GenParams, Request, ServeSpec
from harness.backends.registry import known_kinds, make_backend, validate_backend_cfg

__all__ = ["Backend", "BackendError", "Completion", "GenParams", "Request", "ServeSpec", "known_kinds",
           "make_backend", "validate_backend_cfg"]
