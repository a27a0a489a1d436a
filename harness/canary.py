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
"""
from __future__ import annotations

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
