"""An Ollama Modelfile for an exported GGUF: FROM, a TEMPLATE that renders exactly our prompts, stop tokens, SYSTEM.

The TEMPLATE is derived from the model's own chat template through harness.prompts.render_prompt (the
one prompt formatter), not hand-written per model family: messages with sentinel contents are rendered
and the text around each sentinel gives each role's prefix, the shared end-of-turn suffix, the
generation prompt, and what the template adds when there is no system message (SmolLM2 injects a
default system turn). Templates of that shape (ChatML, Llama 3, ...) are supported; anything else is
refused with a reason rather than guessed. Go template constructs used (and only these):
`{{ if .System }}`, `{{ else }}`, `{{ end }}`, `{{ range .Messages }}`, `{{ if eq .Role "user" }}`,
`{{ .System }}`, `{{ .Content }}`. System messages are rendered from .System only (Ollama also lists
them in .Messages, which the loop skips).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.io import UserError
from harness.prompts import end_of_turn, render_chat, render_prompt

_S, _U1, _A1, _U2 = "\x02SYS\x03", "\x02USER1\x03", "\x02ASSISTANT1\x03", "\x02USER2\x03"


@dataclass(frozen=True)
class ChatWrappers:
    """How the chat template wraps each turn: prefix + content + suffix; `gen` opens the answer."""

    head: str  # text before everything (a BOS the runtime adds itself)
    system_prefix: str
    user_prefix: str
    assistant_prefix: str
    suffix: str
    gen: str
    no_system: str  # what the template puts first when there is no system message ("" for most)


def _between(text: str, a: str, b: str) -> str:
    i, j = text.index(a) + len(a), text.index(b)
    if j < i:
        raise ValueError("sentinels out of order")
    return text[i:j]


def _adds_bos(tokenizer: Any) -> bool:
    """True when tokenizing adds the BOS itself (llama.cpp does the same from the GGUF's add_bos_token): then a
    BOS at the start of the rendered prompt is not part of the TEMPLATE. SmolLM2's bos is <|im_start|> and is
    not added, so there it stays template text."""
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == getattr(tokenizer, "bos_token_id", None)


def chat_wrappers(tokenizer: Any) -> ChatWrappers:
    """Derive the turn wrappers from render_prompt; UserError when the template has another shape."""
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("the tokenizer has no chat template: no Ollama TEMPLATE can reproduce its prompts")
    try:
        full = render_prompt(tokenizer, [{"role": "system", "content": _S}, {"role": "user", "content": _U1},
                                         {"role": "assistant", "content": _A1}, {"role": "user", "content": _U2}])
        without_gen = render_chat(tokenizer, [{"role": "system", "content": _S}, {"role": "user", "content": _U1},
                                              {"role": "assistant", "content": _A1}, {"role": "user", "content": _U2}],
                                  add_generation_prompt=False)
        if not full.startswith(without_gen):
            raise ValueError("the generation prompt is not appended at the end")
        gen = full[len(without_gen):]
        x1, x2, x3 = _between(full, _S, _U1), _between(full, _U1, _A1), _between(full, _A1, _U2)
        x4 = full[full.index(_U2) + len(_U2):]
        if not gen or not x4.endswith(gen):
            raise ValueError("no generation prompt after the last user turn")
        suffix = x4[: len(x4) - len(gen)]
        if not x2.startswith(suffix) or not x1.startswith(suffix):
            raise ValueError("turns do not share one end-of-turn suffix")
        assistant_prefix, user_prefix = x2[len(suffix):], x1[len(suffix):]
        if x3 != suffix + user_prefix:
            raise ValueError("the assistant turn ends differently from the others")
        p0 = full[: full.index(_S)]
        bos = getattr(tokenizer, "bos_token", None) or ""
        head = bos if bos and p0.startswith(bos) and _adds_bos(tokenizer) else ""
        system_prefix = p0[len(head):]
        alone = render_prompt(tokenizer, [{"role": "user", "content": _U1}])
        expected_tail = user_prefix + _U1 + suffix + gen
        if not alone.endswith(expected_tail) or not alone.startswith(head):
            raise ValueError("a conversation without a system message renders differently")
        no_system = alone[len(head): len(alone) - len(expected_tail)]
    except (ValueError, TypeError) as exc:
        raise UserError(f"the model's chat template cannot be expressed as an Ollama TEMPLATE ({exc})") from None
    parts = (system_prefix, user_prefix, assistant_prefix, suffix, gen, no_system)
    if any('"""' in p or "{{" in p for p in parts):
        raise UserError('the chat template contains """ or {{, which an Ollama TEMPLATE cannot hold literally')
    return ChatWrappers(head, system_prefix, user_prefix, assistant_prefix, suffix, gen, no_system)


def go_template(w: ChatWrappers) -> str:
    """The Ollama TEMPLATE text for these wrappers (without the head: llama.cpp adds the BOS itself)."""
    return (f"{{{{ if .System }}}}{w.system_prefix}{{{{ .System }}}}{w.suffix}{{{{ else }}}}{w.no_system}{{{{ end }}}}"
            f"{{{{ range .Messages }}}}"
            f'{{{{ if eq .Role "user" }}}}{w.user_prefix}{{{{ .Content }}}}{w.suffix}{{{{ end }}}}'
            f'{{{{ if eq .Role "assistant" }}}}{w.assistant_prefix}{{{{ .Content }}}}{w.suffix}{{{{ end }}}}'
            f"{{{{ end }}}}{w.gen}")


def stop_tokens(tokenizer: Any, w: ChatWrappers) -> list[str]:
    out = []
    for s in (w.suffix.strip(), end_of_turn(tokenizer)):
        if s and s not in out:
            out.append(s)
    return out


def modelfile(gguf_name: str, tokenizer: Any, *, system_prompt: str | None, temperature: float = 0.0) -> str:
    """The Modelfile text: FROM ./<gguf>, TEMPLATE, PARAMETER stop/temperature, SYSTEM (the task's prompt)."""
    w = chat_wrappers(tokenizer)
    if system_prompt and '"""' in system_prompt:
        raise UserError('the task\'s system prompt contains """, which a Modelfile SYSTEM cannot hold')
    lines = [f"# Ollama Modelfile written by lora-harness: `ollama create NAME -f Modelfile` in this folder",
             f"FROM ./{gguf_name}", f'TEMPLATE """{go_template(w)}"""']
    lines += [f'PARAMETER stop "{s}"' for s in stop_tokens(tokenizer, w)]
    lines.append(f"PARAMETER temperature {float(temperature):g}")
    if system_prompt:
        lines.append(f'SYSTEM """{system_prompt}"""')
    return "\n".join(lines) + "\n"
