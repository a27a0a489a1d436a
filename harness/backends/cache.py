"""A completion cache in front of any backend: re-running an eval calls the model only for new requests.

Key = sha256 of (model identity, messages, generation params[, backend name]):
- The model identity is backend-independent (base model hash, + adapter file hash), so renaming
  a run or moving an adapter folder keeps its cache entries, and a retrained adapter misses.
- By default the key also includes the backend's name (share_across_backends=False): the hf
  backend and llama.cpp (a quantized GGUF) do not produce the same text for the same model, and
  an eval should report what the backend it names produced. With share_across_backends=True
  outputs from any backend serving the same base+adapter share entries (useful when backends are
  known to agree, e.g. re-running on vllm what hf already answered).

Storage: one JSONL file, appended with harness.io.append_jsonl (flock; concurrent writers from
several processes are safe). Misses go to the inner backend in chunks (`chunk_size` requests) and
each chunk is appended as soon as it is done, so a crash loses at most the chunk in flight. A torn
last line (a writer killed mid-write) is skipped on read and closed off before the next append.
Error completions (finish_reason "error" / Completion.error) are never cached: a re-run retries them.
"""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any, Sequence

from harness.backends.base import Completion, ProgressFn, Request
from harness.io import append_jsonl, open_append, read_lines, sha256_text

CACHE_VERSION = 1


class CachedBackend:
    def __init__(self, backend: Any, cache_path: str | os.PathLike, *, share_across_backends: bool = False,
                 chunk_size: int = 64):
        self.inner = backend
        self.name = backend.name
        self.path = Path(cache_path)
        self.share_across_backends = bool(share_across_backends)
        self.chunk_size = max(1, int(chunk_size))
        self.hits = 0
        self.misses = 0
        self._entries: dict[str, dict] = {}
        self._offset = 0  # bytes of the file already read

    # -- Backend protocol, delegated
    def model_keys(self) -> list[str]:
        return self.inner.model_keys()

    def model_identity(self, model_key: str) -> str:
        return self.inner.model_identity(model_key)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, item: str) -> Any:  # optional extras such as logits() for the canary
        if item == "inner":
            raise AttributeError(item)
        return getattr(self.inner, item)

    # -- keys and storage
    def key(self, request: Request) -> str:
        payload = {
            "v": CACHE_VERSION,
            "model": self.inner.model_identity(request.model_key),
            "messages": request.message_dicts(),
            "params": request.params.to_dict(),
        }
        if not self.share_across_backends:
            payload["backend"] = self.inner.name
        return sha256_text(json.dumps(payload, sort_keys=True, ensure_ascii=False))

    def _refresh(self) -> None:
        """Read entries appended since the last read (by us or by other processes), a line at a time (an
        overlong line is skipped unread: harness.io.read_lines)."""
        if not self.path.is_file():
            return
        with open(self.path, "rb") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
            try:
                if fh.seek(0, os.SEEK_END) < self._offset:  # file replaced or truncated: start over
                    self._offset = 0
                    self._entries.clear()
                fh.seek(self._offset)
                for line, complete in read_lines(fh):
                    if not complete:
                        break  # a torn tail (no newline yet) is re-read next time
                    self._offset = fh.tell()
                    if not line or not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                        self._entries[row["key"]] = row["completion"]
                    except (ValueError, KeyError, TypeError, RecursionError):
                        continue  # torn or foreign line
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _close_torn_line(self) -> None:
        """If a killed writer left a line without its newline, end it so the next append starts cleanly."""
        if not self.path.is_file():
            return
        with open_append(self.path) as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                size = fh.seek(0, os.SEEK_END)
                if size:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        fh.write(b"\n")
                        fh.flush()
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _store(self, rows: list[dict]) -> None:
        if not rows:
            return
        self._close_torn_line()
        append_jsonl(self.path, rows)
        for r in rows:
            self._entries[r["key"]] = r["completion"]

    # -- generation
    def generate(self, requests: Sequence[Request], progress: ProgressFn | None = None) -> list[Completion]:
        requests = list(requests)
        self._refresh()
        keys = [self.key(r) for r in requests]
        out: list[Completion | None] = [None] * len(requests)
        todo: dict[str, list[int]] = {}  # key -> request indices (duplicates are generated once)
        n_hit = 0
        for i, k in enumerate(keys):
            if k in self._entries:
                out[i] = _completion(self._entries[k], cached=True)
                n_hit += 1
            else:
                todo.setdefault(k, []).append(i)
        self.hits += n_hit
        if progress is not None and n_hit:
            progress(n_hit)
        pending = list(todo.items())
        for start in range(0, len(pending), self.chunk_size):
            chunk = pending[start:start + self.chunk_size]
            reqs = [requests[idxs[0]] for _, idxs in chunk]
            comps = self.inner.generate(reqs)
            rows = []
            for (k, idxs), req, c in zip(chunk, reqs, comps):
                c.cached = False
                self.misses += 1
                for j, i in enumerate(idxs):
                    out[i] = c if j == 0 else _completion(c.to_dict(), cached=True)
                self.hits += len(idxs) - 1
                if c.finish_reason != "error" and not c.error:  # an error is retried next time, never replayed
                    d = c.to_dict()
                    d.pop("cached", None)
                    rows.append({"key": k, "model_key": req.model_key, "backend": self.inner.name, "completion": d})
            self._store(rows)
            if progress is not None:
                progress(sum(len(idxs) for _, idxs in chunk))
        return out  # type: ignore[return-value]


def _completion(d: dict, cached: bool) -> Completion:
    c = Completion.from_dict(d)
    c.cached = cached
    return c
