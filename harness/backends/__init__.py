"""Serving: one interface, several real backends (hf, llamacpp, vllm, openai)."""
from harness.backends.base import Backend, Completion, GenParams, Request, make_backend

__all__ = ["Backend", "Completion", "GenParams", "Request", "make_backend"]
