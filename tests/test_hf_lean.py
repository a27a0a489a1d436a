"""The lean Llama forward computes exactly what transformers + PEFT compute (bitwise), or is not used."""
from __future__ import annotations

import pytest

from harness.backends.base import BASE, GenParams, Request, ServeSpec
from harness.io import UserError
from tests.conftest import SMOL_CFG, TINY_CFG, make_random_adapter

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def all_linear_adapters(tiny_spec, tmp_path_factory):
    root = tmp_path_factory.mktemp("lean-adapters")
    return {"r4": make_random_adapter(tiny_spec, root / "r4", r=4, seed=3, targets=ALL_LINEAR),
            "r8": make_random_adapter(tiny_spec, root / "r8", r=8, seed=4, targets=ALL_LINEAR, use_rslora=True)}


def _backend(cfg, adapters, **kw):
    from harness.backends.hf import HFBackend

    return HFBackend(ServeSpec(cfg, adapters), batch_size=8, device="cpu", **kw)


def _compare_forward(backend, names, seed=0, pack_rows=0):
    """Prefill (left padding, rows of several adapters) then two decoding steps: logits of both forwards."""
    import torch
    from transformers import DynamicCache

    from harness.backends.hf_decode import _view_cache
    from harness.backends.hf_lean import LeanLlama

    lean, why = LeanLlama.build(backend.model, pack_rows=pack_rows)
    assert why is None and lean is not None
    assert lean.pack_reason is None or not pack_rows
    g = torch.Generator().manual_seed(seed)
    n, width = len(names), 23
    ids = torch.randint(0, backend.model.config.vocab_size, (n, width), generator=g)
    mask = torch.ones((n, width), dtype=torch.long)
    for i in range(0, n, 2):
        mask[i, : 3 + i] = 0  # left padding of different lengths
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    kw = {"adapter_names": names}
    caches = []
    with torch.inference_mode():
        ref = backend.model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=DynamicCache(),
                            use_cache=True, logits_to_keep=1, **kw)
        got = lean(input_ids=ids, attention_mask=mask, position_ids=pos, cache=DynamicCache(), logits_to_keep=1, **kw)
        pairs = [(ref.logits, got.logits)]
        for out in (ref, got):  # continue both from a cache with room, as the decoder does
            room = [(torch.cat([k, k.new_zeros((*k.shape[:2], 4, k.shape[3]))], 2),
                     torch.cat([v, v.new_zeros((*v.shape[:2], 4, v.shape[3]))], 2)) for k, v, *_ in out.cache]
            caches.append(_view_cache(room, filled=width))
        tok = ref.logits[:, -1].argmax(-1)[:, None]
        for step in range(2):
            mask = torch.cat([mask, mask.new_ones((n, 1))], 1)
            pos = pos[:, -1:] + 1
            a = backend.model(input_ids=tok, attention_mask=mask, position_ids=pos, cache=caches[0], use_cache=True, **kw)
            b = lean(input_ids=tok, attention_mask=mask, position_ids=pos, cache=caches[1], **kw)
            pairs.append((a.logits[:, -1:], b.logits[:, -1:]))
            tok = a.logits[:, -1].argmax(-1)[:, None]
    return pairs


def test_lean_logits_equal_transformers_peft_bitwise(tiny_adapters, all_linear_adapters):
    """Base and adapters mixed row by row (adapter rows apart and side by side), padded prefill and decoding."""
    import torch

    b = _backend(TINY_CFG, {"a1": tiny_adapters["a1"], **all_linear_adapters})
    i = b._internal
    for names in ([i[BASE], i["r4"], i["a1"], i["r4"], i[BASE], i["r8"]],  # r4 rows apart: gathered
                  [i["r8"], i["r8"], i["r8"], i[BASE], i[BASE]],  # side by side: a slice
                  [i["r4"]] * 4, [i[BASE]] * 3):
        for ref, got in _compare_forward(b, names):
            assert torch.equal(ref, got), (names, (ref - got).abs().max().item())


def test_lean_weights_are_not_a_second_copy(all_linear_adapters):
    """The fused q/k/v and gate/up weights share memory with the model's own parameters."""
    from harness.backends.hf_lean import LeanLlama

    b = _backend(TINY_CFG, all_linear_adapters)
    lean, _ = LeanLlama.build(b.model)
    layer = b.model.get_base_model().model.layers[1]
    storage = lean.layers[1].qkv.untyped_storage().data_ptr()
    for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
        assert proj.base_layer.weight.untyped_storage().data_ptr() == storage
    assert layer.mlp.up_proj.base_layer.weight.untyped_storage().data_ptr() == \
        lean.layers[1].gate_up.untyped_storage().data_ptr()


def test_lean_adapters_really_change_the_output(all_linear_adapters):
    """Not a vacuous equality: the MLP-only LoRA part moves the logits."""
    import torch

    b = _backend(TINY_CFG, all_linear_adapters)
    pairs = _compare_forward(b, [b._internal[BASE], b._internal["r4"]])
    assert not torch.equal(pairs[0][1][0], pairs[0][1][1])


def test_lean_adapter_on_top_layers_only(tiny_spec, tmp_path):
    """An adapter on the last layer only (lora.top_layers) is applied there, not mistaken for the base model."""
    import torch

    top = make_random_adapter(tiny_spec, tmp_path / "top", seed=7, targets=ALL_LINEAR, layers_to_transform=[1])
    b = _backend(TINY_CFG, {"top": top})
    i = b._internal
    pairs = _compare_forward(b, [i[BASE], i["top"], i["top"]])
    for ref, got in pairs:
        assert torch.equal(ref, got), (ref - got).abs().max().item()
    assert not torch.equal(pairs[0][1][0], pairs[0][1][1])
    _close_and_same_argmax(_compare_forward(b, [i["top"], i[BASE], i["top"]], pack_rows=4))  # packed: no LoRA on layer 0


@pytest.mark.slow
def test_lean_logits_equal_transformers_peft_on_smollm2(smol_spec, tmp_path):
    """The real model's shapes (GQA 9/3 heads, 30 layers): bitwise equal for an all-linear r16 adapter."""
    import torch

    ad = make_random_adapter(smol_spec, tmp_path / "r16", r=16, seed=5, scale=0.02, targets=ALL_LINEAR)
    b = _backend(SMOL_CFG, {"r16": ad})
    i = b._internal
    for ref, got in _compare_forward(b, [i[BASE], i["r16"], i["r16"], i[BASE]]):
        assert torch.equal(ref, got), (ref - got).abs().max().item()


def _close_and_same_argmax(pairs):
    import torch

    for ref, got in pairs:
        scale = ref.abs().max().item()
        assert torch.allclose(ref, got, rtol=0, atol=1e-4 * scale), (ref - got).abs().max().item()
        assert torch.equal(ref.argmax(-1), got.argmax(-1))


def test_packed_weights_change_only_the_last_bits(tiny_adapters, all_linear_adapters):
    """oneDNN-packed base weights and the fused LoRA calls: logits within float round-off of transformers + PEFT,
    same greedy tokens."""
    b = _backend(TINY_CFG, {"a1": tiny_adapters["a1"], **all_linear_adapters})
    i = b._internal
    for names in ([i[BASE], i["r4"], i["a1"], i["r4"], i[BASE], i["r8"]],  # rows gathered (r4) and sliced
                  [i["r8"]] * 4):  # the whole batch one adapter
        _close_and_same_argmax(_compare_forward(b, names, pack_rows=8))


@pytest.mark.slow
def test_packed_weights_on_smollm2(smol_spec, tmp_path):
    ad = make_random_adapter(smol_spec, tmp_path / "r16", r=16, seed=5, scale=0.02, targets=ALL_LINEAR)
    b = _backend(SMOL_CFG, {"r16": ad})
    i = b._internal
    _close_and_same_argmax(_compare_forward(b, [i[BASE], i["r16"], i["r16"], i[BASE]], pack_rows=64))


def test_pack_option_off_or_short_of_memory_keeps_plain_weights(tiny_adapters, monkeypatch):
    """pack=false, or a packed copy that would not fit an eighth of free memory: plain weights, reason recorded."""
    import os

    from harness.backends.hf import HFBackend

    adapters = {"a1": tiny_adapters["a1"]}
    reqs = [Request(k, [{"role": "user", "content": t}], GenParams(max_new_tokens=8))
            for t in ("a b c", "the quick brown fox") for k in (BASE, "a1")]
    on, off = _backend(TINY_CFG, adapters), _backend(TINY_CFG, adapters, pack=False)
    assert [c.text for c in on.generate(reqs)] == [c.text for c in off.generate(reqs)]
    assert on.pack_reason is None and on._decoding_model().head_packed is not None
    assert off.pack_reason == "backend.pack=false" and off._decoding_model().head_packed is None
    sysconf = os.sysconf
    monkeypatch.setattr(os, "sysconf", lambda k: 4 if k == "SC_AVPHYS_PAGES" else sysconf(k))
    tight = _backend(TINY_CFG, adapters)
    tight.generate(reqs[:1])
    assert "eighth of free memory" in tight.pack_reason and tight._decoding_model().head_packed is None
    with pytest.raises(UserError, match="backend.pack"):
        HFBackend.check_options({"pack": "yes"})


def test_unsupported_adapters_keep_the_transformers_forward(tiny_spec, tmp_path):
    """LoRA on the LM head is not in the lean forward: the backend says why and answers as transformers does."""
    head = make_random_adapter(tiny_spec, tmp_path / "head", seed=6, targets=("q_proj", "lm_head"))
    b = _backend(TINY_CFG, {"head": head})
    reqs = [Request(k, [{"role": "user", "content": t}], GenParams(max_new_tokens=6))
            for k in (BASE, "head") for t in ("hello there", "one two three four")]
    fast = [c.text for c in b.generate(reqs)]
    assert b._decoding_model() is b.model and "lm_head" in b.lean_reason
    plain = _backend(TINY_CFG, {"head": head}, engine="generate")
    assert fast == [c.text for c in plain.generate(reqs)]


def test_quantized_or_custom_projection_is_not_lean(tiny_spec):
    """A projection that is not a plain float Linear (e.g. bitsandbytes 4-bit) must not be read as one."""
    import torch

    from harness.backends.hf_lean import unsupported
    from harness.models import load_model

    class Linear4bit(torch.nn.Linear):  # stands in for bitsandbytes' subclass (CUDA only)
        pass

    model = load_model(tiny_spec, device="cpu", dtype="float32")
    assert unsupported(model) is None
    old = model.model.layers[0].mlp.up_proj
    model.model.layers[0].mlp.up_proj = Linear4bit(old.in_features, old.out_features, bias=False)
    assert unsupported(model).startswith("Linear4bit projection")


def test_non_llama_model_is_not_lean(tiny_spec):
    from transformers import GPT2Config, GPT2LMHeadModel

    from harness.backends.hf_lean import unsupported

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100))
    assert unsupported(model).startswith("GPT2LMHeadModel has no lean forward")


def test_lean_off_gives_the_same_outputs(tiny_adapters, all_linear_adapters):
    adapters = {"a1": tiny_adapters["a1"], **all_linear_adapters}
    on, off = _backend(TINY_CFG, adapters), _backend(TINY_CFG, adapters, lean=False)
    reqs = [Request(k, [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": t}],
                    GenParams(max_new_tokens=8)) for t in ("a b c", "the quick brown fox", "1 2") for k in on.model_keys()]
    assert [c.text for c in on.generate(reqs)] == [c.text for c in off.generate(reqs)]
    assert on._decoding_model() is not on.model and off._decoding_model() is off.model
    assert off.lean_reason == "backend.lean=false"


def test_lean_option_is_checked():
    from harness.backends.hf import HFBackend

    with pytest.raises(UserError, match="backend.lean"):
        HFBackend.check_options({"lean": "yes"})


@pytest.mark.parametrize("short", [128, 0], ids=["decode-batched-products", "decode-flash-kernel"])
def test_shared_prefix_attended_once_equals_the_prefix_in_each_row(tiny_adapters, short, monkeypatch):
    """Packed mode's cascade attention: rows whose shared prefix is passed once per group (not in their cache)
    get the logits of the same rows run whole, one at a time: prefill (left padding, groups sliced and
    gathered, a row with no prefix) then decoding steps (own columns through either attention kernel)."""
    import torch
    from transformers import DynamicCache

    import harness.backends.hf_lean as hl
    from harness.backends.hf_decode import _view_cache
    from harness.backends.hf_lean import LeanLlama

    monkeypatch.setattr(hl, "SHORT_COLUMNS", short)

    b = _backend(TINY_CFG, {"a1": tiny_adapters["a1"]})
    lean, _ = LeanLlama.build(b.model, pack_rows=8)
    assert lean.pack_reason is None and lean.shares_prefix
    base, a1 = b._internal[BASE], b._internal["a1"]
    g = torch.Generator().manual_seed(7)
    vocab = b.model.config.vocab_size
    prefixes = {"g0": (base, torch.randint(0, vocab, (9,), generator=g)),
                "g1": (a1, torch.randint(0, vocab, (6,), generator=g))}
    rows = [("g0", 4), ("g0", 5), ("g1", 6), (None, 3), ("g1", 2)]  # g0: a slice of the batch; g1: rows 2 and 4
    names = [prefixes[grp][0] if grp else a1 for grp, _ in rows]
    suffixes = [torch.randint(0, vocab, (n,), generator=g) for _, n in rows]
    with torch.inference_mode():
        kv = {}
        for grp, (name, ids) in prefixes.items():
            out = lean(input_ids=ids[None], cache=DynamicCache(), adapter_names=[name])
            kv[grp] = [(k, v) for k, v, *_ in out.cache]
        prefix = [(slice(0, 2), kv["g0"]), (torch.tensor([2, 4]), kv["g1"])]
        n, width, steps = len(rows), max(len(x) for x in suffixes), 3
        ids = torch.zeros((n, width), dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, x in enumerate(suffixes):
            ids[i, width - len(x):], mask[i, width - len(x):] = x, 1
        plen = torch.tensor([len(prefixes[grp][1]) if grp else 0 for grp, _ in rows])[:, None]
        pos = plen + (mask.cumsum(1) - 1).clamp(min=0)
        heads, dim = lean.n_kv, lean.head_dim
        bufs = [(torch.zeros((n, heads, width + steps, dim)), torch.zeros((n, heads, width + steps, dim)))
                for _ in lean.layers]
        cache = _view_cache(bufs, filled=0)
        got = [lean(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, prefix=prefix,
                    adapter_names=names).logits[:, -1]]
        tokens = [got[0].argmax(-1)]
        for _ in range(steps - 1):
            mask = torch.cat([mask, mask.new_ones((n, 1))], 1)
            pos = pos[:, -1:] + 1
            got.append(lean(input_ids=tokens[-1][:, None], attention_mask=mask, position_ids=pos, cache=cache,
                            prefix=prefix, adapter_names=names).logits[:, -1])
            tokens.append(got[-1].argmax(-1))
        for i, (grp, _) in enumerate(rows):  # each row alone, its prefix in its own cache
            whole = torch.cat([prefixes[grp][1], suffixes[i]]) if grp else suffixes[i]
            c = DynamicCache()
            ref = [lean(input_ids=whole[None], cache=c, adapter_names=[names[i]]).logits[0, -1]]
            for t in tokens[:-1]:
                ref.append(lean(input_ids=t[i].view(1, 1), cache=c, adapter_names=[names[i]]).logits[0, -1])
            for step, r in enumerate(ref):
                scale = r.abs().max().item()
                assert torch.allclose(got[step][i], r, rtol=0, atol=1e-4 * scale), (i, step)
                assert got[step][i].argmax() == r.argmax(), (i, step)
            if i == 0:  # the same row alone, unpadded and without a mask (causal attention over its own columns)
                alone = [(torch.zeros((1, heads, width, dim)), torch.zeros((1, heads, width, dim))) for _ in lean.layers]
                out = lean(input_ids=suffixes[0][None], position_ids=plen[:1] + torch.arange(len(suffixes[0]))[None],
                           cache=_view_cache(alone, filled=0), prefix=[(slice(0, 1), kv["g0"])], adapter_names=[names[0]])
                assert torch.allclose(out.logits[0, -1], ref[0], rtol=0, atol=1e-4 * ref[0].abs().max().item())
