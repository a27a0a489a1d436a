"""Adapter canary: fail loudly when an adapter does not change the model.

An adapter whose outputs equal the base model's is almost always a bug: all-zero LoRA weights
(B is zero-initialised, so an adapter that never trained is a no-op), target modules that match
nothing in this base, or a serving backend that silently ignored the adapter. Eval numbers from
such a run would be the base model's numbers under the adapter's name.

Checks per adapter, on a few prompts (greedy):
- the generated text, and the per-token log-probabilities when the backend returns them;
- the next-token logits after each prompt, when the backend has `logits(model_key, messages)`
  (the hf backend does): this catches adapters too weak to flip a greedy token.
An adapter passes if anything differs from the base on any prompt.

An adapter that *did not learn* is a different case, known before serving anything: its run
recorded `improved: false` (validation loss never went below its first value, so the saved best
adapter is the untrained one) or its LoRA B matrices are all zero (B is zero-initialised: the
adapter is exactly the base). adapter_not_learned() names the reason; the evaluation path reports
such adapters as "did not learn" and scores the others, instead of aborting on them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from harness.backends.base import BASE, GenParams, Request
from harness.io import UserError

DEFAULT_PROMPTS = (
    "Hello! Who are you?",
    "Write one sentence about the sea.",
    "What is 17 + 25? Answer with the number.",
    "List three colours.",
    "Translate 'good morning' into French.",
)
LOGIT_ATOL = 1e-5
LOGPROB_ATOL = 1e-4


def adapter_not_learned(adapter_dir: Path) -> str | None:
    """Why this adapter is the base model unchanged (its run did not learn), or None when it may differ.

    Looks at the run's metrics.json beside the adapter (`improved: false`) and at the LoRA weights
    (every lora_B tensor zero). An adapter with no LoRA tensors at all is not "did not learn": that
    is a wrong target-module setting, which the canary reports as an error.
    """
    adapter_dir = Path(adapter_dir)
    metrics = adapter_dir.parent / "metrics.json"
    if metrics.is_file():
        try:
            improved = json.loads(metrics.read_text(encoding="utf-8")).get("improved")
        except (OSError, ValueError, AttributeError):
            improved = None
        if improved is False:
            return "validation loss never went below its first value (metrics.json improved=false)"
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        return None
    from safetensors import safe_open

    seen_b = False
    with safe_open(str(weights), framework="pt") as f:
        for name in f.keys():
            if "lora_B" in name:
                seen_b = True
                if bool(f.get_tensor(name).any()):
                    return None
    return "every LoRA B weight is zero: the adapter equals the base model" if seen_b else None


def _messages(p: Any) -> list[dict]:
    if isinstance(p, str):
        return [{"role": "user", "content": p}]
    return [m if isinstance(m, dict) else {"role": m[0], "content": m[1]} for m in p]


def _logprobs_differ(a, b) -> bool:
    if not a or not b:
        return False
    for x, y in zip(a, b):
        if x.get("token") != y.get("token") or abs(float(x["logprob"]) - float(y["logprob"])) > LOGPROB_ATOL:
            return True
    return False


def check_adapters_applied(
    backend: Any,
    adapter_keys: Sequence[str],
    *,
    prompts: Sequence[Any] | None = None,
    n: int = 3,
    max_new_tokens: int = 8,
) -> None:
    """Raise UserError naming every adapter whose outputs (and logits, where available) equal the base's.

    `prompts` are strings (one user turn) or message lists; the first `n` are used.
    """
    keys = [k for k in adapter_keys if k != BASE]
    if not keys:
        return
    msgs = [_messages(p) for p in list(prompts or DEFAULT_PROMPTS)[: max(1, n)]]
    params = GenParams(max_new_tokens=max_new_tokens, temperature=0.0, logprobs=1)
    reqs = [Request(k, m, params) for k in [BASE, *keys] for m in msgs]
    outs = backend.generate(reqs)
    by_key = {k: outs[i * len(msgs):(i + 1) * len(msgs)] for i, k in enumerate([BASE, *keys])}
    logits_fn = getattr(backend, "logits", None)
    base_logits = [logits_fn(BASE, m) for m in msgs] if callable(logits_fn) else None
    dead = []
    for k in keys:
        applied = any(a.text != b.text or _logprobs_differ(a.logprobs, b.logprobs)
                      for a, b in zip(by_key[k], by_key[BASE]))
        if not applied and base_logits is not None:
            applied = any(_max_abs_diff(logits_fn(k, m), bl) > LOGIT_ATOL for m, bl in zip(msgs, base_logits))
        if not applied:
            dead.append(k)
    if dead:
        what = "outputs/logits" if base_logits is not None else "outputs"
        names = ", ".join(repr(k) for k in dead)
        subject = f"adapter {names} is" if len(dead) == 1 else f"adapters {names} are"
        raise UserError(
            f"{subject} not applied: {'its' if len(dead) == 1 else 'their'} {what} equal the base model's on "
            f"{len(msgs)} prompts (all-zero LoRA weights, wrong target modules, or a backend that ignored the adapter)"
        )


def _max_abs_diff(a, b) -> float:
    try:
        return float((a - b).abs().max())
    except AttributeError:
        return max((abs(float(x) - float(y)) for x, y in zip(a, b)), default=0.0)
