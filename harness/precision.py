"""Training precision: what a step computes in (fp32, or bf16 matmuls on frozen bf16 weights) and `auto`'s
choice of it from the hardware. Kept apart from the training loop so the loop reads as the recipe."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.io import UserError


@dataclass(frozen=True)
class Precision:
    """How the step computes: `autocast` dtype (None = fp32) and the dtype of the decoder's frozen linear weights."""

    name: str
    autocast: str | None
    base_dtype: str


PRECISIONS = {
    "fp32": Precision("fp32", None, "float32"),
    # bf16 matmuls on frozen bf16 weights (half the memory, no per-step casts); the residual stream, embeddings,
    # LM head and loss, LoRA weights, gradients and optimizer stay fp32
    "bf16": Precision("bf16", "bfloat16", "bfloat16"),
}


def cpu_has_native_bf16() -> bool:
    """bf16 matmuls in hardware (AVX512-BF16 or AMX) and not masked off by ATEN_CPU_CAPABILITY/ONEDNN_MAX_CPU_ISA."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    if not flags & {"avx512_bf16", "amx_bf16"}:
        return False
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if isa and ("AVX512" not in isa and "AMX" not in isa and isa != "ALL" and isa != "DEFAULT"):
        return False
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
    return aten in ("", "default", "avx512")


def resolve_precision(name: str, device: str) -> Precision:
    """train.precision: fp32 | bf16 | auto (bf16 where the hardware has it natively, else fp32)."""
    if name == "auto":
        import torch

        if device == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        else:
            name = "bf16" if cpu_has_native_bf16() else "fp32"
    if name not in PRECISIONS:
        raise UserError(f"train.precision: unknown value {name!r} (auto, {', '.join(PRECISIONS)})")
    return PRECISIONS[name]
