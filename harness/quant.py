"""QLoRA: a frozen 4-bit NF4 base via bitsandbytes. Imported only when quant=nf4 is asked for.

Depends on nothing else in harness but io: harness.models imports it (never the other way round)."""
from __future__ import annotations

from harness.io import UserError


def _bnb():
    try:
        import bitsandbytes as bnb  # noqa: F401
    except ImportError:
        raise UserError("quant=nf4 needs bitsandbytes: pip install 'lora-harness[qlora]' (CUDA GPU, or a bitsandbytes build with CPU support)") from None
    return bnb


def nf4_config(device: str):
    import torch
    from transformers import BitsAndBytesConfig

    _bnb()
    compute = torch.bfloat16 if device != "cuda" or torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute)


def prepare_qlora_base(model, gradient_checkpointing: bool = False):
    """A 4-bit base loaded by harness.models.load_model(quant="nf4"), made ready for LoRA training."""
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    fix_cpu_linear4bit(model)
    return model


def fix_cpu_linear4bit(model) -> int:
    """bitsandbytes 0.50 on CPU computes wrong LoRA gradients after an eval-mode forward of a Linear4bit
    (its avx512-bf16 inference kernel has no autograd). Turning that kernel off on every Linear4bit
    keeps training correct; tests/test_qlora.py compares gradients with an fp32 reference."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return 0
    n = 0
    for mod in model.modules():
        if isinstance(mod, bnb.nn.Linear4bit):
            mod.support_avx512bf16_for_cpu = False
            n += 1
    return n
