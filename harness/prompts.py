"""The one way a prompt is formatted, used by training and by every inference backend.

A task config gives a system prompt and a prompt template ("{prompt}" is the user's text);
messages are then rendered by the model's own chat template. Training tokenizes the exact
string inference would send, plus the target, so the two can never drift apart.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from harness import control_tokens
from harness.example import Example


def build_messages(
    example: Example,
    *,
    system_prompt: str | None = None,
    prompt_template: str = "{prompt}",
    few_shot: Sequence[Example] = (),
) -> list[dict]:
    """Chat messages for `example` without its target: system, few-shot turns, then the user turn(s).

    The example's own system message wins over the task's; few-shot examples become prior
    user/assistant turns, formatted with the same template.
    """
    msgs = example.prompt_messages
    system = example.system or system_prompt
    body = [m for m in msgs if m["role"] != "system"]
    out: list[dict] = []
    if system:
        out.append({"role": "system", "content": system})
    for shot in few_shot:
        for m in shot.prompt_messages:
            if m["role"] == "user":
                out.append({"role": "user", "content": apply_template(prompt_template, m["content"])})
            elif m["role"] == "assistant":
                out.append(dict(m))
        out.append({"role": "assistant", "content": shot.target})
    for i, m in enumerate(body):
        if m["role"] == "user":
            out.append({"role": "user", "content": apply_template(prompt_template, m["content"])})
        else:
            out.append(dict(m))
    return out


def apply_template(template: str, text: str) -> str:
    # str.replace, not str.format: user text and templates may contain literal braces (JSON!).
    return template.replace("{prompt}", text) if template else text


def render_prompt(tokenizer: Any, messages: list[dict]) -> str:
    """The exact prompt string sent to the model (chat template + generation prompt)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # Plain fallback for base models without a chat template.
    parts = [f"{m['role'].upper()}: {m['content']}" for m in messages]
    return "\n\n".join(parts) + "\n\nASSISTANT: "


def end_of_turn(tokenizer: Any) -> str:
    """What the model emits after an answer (e.g. <|im_end|>); appended to training targets."""
    return tokenizer.eos_token or ""


def tokenize_for_training(
    tokenizer: Any,
    example: Example,
    *,
    system_prompt: str | None = None,
    prompt_template: str = "{prompt}",
    max_length: int = 1024,
    completion_only: bool = True,
) -> dict[str, list[int]]:
    """input_ids and labels for one example; prompt tokens get label -100 when `completion_only`.

    Prompt and completion are tokenized separately and concatenated so the boundary is exact.
    Over-long examples are truncated from the right (the data doctor warns about them first).
    """
    messages = build_messages(example, system_prompt=system_prompt, prompt_template=prompt_template)
    prompt = render_prompt(tokenizer, messages)
    completion = example.target + end_of_turn(tokenizer)
    p_ids = control_tokens.encode(tokenizer, prompt, control_tokens.message_texts(messages))
    c_ids = control_tokens.encode(tokenizer, completion, [example.target])
    ids = (p_ids + c_ids)[:max_length]
    labels = ([-100] * len(p_ids) if completion_only else list(p_ids)) + list(c_ids)
    return {"input_ids": ids, "labels": labels[:max_length]}


def count_tokens(tokenizer: Any, examples: Iterable[Example], **kw: Any) -> list[int]:
    return [len(tokenize_for_training(tokenizer, ex, **kw)["input_ids"]) for ex in examples]
