"""Probe checks on how an answer starts, ends or reads whole: starts_with, ends_with, equals."""
from __future__ import annotations

from harness.scoring.base import Check
from harness.scoring.probes.words import squash


def _clean_end(text: str) -> str:
    return " ".join((text or "").strip().strip("\"'“”").split()).casefold()


_OPEN_QUOTES, _CLOSE_QUOTES = "\"'“‘", "\"'”’"


def ends_with(output: str, *, phrase: str) -> bool:
    """The answer ends with `phrase` (case-insensitive, surrounding whitespace/quotes ignored)."""
    return _clean_end(output).endswith(_clean_end(phrase)) and bool(_clean_end(output))


def starts_with(output: str, *, phrase: str) -> bool:
    """The answer starts with `phrase` as whole words (case-insensitive): 'Yes, ...' passes 'Yes', 'Yesterday' not."""
    text, head = _clean_end(output), _clean_end(phrase)
    after = text[len(head):len(head) + 1]
    return bool(text) and text.startswith(head) and not (head[-1:].isalnum() and after.isalnum())


def equals(output: str, *, text: str) -> bool:
    """The answer is `text` (case and runs of whitespace ignored; one pair of surrounding quotes allowed)."""
    out = (output or "").strip()
    if len(out) >= 2 and out[0] in _OPEN_QUOTES and out[-1] in _CLOSE_QUOTES:
        out = out[1:-1]
    return bool(out.strip()) and squash(out) == squash(text)


class EndsWith(Check):
    name = "ends_with"
    rule = staticmethod(ends_with)


class StartsWith(Check):
    name = "starts_with"
    rule = staticmethod(starts_with)


class Equals(Check):
    name = "equals"
    rule = staticmethod(equals)
