"""Completion cache: hits skip the model, concurrent writers, torn lines, crash mid-run."""
from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from harness.backends.base import Completion, GenParams, Request
from harness.backends.cache import CachedBackend


class CountingBackend:
    """A fake backend that echoes the prompt and counts what it was asked."""

    def __init__(self, name="fake", fail_on_call=None, ident_suffix=""):
        self.name = name
        self.calls = 0
        self.requests = 0
        self.fail_on_call = fail_on_call
        self.ident_suffix = ident_suffix

    def model_keys(self):
        return ["base", "a1"]

    def model_identity(self, key):
        return f"id-{key}{self.ident_suffix}"

    def generate(self, requests, progress=None):
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise RuntimeError("boom")
        self.requests += len(requests)
        return [Completion(text=f"{r.model_key}:{r.message_dicts()[-1]['content']}", completion_tokens=3) for r in requests]

    def close(self):
        pass


def _reqs(n, key="base", prefix="q", **kw):
    return [Request(key, [{"role": "user", "content": f"{prefix}{i}"}], GenParams(**kw)) for i in range(n)]


def test_hit_on_rerun_makes_no_model_call(tmp_path):
    path = tmp_path / "cache.jsonl"
    inner = CountingBackend()
    c = CachedBackend(inner, path, chunk_size=4)
    first = c.generate(_reqs(10))
    assert inner.requests == 10 and c.misses == 10 and c.hits == 0
    assert not any(x.cached for x in first)
    # A fresh process-equivalent: new wrapper, new inner.
    inner2 = CountingBackend()
    c2 = CachedBackend(inner2, path)
    seen = []
    again = c2.generate(_reqs(10), progress=seen.append)
    assert inner2.calls == 0 and c2.hits == 10 and c2.misses == 0 and sum(seen) == 10
    assert [x.text for x in again] == [x.text for x in first] and all(x.cached for x in again)
    # Partial hit: only the new requests reach the model, order preserved.
    mixed = _reqs(12)[::-1]
    out = c2.generate(mixed)
    assert inner2.requests == 2 and [o.text for o in out] == [f"base:q{i}" for i in range(11, -1, -1)]


def test_key_depends_on_identity_params_and_backend(tmp_path):
    path = tmp_path / "cache.jsonl"
    CachedBackend(CountingBackend(), path).generate(_reqs(3))
    for inner, kw, n in [
        (CountingBackend(), {"max_new_tokens": 5}, 3),        # other params
        (CountingBackend(ident_suffix="x"), {}, 3),           # retrained adapter / other base
        (CountingBackend(name="other"), {}, 3),               # other backend, not shared
        (CountingBackend(), {}, 0),                           # identical
    ]:
        CachedBackend(inner, path).generate(_reqs(3, **kw))
        assert inner.requests == n
    shared = CountingBackend(name="other2")
    CachedBackend(shared, path, share_across_backends=True).generate(_reqs(3))
    assert shared.requests == 3  # the entries above were written with backend names in the key
    shared2 = CountingBackend(name="yet-another")
    CachedBackend(shared2, path, share_across_backends=True).generate(_reqs(3))
    assert shared2.requests == 0


def test_duplicates_generated_once(tmp_path):
    inner = CountingBackend()
    out = CachedBackend(inner, tmp_path / "c.jsonl").generate(_reqs(2) + _reqs(2))
    assert inner.requests == 2 and [o.text for o in out] == ["base:q0", "base:q1"] * 2


def test_crash_mid_run_keeps_first_chunk(tmp_path):
    path = tmp_path / "c.jsonl"
    inner = CountingBackend(fail_on_call=2)
    with pytest.raises(RuntimeError):
        CachedBackend(inner, path, chunk_size=4).generate(_reqs(10))
    inner2 = CountingBackend()
    c = CachedBackend(inner2, path, chunk_size=4)
    out = c.generate(_reqs(10))
    assert c.hits == 4 and inner2.requests == 6
    assert [o.text for o in out] == [f"base:q{i}" for i in range(10)]


def test_torn_last_line_ignored_and_repaired(tmp_path):
    path = tmp_path / "c.jsonl"
    CachedBackend(CountingBackend(), path).generate(_reqs(3))
    with open(path, "a") as fh:
        fh.write('{"key": "abc", "completion": {"te')  # writer killed mid-line
    inner = CountingBackend()
    c = CachedBackend(inner, path)
    c.generate(_reqs(5))
    assert c.hits == 3 and inner.requests == 2
    lines = path.read_text().splitlines()
    assert sum(1 for ln in lines if _parses(ln)) == 5  # the new rows were not glued to the torn line
    inner3 = CountingBackend()
    CachedBackend(inner3, path).generate(_reqs(5))
    assert inner3.requests == 0


def _parses(line):
    try:
        json.loads(line)
        return True
    except json.JSONDecodeError:
        return False


def _writer(path, worker, n):
    c = CachedBackend(CountingBackend(), path, chunk_size=3)
    c.generate(_reqs(n, prefix=f"w{worker}-"))


def test_concurrent_writers(tmp_path):
    path = str(tmp_path / "c.jsonl")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 30)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = open(path).read().splitlines()
    assert len(lines) == 120 and all(_parses(ln) for ln in lines)
    inner = CountingBackend()
    c = CachedBackend(inner, path)
    for w in range(4):
        c.generate(_reqs(30, prefix=f"w{w}-"))
    assert inner.calls == 0 and c.hits == 120


def test_delegates_extras(tmp_path):
    inner = CountingBackend()
    inner.logits = lambda key, msgs: "L"
    c = CachedBackend(inner, tmp_path / "c.jsonl")
    assert c.name == "fake" and c.model_keys() == ["base", "a1"] and c.model_identity("a1") == "id-a1"
    assert c.logits("a1", []) == "L"


class FlakyBackend(CountingBackend):
    """Fails the requests whose prompt ends in 'bad' with an error completion (as a server's 5xx/overflow)."""

    def generate(self, requests, progress=None):
        self.calls += 1
        self.requests += len(requests)
        return [Completion.failure("HTTP 503: overloaded") if r.message_dicts()[-1]["content"].endswith("bad")
                else Completion(text="ok", completion_tokens=1) for r in requests]


def test_errors_are_returned_never_cached_and_retried(tmp_path):
    path = tmp_path / "cache.jsonl"
    inner = FlakyBackend()
    reqs = _reqs(2) + [Request("base", [{"role": "user", "content": "q-bad"}], GenParams())]
    out = CachedBackend(inner, path).generate(reqs)
    assert [c.error for c in out] == [None, None, "HTTP 503: overloaded"] and out[2].finish_reason == "error"
    stored = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(stored) == 2 and all(r["completion"]["error"] is None for r in stored)
    again = FlakyBackend()
    out2 = CachedBackend(again, path).generate(reqs)
    assert again.requests == 1 and out2[2].error and out2[0].cached and not out2[2].cached
