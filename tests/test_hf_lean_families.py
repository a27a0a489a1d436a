"""The lean forward on every family it claims (harness.backends.hf_family): tiny random models (hidden 64,
2 layers) with random all-linear LoRA adapters (nonzero B): logits equal transformers + PEFT bit for bit
unpacked, within float round-off packed, and the same greedy generations; other families fall back, saying why."""
from __future__ import annotations

import pytest

from bench.family_models import TINY, build, targets
from harness.backends.base import BASE, GenParams, Request, ServeSpec
from tests.conftest import make_random_adapter
from tests.test_hf_lean import _close_and_same_argmax, _compare_forward

LEAN_FAMILIES = ("llama_bias", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3")


def _cfg(path) -> dict:
    return {"name": path.name, "source": "hf", "path": str(path), "max_length": 512, "dtype": "float32"}


@pytest.fixture(scope="module", params=LEAN_FAMILIES)
def family(request, tmp_path_factory):
    """(family, model config, {adapter name: dir}) for one family."""
    from harness.models import resolve_model

    root = tmp_path_factory.mktemp(request.param)
    cfg = _cfg(build(request.param, root / request.param, TINY))
    spec = resolve_model(cfg)
    adapters = {"r4": make_random_adapter(spec, root / "r4", r=4, seed=3, targets=targets(request.param)),
                "r8": make_random_adapter(spec, root / "r8", r=8, seed=4, targets=targets(request.param),
                                          use_rslora=True)}
    return request.param, cfg, adapters


def _backend(cfg, adapters, **kw):
    from harness.backends.hf import HFBackend

    return HFBackend(ServeSpec(cfg, adapters), batch_size=8, device="cpu", **kw)


def _mixes(b):
    i = b._internal
    return ([i[BASE], i["r4"], i["r8"], i["r4"], i[BASE]],  # rows of an adapter apart: gathered
            [i["r8"], i["r8"], i[BASE], i[BASE]])  # side by side: sliced


def test_family_runs_lean(family):
    name, cfg, adapters = family
    b = _backend(cfg, adapters)
    assert b._decoding_model() is not b.model, b.lean_reason
    assert b.lean_reason is None and b.engine_info()["lean"] is True


def test_family_logits_equal_transformers_peft_bitwise(family):
    import torch

    name, cfg, adapters = family
    b = _backend(cfg, adapters)
    for names in _mixes(b):
        pairs = _compare_forward(b, names)
        for ref, got in pairs:
            assert torch.equal(ref, got), (name, names, (ref - got).abs().max().item())
        assert not torch.equal(pairs[0][1][0], pairs[0][1][1])  # base and adapter rows differ: LoRA is applied


def test_family_packed_logits_within_round_off(family):
    name, cfg, adapters = family
    b = _backend(cfg, adapters)
    for names in _mixes(b):
        _close_and_same_argmax(_compare_forward(b, names, pack_rows=8))


def test_family_greedy_generations_equal_transformers(family):
    """The default engine (lean, packed, shared system prompts) answers as the transformers forward does."""
    name, cfg, adapters = family
    lean, plain = _backend(cfg, adapters), _backend(cfg, adapters, lean=False)
    reqs = [Request(k, [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": t}],
                    GenParams(max_new_tokens=8)) for t in ("a b c", "the quick brown fox", "1 2") for k in (BASE, "r4", "r8")]
    assert [c.text for c in lean.generate(reqs)] == [c.text for c in plain.generate(reqs)]
    assert lean.engine_info()["lean"] and not plain.engine_info()["lean"]


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """A tiny random GPT-2 (no lean forward) with SmolLM2's tokenizer."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from harness.models import resolve_tokenizer_source

    tok = AutoTokenizer.from_pretrained(str(resolve_tokenizer_source()))
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=len(tok), n_positions=512,
                                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    out = tmp_path_factory.mktemp("gpt2") / "gpt2"
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return out


def test_fallback_says_not_lean_and_why(gpt2_dir, capsys):
    """A family without a lean forward: the log line and engine_info (summary.json's `engines`) say so."""
    b = _backend(_cfg(gpt2_dir), {})
    b.generate([Request(BASE, [{"role": "user", "content": "hello"}], GenParams(max_new_tokens=3))])
    assert "GPT2LMHeadModel on the transformers forward (not lean: GPT2LMHeadModel has no lean forward" \
        in capsys.readouterr().err
    info = b.engine_info()
    assert info["lean"] is False and info["lean_reason"].startswith("GPT2LMHeadModel has no lean forward")
    assert info["pack"] is False


def test_routed_engines_list_what_generated(gpt2_dir, tmp_path):
    """evaluate()'s summary `engines`: each backend that generated, behind the cache and the lazy builder; one
    never built (every answer cached) is not listed."""
    from harness.backends.cache import CachedBackend
    from harness.eval_backends import LazyBackend, RoutedBackend

    lazy = LazyBackend("hf", lambda: _backend(_cfg(gpt2_dir), {}), {BASE: "id"})
    routed = RoutedBackend({BASE: (CachedBackend(lazy, tmp_path / "cache.jsonl"), BASE)})
    assert routed.engines() == [] and not lazy.built
    routed.generate([Request(BASE, [{"role": "user", "content": "hi"}], GenParams(max_new_tokens=2))])
    [e] = routed.engines()
    assert e["backend"] == "hf" and e["lean"] is False and "GPT2LMHeadModel" in e["lean_reason"]


def test_sliding_window_longer_than_prompts_stays_lean_else_falls_back(tmp_path, capsys):
    """Mistral's window (all layers): rows that fit it run lean; a row that could pass it runs on the transformers
    forward (the lean forward attends to every column), the others stay lean; the reason in the log and engine_info."""
    cfg = _cfg(build("mistral", tmp_path / "mistral", TINY))
    b = _backend(cfg, {})
    assert b._decoding_model().window == 4096
    req = [Request(BASE, [{"role": "user", "content": "one two three"}], GenParams(max_new_tokens=4))]
    b.generate(req)
    assert b.engine_info()["window_fallback"] is None
    short = Request(BASE, [{"role": "user", "content": "hi"}], GenParams(max_new_tokens=2))
    n = len(b._prompt_ids(short.message_dicts())) + 2
    b._decoding_model().window = n  # the short request fits exactly, the longer one passes: only it falls back
    used = []
    decode = b._decode
    b._decode = lambda model, *a: (used.append((model is b.model, len(a[2]))), decode(model, *a))[1]
    plain = _backend(cfg, {}, lean=False)
    reqs = [short, *req]
    assert [c.text for c in b.generate(reqs)] == [c.text for c in plain.generate(reqs)]
    assert used == [(False, 1), (True, 1)]
    assert f"1 of 2 requests: prompt plus new tokens pass the model's sliding window ({n})" \
        in b.engine_info()["window_fallback"]
    assert "sliding window" in capsys.readouterr().err


@pytest.mark.parametrize("engines, said", [
    ([{"backend": "hf", "engine": "prefix", "lean": False, "lean_reason": "GPT2LMHeadModel has no lean forward",
       "pack": False, "pack_reason": None, "window_fallback": None}],
     "served by `hf` on the transformers forward (not lean: GPT2LMHeadModel has no lean forward"),
    ([{"backend": "hf", "engine": "prefix", "lean": True, "lean_reason": None, "pack": True, "pack_reason": None,
       "window_fallback": None}], "served by `hf` on the lean forward (packed weights)"),
], ids=["fallback", "lean"])
def test_report_says_which_forward_served(tmp_path, engines, said):
    """The report reads summary.json's `engines`: the forward that generated, never the configured wish."""
    import json

    from fixtures_sweep import write_sweep
    from harness.analysis import Settings
    from harness.report import write_report

    sweep = write_sweep(tmp_path, "clear_win")
    path = sweep / "scores" / "summary.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "engines": engines}))
    md = write_report(sweep, Settings(n_boot=200), plots=False)["report_md"].read_text()
    assert said in md


def test_biases_on_some_of_a_fused_group_are_not_lean(tiny_spec):
    """q/k/v are one product: a bias on q alone has no fused form here, so the model keeps its own forward."""
    import torch

    from harness.backends.hf_family import unsupported
    from harness.models import load_model

    model = load_model(tiny_spec, device="cpu", dtype="float32")
    q = model.model.layers[1].self_attn.q_proj
    model.model.layers[1].self_attn.q_proj = torch.nn.Linear(q.in_features, q.out_features, bias=True)
    assert unsupported(model) == "biases on some of q_proj/k_proj/v_proj but not all"


def test_partial_rotary_phi3_bitwise(tmp_path):
    """A Phi-3 whose rotary table covers half of each head (partial_rotary_factor 0.5): the rest passes unrotated."""
    import torch

    from harness.models import resolve_model

    cfg = _cfg(build("phi3", tmp_path / "phi3-half", TINY, partial_rotary_factor=0.5))
    ad = make_random_adapter(resolve_model(cfg), tmp_path / "r4", r=4, seed=3, targets=targets("phi3"))
    b = _backend(cfg, {"r4": ad})
    cos, _ = b.model.get_base_model().model.rotary_emb(torch.zeros(1), torch.arange(3)[None])
    assert cos.shape[-1] == TINY["head_dim"] // 2
    for ref, got in _compare_forward(b, [b._internal[BASE], b._internal["r4"], b._internal["r4"]]):
        assert torch.equal(ref, got), (ref - got).abs().max().item()
