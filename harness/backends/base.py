"""The backend interface every serving path implements.

A request names a model by key: "base" or an adapter name. Messages are chat messages
(role/content); each backend renders them with the model's chat template, so the prompt
format is the same one training used (harness.prompts).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

BASE = "base"


@dataclass(frozen=True)
class GenParams:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    logprobs: int = 0  # top-k log-probabilities per generated token; 0 = none

    @classmethod
    def from_dict(cls, d: dict | None) -> "GenParams":
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown generation setting(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        if "stop" in d and d["stop"] is not None:
            d["stop"] = tuple(d["stop"]) if not isinstance(d["stop"], str) else (d["stop"],)
        elif "stop" in d:
            d["stop"] = ()
        return cls(**d)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass(frozen=True)
class Request:
    model_key: str
    messages: tuple[tuple[str, str], ...] | list[dict]
    params: GenParams = GenParams()

    def message_dicts(self) -> list[dict]:
        return [m if isinstance(m, dict) else {"role": m[0], "content": m[1]} for m in self.messages]


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length" | "error"
    latency_s: float = 0.0
    # per generated token: {"token": str, "logprob": float, "top": {token: logprob}}
    logprobs: list[dict] | None = None
    cached: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Completion":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


ProgressFn = Callable[[int], None]


class Backend(Protocol):
    """What every serving backend offers."""

    name: str

    def model_keys(self) -> list[str]:
        """"base" plus every adapter name this backend can serve."""

    def model_identity(self, model_key: str) -> str:
        """A backend-independent identity (base model hash + adapter file hash) used as cache key."""

    def generate(self, requests: Sequence[Request], progress: ProgressFn | None = None) -> list[Completion]:
        """Completions in the order of `requests`; `progress(n)` after each n finished."""

    def close(self) -> None:
        """Free resources; stop any server process this backend started."""


@dataclass
class ServeSpec:
    """What to serve: a base model (a resolved model config) and named adapters."""

    model_cfg: dict
    adapters: dict[str, Path] = field(default_factory=dict)


def make_backend(backend_cfg: dict, spec: ServeSpec) -> Backend:
    """Build the backend named in conf/backend/<name>.yaml (`kind` key); imports are lazy."""
    kind = backend_cfg.get("kind", "hf")
    if kind == "hf":
        from harness.backends.hf import HFBackend

        return HFBackend(spec, **_opts(backend_cfg))
    if kind == "llamacpp":
        from harness.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(spec, **_opts(backend_cfg))
    if kind == "openai":
        from harness.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(spec, **_opts(backend_cfg))
    if kind == "vllm":
        from harness.backends.vllm_backend import VLLMBackend

        return VLLMBackend(spec, **_opts(backend_cfg))
    raise ValueError(f"unknown backend kind {kind!r} (expected hf, llamacpp, openai or vllm)")


def _opts(cfg: dict) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in ("kind", "name")}


class ServedAdapters:
    """Keys and cache identities for a backend that serves `model_spec` plus `adapter_dirs` (hf, llamacpp, vllm)."""

    name: str
    model_spec: Any
    adapter_dirs: dict[str, Path]

    def model_keys(self) -> list[str]:
        return [BASE, *self.adapter_dirs]

    def check_keys(self, keys) -> None:
        from harness.io import UserError

        for key in keys:
            if key != BASE and key not in self.adapter_dirs:
                raise UserError(f"unknown model {key!r} for the {self.name} backend (known: {', '.join(self.model_keys())})")

    def model_identity(self, model_key: str) -> str:
        self.check_keys([model_key])
        cache = self.__dict__.setdefault("_identities", {})
        if model_key not in cache:
            cache[model_key] = (self.model_spec.identity if model_key == BASE
                                else adapter_identity(self.model_spec.identity, self.adapter_dirs[model_key]))
        return cache[model_key]


def adapter_identity(base_identity: str, adapter_dir: Path) -> str:
    """Identity of base + adapter: the base identity and the sha256 of adapter_model.safetensors.

    Backend-independent: any backend serving the same base and adapter file reports the same string.
    """
    from harness.io import UserError, sha256_file

    weights = Path(adapter_dir) / "adapter_model.safetensors"
    if not weights.is_file():
        raise UserError(f"{weights}: adapter weights not found (expected a PEFT adapter saved as safetensors)")
    return f"{base_identity}+{sha256_file(weights)[:16]}"
