"""HF backend: mixed-adapter batches equal one-at-a-time generation; stops, lengths, logprobs, identities."""
from __future__ import annotations

import pytest

from harness.backends.base import BASE, GenParams, Request, ServeSpec, adapter_identity
from harness.io import UserError
from tests.conftest import TINY_CFG

PROMPTS = [
    "hi",
    "What is the capital of France? Answer briefly please.",
    "x " * 30,
    "Tell me a story",
    "1+1=",
    "Translate to French: good morning, my friend",
    "ok",
    "A longer prompt with many many words to make it long enough " * 3,
]


@pytest.fixture(scope="module")
def backend(tiny_adapters):
    from harness.backends.hf import HFBackend

    b = HFBackend(ServeSpec(TINY_CFG, {k: tiny_adapters[k] for k in ("a1", "a2")}), batch_size=8, device="cpu")
    yield b
    b.close()


def _req(key, text, **kw):
    return Request(key, [{"role": "user", "content": text}], GenParams(**{"max_new_tokens": 10, **kw}))


def _tokens(c):
    return [t["token"] for t in c.logprobs]


def test_mixed_batch_equals_one_at_a_time(backend):
    # Interleave keys so every batch mixes base and both adapters, with prompts of different lengths.
    reqs = [_req(k, t, logprobs=1) for i, t in enumerate(PROMPTS) for k in ((BASE, "a1", "a2")[i % 3:] + (BASE, "a1", "a2")[:i % 3])]
    mixed = backend.generate(reqs)
    single = [backend.generate([r])[0] for r in reqs]
    assert len(mixed) == len(reqs)
    for r, m, s in zip(reqs, mixed, single):
        assert m.text == s.text, (r.model_key, r.messages)
        assert _tokens(m) == _tokens(s)
        assert m.completion_tokens == s.completion_tokens
        assert m.finish_reason == s.finish_reason
        assert m.prompt_tokens == s.prompt_tokens
        for a, b in zip(m.logprobs, s.logprobs):
            assert a["logprob"] == pytest.approx(b["logprob"], abs=1e-3)
    # The adapters really change the output (and differ from each other).
    by_key = {k: [m.text for r, m in zip(reqs, mixed) if r.model_key == k] for k in (BASE, "a1", "a2")}
    assert by_key["a1"] != by_key[BASE] and by_key["a2"] != by_key[BASE] and by_key["a1"] != by_key["a2"]


def test_batch_size_does_not_change_greedy_output(tiny_adapters, backend):
    reqs = [_req(k, t) for t in PROMPTS[:5] for k in (BASE, "a1", "a2")]
    ref = [c.text for c in backend.generate(reqs)]
    old = backend.batch_size
    try:
        backend.batch_size = 3
        assert [c.text for c in backend.generate(reqs)] == ref
    finally:
        backend.batch_size = old


def test_order_progress_and_counts(backend):
    reqs = [_req("a1", t, max_new_tokens=6) for t in PROMPTS]
    seen = []
    out = backend.generate(reqs, progress=seen.append)
    assert sum(seen) == len(reqs)
    for r, c in zip(reqs, out):
        assert c.completion_tokens == 6 and c.finish_reason == "length"
        assert c.prompt_tokens > 0 and c.latency_s > 0 and c.logprobs is None and not c.cached
    # Order restored: each output is the one the prompt gets alone.
    assert out[3].text == backend.generate([reqs[3]])[0].text


def test_stop_string_truncates(backend):
    base = backend.generate([_req("a1", "Tell me a story", max_new_tokens=10)])[0]
    assert base.finish_reason == "length"
    word = base.text.split()[2]
    stop = backend.generate([_req("a1", "Tell me a story", max_new_tokens=10, stop=(word,))])[0]
    assert stop.finish_reason == "stop"
    assert word not in stop.text and base.text.startswith(stop.text)
    assert stop.completion_tokens < 10


def test_eos_finishes_row(backend):
    # The tiny base model emits "\n" greedily; pretend that is end-of-turn.
    nl = backend.tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    old = backend._eos_ids
    backend._eos_ids = {nl}
    try:
        out = backend.generate([_req(BASE, "hi"), _req("a1", "hi")])
    finally:
        backend._eos_ids = old
    assert out[0].finish_reason == "stop" and out[0].completion_tokens == 1
    assert out[1].finish_reason == "length" and out[1].completion_tokens == 10


def test_logprobs_topk(backend):
    c = backend.generate([_req("a2", "hello there", max_new_tokens=4, logprobs=3)])[0]
    assert len(c.logprobs) == 4
    for t in c.logprobs:
        assert len(t["top"]) <= 3 and t["logprob"] <= 0
        assert max(t["top"].values()) == pytest.approx(t["logprob"], abs=1e-5)  # greedy picks the top token


def test_sampling_seeded(backend):
    r = _req("a1", "hello", temperature=1.0, top_p=0.9, seed=7)
    a, b = backend.generate([r])[0], backend.generate([r])[0]
    assert a.text == b.text
    # the seed matters: five seeds on a random model's flat distribution give more than one sample
    samples = {backend.generate([_req("a1", "hello", temperature=1.0, top_p=0.9, seed=s)])[0].text for s in range(8, 13)}
    assert len(samples | {a.text}) > 1


def test_identity_and_keys(backend, tiny_spec, tiny_adapters):
    assert backend.model_keys() == [BASE, "a1", "a2"]
    assert backend.model_identity(BASE) == tiny_spec.identity
    assert backend.model_identity("a1") == adapter_identity(tiny_spec.identity, tiny_adapters["a1"])
    assert backend.model_identity("a1") != backend.model_identity("a2")
    with pytest.raises(UserError, match="unknown model"):
        backend.generate([_req("nope", "hi")])


def test_logits_method(backend):
    msgs = [{"role": "user", "content": "hi"}]
    lb, la = backend.logits(BASE, msgs), backend.logits("a1", msgs)
    assert lb.shape == la.shape and lb.ndim == 1
    assert not (lb == la).all()


def test_base_only_and_bad_adapter(tmp_path):
    from harness.backends.hf import HFBackend

    b = HFBackend(ServeSpec(TINY_CFG, {}), device="cpu")
    assert b.model_keys() == [BASE]
    assert b.generate([_req(BASE, "hi", max_new_tokens=3)])[0].completion_tokens == 3
    (tmp_path / "bad").mkdir()
    with pytest.raises(UserError, match="adapter_config.json"):
        HFBackend(ServeSpec(TINY_CFG, {"bad": tmp_path / "bad"}), device="cpu")
    (tmp_path / "bad" / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="safetensors"):
        HFBackend(ServeSpec(TINY_CFG, {"bad": tmp_path / "bad"}), device="cpu")
    with pytest.raises(UserError, match="not allowed"):
        HFBackend(ServeSpec(TINY_CFG, {"x=/etc": tmp_path / "bad"}), device="cpu")


# ------------------------------------------------------------------ the prefix engine vs plain generate

SYSTEM = {"role": "system", "content": "You label tickets. Answer with one JSON object with the keys product and "
                                       "severity, nothing else. Be brief and exact."}
SHOTS = [{"role": "user", "content": "the app crashes"}, {"role": "assistant", "content": '{"product": "app"}'},
         {"role": "user", "content": "billing is wrong"}, {"role": "assistant", "content": '{"product": "billing"}'}]


def _workload():
    """Zero-shot and few-shot requests that share a system prompt (as the demo's), plus bare probes."""
    tickets = [f"ticket {i}: " + "the portal is slow " * (i % 4) for i in range(7)]
    msgs = [[SYSTEM, {"role": "user", "content": t}] for t in tickets]
    msgs += [[SYSTEM, *SHOTS, {"role": "user", "content": t}] for t in tickets[:4]]
    msgs += [[{"role": "user", "content": p}] for p in PROMPTS[:4]]
    return msgs


@pytest.mark.parametrize("pack", [True, False], ids=["packed-prefix-attended-once", "exact-prefix-copied"])
def test_prefix_engine_equals_generate_engine(tiny_adapters, pack, monkeypatch):
    """Same greedy tokens, finish reasons and counts from both engines, for every key, with stops and EOS; packed
    mode attends to shared prefixes once per group (not in the K/V pool), exact mode copies them into each row."""
    import harness.backends.hf_decode as hd
    from harness.backends.hf import HFBackend

    lengths = []
    init = hd._KVPool.__init__

    def spy(self, kv_shape, rows, length, device):
        lengths.append(length)
        return init(self, kv_shape, rows, length, device)

    monkeypatch.setattr(hd._KVPool, "__init__", spy)
    spec = ServeSpec(TINY_CFG, {k: tiny_adapters[k] for k in ("a1", "a2")})
    fast = HFBackend(spec, batch_size=4, device="cpu", engine="prefix", pack=pack)
    plain = HFBackend(spec, batch_size=4, device="cpu", engine="generate")
    msgs = _workload()
    probe = plain.generate([Request("a1", msgs[0], GenParams(max_new_tokens=12))])[0].text
    stop_word = probe[len(probe) // 2:len(probe) // 2 + 2]
    assert stop_word.strip()
    nl = fast.tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    fast._eos_ids = plain._eos_ids = {*fast._eos_ids, nl}  # some rows end early: they must leave the batch
    reqs = [Request(k, m, GenParams(max_new_tokens=12)) for m in msgs for k in (BASE, "a1", "a2")]
    reqs += [Request("a1", m, GenParams(max_new_tokens=12, stop=(stop_word,))) for m in msgs]
    a, b = fast.generate(reqs), plain.generate(reqs)
    assert [(c.text, c.completion_tokens, c.finish_reason, c.prompt_tokens) for c in a] == \
           [(c.text, c.completion_tokens, c.finish_reason, c.prompt_tokens) for c in b]
    assert {c.finish_reason for c in a} == {"stop", "length"}  # both ways of ending were exercised
    assert any(c.finish_reason == "stop" and c.completion_tokens < 12 for c in a[-len(msgs):])
    # the few-shot rows really shared a prefix with each other and the zero-shot rows with theirs
    from harness.backends.hf_decode import common_prefix

    ids = [fast._prompt_ids(m) for m in msgs[7:11]]
    assert common_prefix(ids) > 16
    assert fast._decoding_model().shares_prefix is pack
    longest = max(len(i) for i in ids) + 2 * 12 + 1  # the pool's columns when prompts sit in it whole
    assert (max(lengths) < longest - 16) if pack else (max(lengths) == longest), (lengths, longest)


def test_prompt_over_context_is_an_error_completion(backend):
    """An over-long prompt is an error (not an empty answer to score); the other requests still run."""
    long = "word " * (backend.max_context + 10)
    out = backend.generate([_req(BASE, "hi", max_new_tokens=3), _req("a1", long), _req("a2", "hi", max_new_tokens=3)])
    assert out[1].finish_reason == "error" and out[1].text == "" and "context" in out[1].error
    assert out[0].error is None and out[0].completion_tokens == 3 and out[2].completion_tokens == 3


def test_json_end_and_json_stop(backend):
    from harness.backends.hf_decode import PrefixDecoder, Row, json_end

    assert json_end('{"a": 1} and more') == 8
    assert json_end('Sure: {"a": "}"}, ok') == len('Sure: {"a": "}"}')
    assert json_end('{"a": [1, {"b": 2}]') is None  # not closed yet
    assert json_end('```json\n{"a": 1}\n```\nbye') == len('```json\n{"a": 1}\n```')
    assert json_end('```json\n{"a": 1}\n') is None  # fence still open
    assert json_end("no json here") is None and json_end('{"s": "\\"}"}') == len('{"s": "\\"}"}')
    tok = backend.tokenizer
    dec = PrefixDecoder(None, tok, eos_ids={0}, pad_id=0, device="cpu", batch_size=1)
    ids = tok('{"a": 1} trailing words', add_special_tokens=False)["input_ids"]
    row = Row([1], "", params=GenParams(max_new_tokens=64, json_stop=True))
    done = []
    for n in range(1, len(ids) + 1):
        row.tokens = ids[:n]
        done.append(dec._finished(row, ids[n - 1]))
    first = done.index(True)
    assert tok.decode(ids[:first + 1]).startswith('{"a": 1}') and not any(done[:first])
    assert row.cut == 8 and row.finish == "stop"


def test_kv_budget_caps_the_batch_not_the_answers(tiny_adapters, monkeypatch):
    """Where K/V buffers for a whole batch would not fit the memory budget, fewer rows run at once; same outputs."""
    import harness.backends.hf_decode as hd
    from harness.backends.hf import HFBackend

    spec = ServeSpec(TINY_CFG, {k: tiny_adapters[k] for k in ("a1", "a2")})
    reqs = [_req(k, p, max_new_tokens=6) for p in PROMPTS for k in (BASE, "a1", "a2")]
    free = HFBackend(spec, batch_size=16, device="cpu").generate(reqs)
    seen = []
    orig = hd.PrefixDecoder._rows_that_fit

    def spy(self, rows):
        seen.append(orig(self, rows))
        return seen[-1]

    heads, dim, _, layers = 2, 32, None, 2  # the tiny model: 2 K/V heads of 32, 2 layers, fp32
    # bytes of a row of the shortest pool possible (one prompt token kept, room for two 6-token answers): at
    # most 3 rows fit, whether shared prefixes sit in the pool (exact mode) or not (packed mode)
    per_row = 2 * layers * heads * dim * 4 * (1 + 2 * 6 + 1)
    monkeypatch.setattr(hd, "default_kv_budget", lambda: 3 * per_row)
    monkeypatch.setattr(hd.PrefixDecoder, "_rows_that_fit", spy)
    capped = HFBackend(spec, batch_size=16, device="cpu").generate(reqs)
    assert [c.text for c in capped] == [c.text for c in free]
    assert seen and max(seen) < 16 and min(seen) >= 1


def test_prefill_chunks_one_key_each_and_little_padding():
    """Rows are prefilled in chunks of one model key, by length, split where padding would pass 20%."""
    from harness.backends.hf_decode import PrefixDecoder, Row

    d = PrefixDecoder(None, None, eos_ids={0}, pad_id=0, device="cpu", batch_size=64, kv_budget=0)
    rows = [Row([1] * n, "c", key=k) for k in ("b", "a") for n in [10] * 8 + [11] * 4 + [40] * 8]
    d._plen = {id(r): 0 for r in rows}
    chunks = d._prefill_chunks(rows)
    assert sorted(id(r) for c in chunks for r in c) == sorted(id(r) for r in rows)
    assert all(len({r.key for r in c}) == 1 for c in chunks)
    for c in chunks:
        lens = [len(r.prompt) for r in c]
        assert lens == sorted(lens)
        assert len(c) * max(lens) <= 1.2 * sum(lens) or len(c) <= 8
    assert [len(c) for c in chunks] == [12, 8, 12, 8]


def test_kv_pool_moves_rows_and_columns_without_losing_kv():
    """The pool's row moves, column shifts (both ways) and growth keep each live row's K/V as it was."""
    import torch

    from harness.backends.hf_decode import _KVPool

    pool = _KVPool((2, 4, torch.float32, 3), rows=4, length=10, device="cpu")
    pool.n = 6
    for buf in (*pool.k, *pool.v):
        buf[:, :, 2:6] = torch.randn(4, 2, 4, 4)
    before = [b.clone() for b in (*pool.k, *pool.v)]
    pool.shift(4, lo=2, delta=3)  # right: columns [2, 6) -> [5, 9)
    assert pool.n == 9 and all(torch.equal(b[:, :, 5:9], o[:, :, 2:6]) for b, o in zip((*pool.k, *pool.v), before))
    pool.shift(4, lo=5, delta=-5)  # left: the dead columns before 5 are dropped
    assert pool.n == 4 and all(torch.equal(b[:, :, 0:4], o[:, :, 2:6]) for b, o in zip((*pool.k, *pool.v), before))
    pool.move_rows([0], [3])  # row 3 takes finished row 0's place
    assert all(torch.equal(b[0, :, :4], o[3, :, 2:6]) for b, o in zip((*pool.k, *pool.v), before))
    pool.grow(20, rows=3)
    assert pool.length == 20 and pool.k[0].shape[2] == 20
    assert all(torch.equal(b[1:3, :, :4], o[1:3, :, 2:6]) for b, o in zip((*pool.k, *pool.v), before))
    with pytest.raises(RuntimeError, match="out of room"):  # a cache over the pool never silently copies
        pool.cache(0, 3, 0, 20).update(torch.zeros(3, 2, 1, 4), torch.zeros(3, 2, 1, 4), 0)


@pytest.mark.parametrize("pack", [True, False], ids=["packed-prefix-attended-once", "exact-prefix-copied"])
def test_kv_pool_refills_shift_and_compact_with_the_same_answers(tiny_adapters, monkeypatch, pack):
    """Continuous batching through one pool: longer prompts join shorter ones (live rows shift right), rows
    leave from the middle (the last row takes their place), dead columns are dropped: same tokens as generate."""
    import harness.backends.hf_decode as hd
    from harness.backends.hf import HFBackend

    calls = {"right": 0, "left": 0, "move": 0, "pools": 0, "grow": 0}
    shift, move, init, grow = hd._KVPool.shift, hd._KVPool.move_rows, hd._KVPool.__init__, hd._KVPool.grow

    def spy_shift(self, rows, lo, delta):
        calls["right" if delta > 0 else "left"] += 1
        return shift(self, rows, lo, delta)

    def spy_move(self, dst, src):
        calls["move"] += 1
        return move(self, dst, src)

    def spy_init(self, *a, **k):
        calls["pools"] += 1
        return init(self, *a, **k)

    def spy_grow(self, *a):
        calls["grow"] += 1
        return grow(self, *a)

    monkeypatch.setattr(hd._KVPool, "grow", spy_grow)
    monkeypatch.setattr(hd._KVPool, "shift", spy_shift)
    monkeypatch.setattr(hd._KVPool, "move_rows", spy_move)
    monkeypatch.setattr(hd._KVPool, "__init__", spy_init)
    spec = ServeSpec(TINY_CFG, {k: tiny_adapters[k] for k in ("a1", "a2")})
    fast = HFBackend(spec, batch_size=4, device="cpu", engine="prefix", pack=pack)
    plain = HFBackend(spec, batch_size=4, device="cpu", engine="generate")
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    reqs = [_req(k, " ".join(words[:n]) * (1 + n // 3), max_new_tokens=3 + (n * 7) % 11)
            for n in range(1, 11) for k in (BASE, "a1")]
    assert [c.text for c in fast.generate(reqs)] == [c.text for c in plain.generate(reqs)]
    assert calls["pools"] == 1 and calls["move"] > 0 and calls["right"] > 0, calls
    # long rows that end at once leave short ones far right in the pool: the next refill drops the dead columns;
    # a chunk with one row's long prefix and another's long suffix is longer than any prompt: the pool grows
    def long(key, n):  # a context of their own: the short rows share no prefix with them
        return Request(key, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " ".join(words) * 2}],
                       GenParams(max_new_tokens=n))

    reqs = [_req(BASE, "hi", max_new_tokens=12), _req("a1", "ok", max_new_tokens=12),
            long(BASE, 4), long("a1", 4), long(BASE, 6), long("a1", 6)]
    assert [c.text for c in fast.generate(reqs)] == [c.text for c in plain.generate(reqs)]
    assert calls["pools"] == 2, calls
    if not pack:  # prefixes in the pool make the long rows' columns: dropped later, and one chunk outgrows it
        assert calls["left"] > 0 and calls["grow"] > 0, calls
