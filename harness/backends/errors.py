"""Why a completion failed, in one place: evaluation and the judge both record it, credentials masked."""
from __future__ import annotations

from harness.backends.base import Completion
from harness.config import redact_text


def completion_error(c: Completion, max_chars: int | None = None) -> str | None:
    """The backend's per-request error (Completion.error, or finish_reason "error" without one), secrets masked
    and cut to `max_chars`; None for an answer. An error is never an answer to score."""
    err = getattr(c, "error", None)
    if not err and c.finish_reason == "error":
        err = c.text or "backend error (no message)"
    if not err:
        return None
    return redact_text(str(err))[:max_chars]
