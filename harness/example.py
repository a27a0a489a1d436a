"""The one canonical example type every data format is read into."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.io import stable_hash

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Example:
    """A chat: optional system message, alternating user/assistant turns, ending with the assistant target.

    `id` is stable: a hash of the messages (or the record's own "id" field when it has one).
    `meta` keeps extra record fields (e.g. "knowledge": true marks a knowledge-needing eval item).
    """

    messages: tuple[dict, ...]
    id: str = ""
    source: str = ""
    line: int = 0
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", example_id(self.messages))

    @property
    def system(self) -> str | None:
        return self.messages[0]["content"] if self.messages and self.messages[0]["role"] == "system" else None

    @property
    def prompt_messages(self) -> list[dict]:
        """Everything before the final assistant message (the target)."""
        msgs = list(self.messages)
        if msgs and msgs[-1]["role"] == "assistant":
            msgs = msgs[:-1]
        return [dict(m) for m in msgs]

    @property
    def target(self) -> str:
        return self.messages[-1]["content"] if self.messages and self.messages[-1]["role"] == "assistant" else ""

    @property
    def user_text(self) -> str:
        """The last user message: what dedupe/leakage checks compare."""
        for m in reversed(self.messages):
            if m["role"] == "user":
                return m["content"]
        return ""

    def to_record(self) -> dict:
        rec = {"id": self.id, "messages": [dict(m) for m in self.messages]}
        rec.update({k: v for k, v in self.meta.items() if k not in rec})
        return rec


def example_id(messages) -> str:
    return stable_hash([[m["role"], m["content"]] for m in messages], 16)
