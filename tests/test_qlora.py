"""QLoRA gradients must match an fp32 reference on the same dequantized weights, also after an eval pass.

bitsandbytes 0.50 on CPU routes eval-mode Linear4bit forwards through an avx512-bf16 kernel with no
autograd; afterwards LoRA gradients are silently wrong. harness.quant.fix_cpu_linear4bit turns that off.
"""
from __future__ import annotations

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes", reason="bitsandbytes not installed (pip install 'lora-harness[qlora]')")


def _lora_grads(model, ids):
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    return {n: (p.grad.detach().float().clone() if p.grad is not None else torch.zeros(p.shape))
            for n, p in model.named_parameters() if p.requires_grad and "lora_" in n}


def _build(tiny_spec, fix: bool):
    from peft import LoraConfig, get_peft_model

    from harness.models import load_model
    from harness.quant import fix_cpu_linear4bit, prepare_qlora_base

    try:
        q = prepare_qlora_base(load_model(tiny_spec, device="cpu", quant="nf4"))
    except Exception as exc:  # pragma: no cover - depends on the bitsandbytes build
        pytest.skip(f"this bitsandbytes build cannot load 4-bit on CPU: {exc}")
    lcfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "up_proj"])
    q = get_peft_model(q, lcfg)
    if fix:
        assert fix_cpu_linear4bit(q) > 0
    else:
        for m in q.modules():
            if isinstance(m, bnb.nn.Linear4bit):
                m.support_avx512bf16_for_cpu = True
    # fp32 reference with the *dequantized* 4-bit weights, same LoRA weights
    ref = get_peft_model(load_model(tiny_spec, device="cpu", dtype="float32"), lcfg)
    ref_mods = dict(ref.named_modules())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, mod in q.named_modules():
            if isinstance(mod, bnb.nn.Linear4bit):
                w = bnb.functional.dequantize_4bit(mod.weight.data, mod.weight.quant_state).float()
                ref_mods[name].weight.copy_(w)
        ref_params = dict(ref.named_parameters())
        for n, p in q.named_parameters():
            if "lora_" in n:
                val = torch.randn(p.shape, generator=g) * 0.05
                p.copy_(val.to(p.dtype))
                ref_params[n].copy_(val)
            elif not isinstance(p, bnb.nn.Params4bit) and n in ref_params and p.shape == ref_params[n].shape:
                ref_params[n].copy_(p.float())
    return q, ref


def _compare(q, ref, ids):
    q.eval()
    with torch.no_grad():
        q(input_ids=ids)  # the eval pass that used to poison later gradients
    q.train()
    ref.train()
    gq, gr = _lora_grads(q, ids), _lora_grads(ref, ids)
    assert gq.keys() == gr.keys() and gq
    worst = 1.0
    for n in gr:
        cos = torch.nn.functional.cosine_similarity(gq[n].flatten(), gr[n].flatten(), dim=0).item()
        worst = min(worst, cos)
    return worst


def test_qlora_gradients_match_fp32_reference_after_eval_pass(tiny_spec):
    torch.manual_seed(0)
    ids = torch.randint(0, 49152, (2, 12))
    q, ref = _build(tiny_spec, fix=True)
    worst = _compare(q, ref, ids)
    # bf16 compute vs fp32: small rounding differences only
    assert worst > 0.98, f"QLoRA gradients diverge from the fp32 reference (worst cosine {worst:.3f})"


def test_trainer_applies_the_fix_to_every_linear4bit(tiny_spec, tmp_path):
    from harness.train import build_peft_model

    cfg = {"quant": "nf4", "train": {}, "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}}
    model = build_peft_model(cfg, tiny_spec, "cpu")
    mods = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert mods and all(m.support_avx512bf16_for_cpu is False for m in mods)


def test_missing_device_support_is_a_clear_message(monkeypatch, tiny_spec):
    from harness.io import UserError

    def boom(*a, **k):
        raise RuntimeError("no kernel for this device")

    from harness.models import load_model

    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", boom)
    with pytest.raises(UserError, match="not supported on device"):
        load_model(tiny_spec, device="cpu", quant="nf4")


def _cpu_has_bf16_kernel() -> bool:
    from harness.train import cpu_has_native_bf16

    return cpu_has_native_bf16()


@pytest.mark.skipif(not _cpu_has_bf16_kernel(), reason="the faulty kernel is only used on CPUs with avx512_bf16/amx")
def test_the_check_detects_the_upstream_bug_without_the_fix(tiny_spec):
    """Proves the gradient check above can fail: with the bf16 CPU kernel left on, gradients are lost."""
    torch.manual_seed(0)
    ids = torch.randint(0, 49152, (2, 12))
    q, ref = _build(tiny_spec, fix=False)
    worst = _compare(q, ref, ids)
    assert worst < 0.5, (f"bitsandbytes {bnb.__version__} no longer loses gradients after an eval pass "
                         f"(worst cosine {worst:.3f}); fix_cpu_linear4bit may no longer be needed")
