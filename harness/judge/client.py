"""The judge's call layer: requests through any backend, an on-disk cache keyed by rubric, cost accounting."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from harness.backends.base import BASE, BackendError, Completion, GenParams, Request
from harness.backends.cache import CachedBackend
from harness.config import redact_text
from harness.io import stable_hash


class RubricCachedBackend(CachedBackend):
    """harness.backends.cache.CachedBackend with the rubric name+version added to the key."""

    def __init__(self, backend: Any, cache_path: Path, rubric_tag: str, chunk_size: int):
        super().__init__(backend, cache_path, chunk_size=chunk_size)
        self.rubric_tag = rubric_tag

    def key(self, request: Request) -> str:
        return stable_hash({"judge_rubric": self.rubric_tag, "request": super().key(request)}, length=64)


@dataclass
class CostStats:
    calls: int = 0
    cached: int = 0
    new: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    backend_time_s: float = 0.0
    wall_s: float = 0.0

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}

    def line(self) -> str:
        return (f"judge calls: {self.calls} ({self.new} new, {self.cached} cached, {self.errors} errors); "
                f"tokens: {self.prompt_tokens} prompt + {self.completion_tokens} completion "
                f"(saved by cache: {self.cached_prompt_tokens} + {self.cached_completion_tokens}); "
                f"backend {self.backend_time_s:.1f}s, wall {self.wall_s:.1f}s")


class JudgeClient:
    """Sends judge requests through a backend, with the on-disk cache and cost accounting.

    A BackendError (the endpoint cannot serve at all) does not escape: the requests answered before it keep
    their completions (and are cached), the rest come back as error completions, `failure` says why, and
    no further request is sent. The cache is harness.backends.cache.CachedBackend (JSONL via append_jsonl, chunked appends,
    safe for concurrent writers, error completions never stored) keyed by (judge model identity,
    rubric name+version, messages, generation params, backend name).
    """

    def __init__(self, backend: Any, cache_path: str | Path | None = None, *, model_key: str = BASE,
                 identity: str | None = None, chunk_size: int = 16):
        self.backend = backend
        self.model_key = model_key
        self.identity = identity or backend.model_identity(model_key)
        self.cache_path = Path(cache_path) if cache_path else None
        self.chunk_size = max(1, int(chunk_size))
        self._wrapped: dict[str, Any] = {}
        self.stats = CostStats()
        self.failure: str | None = None  # set when the backend could not serve at all; later requests fail at once

    def _backend_for(self, rubric_tag: str) -> Any:
        if self.cache_path is None:
            return self.backend
        if rubric_tag not in self._wrapped:
            self._wrapped[rubric_tag] = RubricCachedBackend(self.backend, self.cache_path, rubric_tag, self.chunk_size)
        return self._wrapped[rubric_tag]

    def complete(self, jobs: Sequence[tuple[list[dict], GenParams]], rubric_tag: str) -> list[Completion]:
        if not jobs:
            return []
        reqs = [Request(self.model_key, msgs, params) for msgs, params in jobs]
        t0 = time.perf_counter()
        comps: list[Completion] = []
        backend = self._backend_for(rubric_tag)
        for i in range(0, len(reqs), self.chunk_size):
            if self.failure is not None:
                break
            try:
                comps += backend.generate(reqs[i:i + self.chunk_size])
            except BackendError as exc:  # endpoint down: keep what came back (cached), fail the rest at once
                self.failure = redact_text(str(exc))
        comps += [Completion.failure(self.failure or "backend failed") for _ in range(len(reqs) - len(comps))]
        self.stats.backend_time_s += time.perf_counter() - t0
        if len(comps) != len(reqs):
            raise RuntimeError(f"judge backend returned {len(comps)} completions for {len(reqs)} requests")
        for c in comps:
            self.stats.calls += 1
            if c.cached:
                self.stats.cached += 1
                self.stats.cached_prompt_tokens += int(c.prompt_tokens or 0)
                self.stats.cached_completion_tokens += int(c.completion_tokens or 0)
            elif c.finish_reason == "error" or c.error:
                self.stats.errors += 1  # calls = cached + new + errors: a failed request produced nothing
            else:
                self.stats.new += 1
                self.stats.prompt_tokens += int(c.prompt_tokens or 0)
                self.stats.completion_tokens += int(c.completion_tokens or 0)
        return comps

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close:
            close()
