"""Backend registry: lazy kinds, early option validation, safe model keys, no import of concrete backends."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.backends import known_kinds, validate_backend_cfg
from harness.backends.base import BASE, check_model_key
from harness.io import UserError

REPO = Path(__file__).resolve().parents[1]


def test_every_shipped_backend_config_validates():
    files = sorted((REPO / "conf" / "backend").glob("*.yaml"))
    assert {f.stem for f in files} >= set(known_kinds())
    for f in files:
        validate_backend_cfg(yaml.safe_load(f.read_text()))


@pytest.mark.parametrize("cfg, pattern", [
    ({"kind": "tgi"}, r"backend\.kind: unknown backend 'tgi' \(known: hf, llamacpp, openai, vllm\)"),
    ({"kind": "hf", "batchsize": 8}, r"backend\.batchsize: unknown option for the hf backend \(known: .*batch_size"),
    ({"kind": "openai", "apikey": "x"}, r"backend\.apikey: .*known: .*api_key, api_key_env"),
    ({"kind": "hf", "batch_size": 0}, r"backend\.batch_size: must be an integer >= 1"),
    ({"kind": "hf", "engine": "turbo"}, r"backend\.engine: must be one of prefix, generate"),
    ({"kind": "vllm", "mode": "cloud"}, r"backend\.mode: must be one of"),
    ({"kind": "vllm", "cpu_kv_cache_gib": 0}, r"backend\.cpu_kv_cache_gib: must be a number of GiB >= 1"),
    ({"kind": "llamacpp", "kv_type": "q4"}, r"backend\.kv_type: must be one of"),
    ({"kind": "openai", "concurrency": 0}, r"backend\.concurrency: must be an integer >= 1"),
    ({"kind": "openai", "timeout_s": "soon"}, r"backend\.timeout_s: must be a number of seconds"),
    ({"kind": "openai", "base_url": "ftp://u:pw@h/v1"}, r"backend\.base_url: must start with http:// .*'ftp://h/v1'"),
])
def test_bad_backend_config_is_a_user_error_naming_the_key(cfg, pattern):
    with pytest.raises(UserError, match=pattern):
        validate_backend_cfg(cfg)


def test_validation_loads_no_model_and_base_imports_no_backend():
    """base.py and the registry import no concrete backend (no cycles); validation imports only the named one."""
    code = ("import sys; import harness.backends as b; "
            "assert not [m for m in sys.modules if m.startswith('harness.backends.') and m.split('.')[-1] in "
            "('hf', 'llamacpp', 'openai_backend', 'vllm_backend')], sorted(sys.modules); "
            "assert 'torch' not in sys.modules; "
            "b.validate_backend_cfg({'kind': 'vllm'}); assert 'vllm' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


@pytest.mark.parametrize("name", ["r8-lr0.0002", "adapter_1", "Qwen2.5+lora", "a" * 128])
def test_model_key_accepted(name):
    assert check_model_key(name) == name


@pytest.mark.parametrize("name", [BASE, "", "a=b", "../etc", "-x", "a b", "x\nfoo", "a/b", "a" * 129, "--enable-x"])
def test_model_key_refused_before_it_becomes_a_server_argument(name):
    with pytest.raises(UserError):
        check_model_key(name)


def test_make_backend_refuses_unknown_option_before_loading():
    from harness.backends import ServeSpec, make_backend

    with pytest.raises(UserError, match="backend.bogus"):
        make_backend({"kind": "hf", "bogus": 1}, ServeSpec({"name": "does-not-exist", "source": "nowhere"}))
