"""The backend interface every serving path implements (stdlib only: no concrete backend is imported here).

A request names a model by key: "base" or an adapter name. Messages are chat messages
(role/content); each backend renders them with the model's chat template, so the prompt
format is the same one training used (harness.prompts).

Failures: a request the backend could not answer (HTTP 4xx/5xx after retries, a prompt longer than
the context, a timeout) comes back as an error completion (`Completion.failure(...)`: text "",
finish_reason "error", `error` says why), never as an empty answer to be scored. A backend that
cannot serve at all raises BackendError. Backends are built by harness.backends.registry.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

BASE = "base"
_KEY_RX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


class BackendError(RuntimeError):
    """A serving backend cannot serve at all (misconfigured, server down after retries, ...)."""


def check_model_key(key: str, what: str = "adapter name") -> str:
    """UserError unless `key` is safe as a server argument (`name=path`), a model alias and a file name."""
    from harness.io import UserError

    key = str(key)
    if key == BASE:
        raise UserError(f"{what} {key!r} is reserved for the base model")
    if not _KEY_RX.fullmatch(key):
        raise UserError(f"{what} {key[:80]!r} is not allowed: use letters, digits and . _ + - "
                        "(at most 128, starting with a letter or digit)")
    return key


@dataclass(frozen=True)
class GenParams:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    logprobs: int = 0  # top-k log-probabilities per generated token; 0 = none
    # Stop once the answer's first JSON value is complete (and a ``` fence around it closed). Opt-in per
    # task: text after the JSON is then never generated, so a trailing-text deviation cannot show.
    json_stop: bool = False

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
        if not d["json_stop"]:  # keep the cache keys of settings written before this field existed
            del d["json_stop"]
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
    error: str | None = None  # why this request failed (finish_reason "error"); never cached, never scored

    @classmethod
    def failure(cls, error: str, latency_s: float = 0.0, prompt_tokens: int = 0) -> "Completion":
        """A request the backend could not answer: an error, not an empty answer."""
        return cls(text="", finish_reason="error", error=str(error) or "error", latency_s=latency_s,
                   prompt_tokens=prompt_tokens)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Completion":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


ProgressFn = Callable[[int], None]


def cut_at_json_end(c: Completion, params: GenParams) -> Completion:
    """For servers that cannot stop there themselves: end the text where GenParams.json_stop would have."""
    if params.json_stop and not c.error:
        from harness.backends.hf_decode import json_end

        end = json_end(c.text)
        if end is not None and end < len(c.text):
            c.text, c.finish_reason = c.text[:end], "stop"
    return c


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


class ServedAdapters:
    """Keys and cache identities for a backend that serves `model_spec` plus `adapter_dirs` (hf, llamacpp, vllm)."""

    name: str
    model_spec: Any
    adapter_dirs: dict[str, Path]

    def model_keys(self) -> list[str]:
        return [BASE, *self.adapter_dirs]

    def _take_adapters(self, adapters: dict) -> dict[str, Path]:
        """Validated adapter names -> folders (PEFT adapter_config.json required)."""
        from harness.io import UserError

        out: dict[str, Path] = {}
        for key, adir in (adapters or {}).items():
            key, adir = check_model_key(key), Path(adir)
            if not (adir / "adapter_config.json").is_file():
                raise UserError(f"{adir}: no adapter_config.json (not a PEFT adapter folder)")
            out[key] = adir
        return out

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
    """Identity of base + adapter: the base identity and adapter_digest() of the adapter folder.

    Backend-independent: any backend serving the same base and adapter files reports the same string.
    """
    return f"{base_identity}+{adapter_digest(adapter_dir)[:16]}"


def adapter_digest(adapter_dir: Path) -> str:
    """sha256 over every file of the adapter folder (name and content): weights, adapter_config.json (lora_alpha,
    target modules change the outputs as much as the weights do), everything else. Any change is a new model
    whose generations are made again, never taken from the cache. Symbolic links are refused."""
    import hashlib

    from harness.io import UserError, regular_files, sha256_file

    adapter_dir = Path(adapter_dir)
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise UserError(f"{weights}: adapter weights not found (expected a PEFT adapter saved as safetensors)")
    h = hashlib.sha256()
    for p in regular_files(adapter_dir):
        digest = _config_digest(p) if p.name == "adapter_config.json" else sha256_file(p)
        h.update(f"{p.relative_to(adapter_dir).as_posix()}\0{digest}\n".encode())
    return h.hexdigest()


def _config_digest(path: Path) -> str:
    """adapter_config.json by content, not bytes: PEFT writes target_modules from a Python set, so the same
    adapter saved twice lists them in another order (a new identity would regenerate everything)."""
    import hashlib
    import json

    from harness.io import sha256_file

    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return sha256_file(path)
    if isinstance(cfg, dict):
        cfg = {k: sorted(v, key=str) if k in ("target_modules", "layers_to_transform") and isinstance(v, list) else v
               for k, v in cfg.items()}
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()
