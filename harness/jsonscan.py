"""Brackets of JSON text outside strings, scanned once: shared by the decoder's stop-at-the-answer's-end
(harness.backends.hf_decode.json_end) and the scorer's nesting limit (harness.metrics.json_depth_exceeds)."""
from __future__ import annotations

from typing import Iterator


def brackets(text: str, start: int = 0) -> Iterator[tuple[int, int]]:
    """(offset, depth after it) for every [ { ] } from `start` that is not inside a JSON string (escapes
    honoured); a closer with nothing open leaves the depth at 0."""
    depth, in_str, escaped = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            yield i, depth
        elif ch in "]}":
            depth = max(0, depth - 1)
            yield i, depth


__all__ = ["brackets"]
