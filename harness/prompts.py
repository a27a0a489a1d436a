"""The one way a prompt is formatted, used by training and by every inference backend.

A task config gives a system prompt and a prompt template ("{prompt}" is the user's text);
messages are then rendered by the model's own chat template. Training tokenizes the exact
string inference would send, plus the target, so the two can never drift apart.

How a model's chat template is used is decided once per tokenizer (`chat_format`, probed with placeholder
messages when the tokenizer is loaded) and then applied identically everywhere:
- a template that rejects the system role (Gemma's, older Mistral ones) or drops it gets the system prompt
  merged into the first user turn (said once in the log, the manifest and the summary);
- no chat template: the plain fallback format below, with a warning;
- `model.chat_template_kwargs` (default {enable_thinking: false}) is passed to templates that use the key;
- the end of turn is the token the template closes an answer with (falling back to the tokenizer's eos):
  training ends examples with it and generation stops on it (`stop_token_ids`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from harness import control_tokens
from harness.example import Example
from harness.io import UserError

DEFAULT_CHAT_TEMPLATE_KWARGS: dict = {"enable_thinking": False}
FALLBACK_FORMAT = "SYSTEM: <system>\n\nUSER: <prompt>\n\nASSISTANT: "
_ATTR = "_harness_chat_format"
_SYS, _USER, _ANSWER = "HARNESS-SYSTEM-7Q", "HARNESS-USER-7Q", "HARNESS-ANSWER-7Q"


@dataclass(frozen=True)
class ChatFormat:
    """How one tokenizer's chat template is used (see the module docstring)."""

    has_template: bool
    merge_system: bool
    template_kwargs: dict
    end_of_turn: str
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> dict:
        """What a run's manifest and an evaluation's summary record about the prompt format."""
        return {"chat_template": self.has_template, "system_merged_into_user": self.merge_system,
                "chat_template_kwargs": dict(self.template_kwargs), "end_of_turn": self.end_of_turn,
                "notes": list(self.notes)}


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


def merge_system_turn(messages: list[dict]) -> list[dict]:
    """The system prompt(s) put in front of the first user turn, for templates without a system role."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system" and m["content"])
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system:
        return rest
    for m in rest:
        if m["role"] == "user":
            m["content"] = f"{system}\n\n{m['content']}"
            return rest
    return [{"role": "user", "content": system}] + rest


def _model_name(tokenizer: Any) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or "the model")


def _template_source(tokenizer: Any) -> str:
    t = getattr(tokenizer, "chat_template", None)
    if isinstance(t, dict):
        return "\n".join(str(v) for v in t.values())
    return t if isinstance(t, str) else ""


def _apply(tokenizer: Any, messages: list[dict], generation_prompt: bool, kwargs: dict) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt, **kwargs)


def _template_error() -> tuple[type[BaseException], ...]:
    from jinja2.exceptions import TemplateError

    return (TemplateError,)


def probe_chat_format(tokenizer: Any, chat_template_kwargs: dict | None = None) -> ChatFormat:
    """Decide how `tokenizer`'s chat template is used; UserError when it cannot format a conversation at all."""
    requested = dict(DEFAULT_CHAT_TEMPLATE_KWARGS if chat_template_kwargs is None else chat_template_kwargs)
    eos = tokenizer.eos_token or ""
    source = _template_source(tokenizer)
    name = _model_name(tokenizer)
    if not source:
        return ChatFormat(False, False, {}, eos, (
            f"warning: {name} has no chat template: prompts use the plain fallback format {FALLBACK_FORMAT!r} and "
            f"answers end with {eos!r} (README 'Your own model': give the tokenizer a chat_template for a chat model)",))
    notes: list[str] = []
    kwargs = {k: v for k, v in requested.items() if re.search(rf"\b{re.escape(str(k))}\b", source)}
    for k, v in requested.items():
        if k not in kwargs and DEFAULT_CHAT_TEMPLATE_KWARGS.get(k, object()) != v:
            notes.append(f"model.chat_template_kwargs.{k}: not used by {name}'s chat template (ignored)")
    errors = _template_error()
    try:
        _apply(tokenizer, [{"role": "user", "content": _USER}], True, kwargs)
        _apply(tokenizer, [{"role": "user", "content": _USER}, {"role": "assistant", "content": _ANSWER},
                           {"role": "user", "content": _USER}], True, kwargs)
    except errors as exc:
        raise UserError(f"{name}: its chat template cannot format a user turn and a few-shot exchange "
                        f"(user, assistant, user): {exc}; fix the tokenizer's chat_template "
                        "(README 'Your own model')") from None
    merge = False
    try:
        with_system = _apply(tokenizer, [{"role": "system", "content": _SYS}, {"role": "user", "content": _USER}],
                             True, kwargs)
        if _SYS not in with_system:
            merge = True
            notes.append(f"{name}'s chat template drops the system role: the system prompt is merged into the "
                         "first user turn")
    except errors as exc:
        merge = True
        notes.append(f"{name}'s chat template rejects the system role ({exc}): the system prompt is merged into "
                     "the first user turn")
    eot = _template_end_of_turn(tokenizer, kwargs) or eos
    if kwargs:
        notes.append(f"chat template kwargs {kwargs} (model.chat_template_kwargs)")
    return ChatFormat(True, merge, kwargs, eot, tuple(notes))


def _template_end_of_turn(tokenizer: Any, kwargs: dict) -> str | None:
    """The special token the template writes right after an assistant answer (<|im_end|>, <end_of_turn>, ...)."""
    try:
        text = _apply(tokenizer, [{"role": "user", "content": _USER}, {"role": "assistant", "content": _ANSWER}],
                      False, kwargs)
    except _template_error():
        return None
    i = text.rfind(_ANSWER)
    if i < 0:
        return None
    rest = text[i + len(_ANSWER):].lstrip()
    specials = set(getattr(tokenizer, "all_special_tokens", []) or [])
    try:
        specials |= set(tokenizer.get_added_vocab())
    except (AttributeError, NotImplementedError):
        pass
    found = [s for s in specials if s and rest.startswith(s)]
    return max(found, key=len) if found else None


def set_chat_format(tokenizer: Any, chat_template_kwargs: dict | None = None) -> ChatFormat:
    """Probe and remember the tokenizer's chat format (models.load_tokenizer calls it with the model config's kwargs)."""
    fmt = probe_chat_format(tokenizer, chat_template_kwargs)
    setattr(tokenizer, _ATTR, fmt)
    return fmt


def chat_format(tokenizer: Any) -> ChatFormat:
    """The tokenizer's chat format (probed with the default kwargs when it was loaded without models.load_tokenizer)."""
    fmt = getattr(tokenizer, _ATTR, None)
    return fmt if isinstance(fmt, ChatFormat) else set_chat_format(tokenizer)


def render_chat(tokenizer: Any, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """`messages` through the chat template, as the chat format says (system merge, template kwargs)."""
    fmt = chat_format(tokenizer)
    if fmt.merge_system:
        messages = merge_system_turn(messages)
    try:
        return _apply(tokenizer, messages, add_generation_prompt, fmt.template_kwargs)
    except _template_error() as exc:
        roles = ", ".join(m["role"] for m in messages)
        raise UserError(f"{_model_name(tokenizer)}: its chat template cannot format this conversation "
                        f"({roles}): {exc}") from None


def render_prompt(tokenizer: Any, messages: list[dict]) -> str:
    """The exact prompt string sent to the model (chat template + generation prompt)."""
    if chat_format(tokenizer).has_template:
        return render_chat(tokenizer, messages, True)
    # Plain fallback for base models without a chat template (README 'Your own model').
    parts = [f"{m['role'].upper()}: {m['content']}" for m in messages]
    return "\n\n".join(parts) + "\n\nASSISTANT: "


def prompt_ids(tokenizer: Any, messages: list[dict]) -> list[int]:
    """The prompt's token ids as training and every in-process engine encode it: render_prompt's string, with any
    control-token text inside the messages kept as text (harness.control_tokens)."""
    return control_tokens.encode(tokenizer, render_prompt(tokenizer, messages), control_tokens.message_texts(messages))


def end_of_turn(tokenizer: Any) -> str:
    """What the model emits after an answer (e.g. <|im_end|>); appended to training targets, and a stop token."""
    return chat_format(tokenizer).end_of_turn


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> set[int]:
    """Generation stops on any of: the tokenizer's eos, generation_config.eos_token_id, the template's end of turn."""
    ids: set = set()
    eos = getattr(generation_config, "eos_token_id", None)
    ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    ids.add(tokenizer.eos_token_id)
    eot = end_of_turn(tokenizer)
    if eot:
        enc = tokenizer(eot, add_special_tokens=False)["input_ids"]
        if len(enc) == 1:
            ids.add(enc[0])
    return {int(i) for i in ids if i is not None}


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
    completion = example.target + end_of_turn(tokenizer)
    p_ids = prompt_ids(tokenizer, messages)
    c_ids = control_tokens.encode(tokenizer, completion, [example.target])
    ids = (p_ids + c_ids)[:max_length]
    labels = ([-100] * len(p_ids) if completion_only else list(p_ids)) + list(c_ids)
    return {"input_ids": ids, "labels": labels[:max_length]}


def count_tokens(tokenizer: Any, examples: Iterable[Example], **kw: Any) -> list[int]:
    return [len(tokenize_for_training(tokenizer, ex, **kw)["input_ids"]) for ex in examples]
