"""The backends behind the one evaluation path: built lazily (a re-score whose generations are all cached loads
no model), canaried when built, behind the generation cache, and several of them (different bases or
backends: export's merged copy and GGUF) routed behind one name space for evaluate()."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from harness.backends.base import BASE, Completion, Request
from harness.io import UserError

# backends whose model identity is ServedAdapters' scheme (base identity [+ adapter file hash]):
# for these the identities are known without building the backend, so a cached re-score loads no model
_LOCAL_KINDS = ("hf", "llamacpp", "vllm")


def group_backend(group: dict, cache_path: Path | None, *, canary: bool) -> Any:
    """One group's backend: built on first use (then canaried), behind the generation cache."""
    from harness.backends import make_backend
    from harness.backends.base import ServeSpec, adapter_identity

    mcfg, bcfg, adapters = group["model_cfg"], group["backend_cfg"], dict(group["adapters"])
    kind = str(bcfg.get("kind", "hf"))

    def build():
        b = make_backend(bcfg, ServeSpec(mcfg, adapters))
        if canary and adapters:
            from harness.canary import check_adapters_applied

            try:
                check_adapters_applied(b, list(adapters))
            except BaseException:
                b.close()
                raise
        return b

    if kind in _LOCAL_KINDS:
        from harness.models import resolve_model

        base_id = resolve_model(mcfg).identity
        idents = {BASE: base_id, **{k: adapter_identity(base_id, p) for k, p in adapters.items()}}
        inner: Any = LazyBackend(kind, build, idents)
    else:
        inner = build()  # remote identities (URL + served model) are the backend's to say
    if cache_path is None:
        return inner
    from harness.backends.cache import CachedBackend

    return CachedBackend(inner, cache_path)


class LazyBackend:
    """A backend that is built only when a request reaches it (all-cached re-scores load no model);
    keys and identities are known up front."""

    def __init__(self, name: str, factory: Callable[[], Any], identities: dict[str, str]):
        self.name, self._factory, self._identities, self._built = name, factory, dict(identities), None

    @property
    def built(self) -> bool:
        return self._built is not None

    def get(self) -> Any:
        if self._built is None:
            self._built = self._factory()
        return self._built

    def model_keys(self) -> list[str]:
        return list(self._identities)

    def model_identity(self, key: str) -> str:
        if key not in self._identities:
            raise UserError(f"unknown model {key!r} (known: {', '.join(self._identities)})")
        return self._identities[key]

    def generate(self, requests, progress=None):
        return self.get().generate(requests, progress=progress) if requests else []

    def close(self) -> None:
        if self._built is not None:
            self._built.close()

    def __getattr__(self, item: str) -> Any:  # optional extras (logits) of the real backend
        if item.startswith("_"):
            raise AttributeError(item)
        return getattr(self.get(), item)


class RoutedBackend:
    """Several backends behind one name space: {model: (backend, its key there)}. evaluate() sends every
    request in one generate() call; each backend gets its own requests in one call too."""

    name = "routed"

    def __init__(self, routes: dict[str, tuple[Any, str]]):
        self.routes = dict(routes)
        self._backends = list({id(b): b for b, _ in self.routes.values()}.values())
        self.name = ",".join(dict.fromkeys(str(getattr(b, "name", "?")) for b in self._backends)) or "routed"

    def model_keys(self) -> list[str]:
        return list(self.routes)

    def model_identity(self, key: str) -> str:
        b, inner = self.routes[key]
        return b.model_identity(inner)

    def identities(self) -> dict[str, str]:
        return {k: self.model_identity(k) for k in self.routes}

    def backend_names(self) -> dict[str, str]:
        """{model: the name (kind) of the backend that generates it}: part of the scores' inputs hash."""
        return {k: str(getattr(b, "name", "?")) for k, (b, _) in self.routes.items()}

    @property
    def hits(self) -> int | None:
        return _sum_attr(self._backends, "hits")

    @property
    def misses(self) -> int | None:
        return _sum_attr(self._backends, "misses")

    def engines(self) -> list[dict]:
        """What each backend that generated ran on (hf: lean or transformers forward and why, HFBackend.engine_info),
        for summary.json and the report; a lazy backend never built (every answer cached) is not listed."""
        out = []
        for b in self._backends:
            real = vars(b).get("inner", b)  # behind the generation cache (vars: no lazy __getattr__ build)
            if isinstance(real, LazyBackend):
                if not real.built:
                    continue
                real = real.get()
            info = getattr(type(real), "engine_info", None)
            out.append({"backend": str(getattr(real, "name", "?")), **(info(real) if info else {})})
        return out

    def generate(self, requests, progress=None):
        out: list[Completion | None] = [None] * len(requests)
        for b in self._backends:
            idx = [i for i, r in enumerate(requests) if self.routes[r.model_key][0] is b]
            if not idx:
                continue
            sub = [Request(self.routes[requests[i].model_key][1], requests[i].messages, requests[i].params) for i in idx]
            for i, c in zip(idx, b.generate(sub, progress=progress)):
                out[i] = c
        return out

    def close(self) -> None:
        errors = []
        for b in self._backends:
            try:
                b.close()
            except Exception as exc:  # close every backend even if one fails
                errors.append(exc)
        if errors:
            raise errors[0]


def _sum_attr(objs: list, attr: str) -> int | None:
    vals = [getattr(o, attr, None) for o in objs]
    vals = [v for v in vals if isinstance(v, int)]
    return sum(vals) if vals else None
