"""Moved to harness.backends.llama_server (it uses the backends' private process helpers); this name stays
importable for callers not yet switched (tests/test_judge_live.py, tests/test_sweep_secrets.py)."""
from harness.backends.llama_server import LlamaServer, free_port, llamacpp_available

__all__ = ["LlamaServer", "free_port", "llamacpp_available"]
