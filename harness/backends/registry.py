"""Which backend a config names: a lazy {kind: "module:Class"} table (nothing is imported until used).

    make_backend({"kind": "hf", "batch_size": 32}, ServeSpec(model_cfg, adapters))
    validate_backend_cfg(cfg["backend"])   # before any training: unknown kind/option -> UserError

A backend's options are the keyword arguments of its constructor (after `spec`); a class may add a
`check_options(opts)` classmethod for value checks that need no model (ranges, choices). Both run
in validate_backend_cfg, which the CLI calls before training starts, and again in make_backend.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any

from harness.backends.base import Backend, ServeSpec
from harness.io import UserError

BACKENDS: dict[str, str] = {
    "hf": "harness.backends.hf:HFBackend",
    "llamacpp": "harness.backends.llamacpp:LlamaCppBackend",
    "openai": "harness.backends.openai_backend:OpenAIBackend",
    "vllm": "harness.backends.vllm_backend:VLLMBackend",
}
CONFIG_ONLY_KEYS = ("kind", "name")  # keys of conf/backend/*.yaml that are not constructor options


def known_kinds() -> list[str]:
    return sorted(BACKENDS)


def backend_class(kind: str) -> type:
    """The class registered for `kind` (its module is imported now); UserError listing the kinds otherwise."""
    target = BACKENDS.get(str(kind))
    if target is None:
        raise UserError(f"backend.kind: unknown backend {kind!r} (known: {', '.join(known_kinds())})")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def backend_options(backend_cfg: dict) -> dict[str, Any]:
    return {k: v for k, v in dict(backend_cfg or {}).items() if k not in CONFIG_ONLY_KEYS}


def option_names(cls: type) -> list[str]:
    params = list(inspect.signature(cls.__init__).parameters.values())[2:]  # self, spec
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and not p.name.startswith("_")]


def validate_backend_cfg(backend_cfg: dict) -> None:
    """UserError for an unknown kind, an unknown option (naming the known ones) or a bad value; loads no model."""
    cfg = dict(backend_cfg or {})
    kind = cfg.get("kind", "hf")
    cls = backend_class(kind)
    opts = backend_options(cfg)
    known = option_names(cls)
    unknown = sorted(set(opts) - set(known))
    if unknown:
        raise UserError(f"backend.{unknown[0]}: unknown option for the {kind} backend "
                        f"(known: {', '.join(sorted(known))})")
    check = getattr(cls, "check_options", None)
    if check is not None:
        check(opts)


def make_backend(backend_cfg: dict, spec: ServeSpec) -> Backend:
    """Validate the options, then build the backend (which may load a model or start a server)."""
    cfg = dict(backend_cfg or {})
    validate_backend_cfg(cfg)
    return backend_class(cfg.get("kind", "hf"))(spec, **backend_options(cfg))
