"""Probe checks on an answer's form: lowercase, uppercase, no_comma, quoted, plain_text."""
from __future__ import annotations

import unicodedata

from harness.scoring.base import Check
from harness.scoring.json import extract_json


def lowercase(output: str) -> bool:
    """All letters lowercase (and there are some)."""
    letters = [c for c in output or "" if c.isalpha()]
    return bool(letters) and all(not c.isupper() for c in letters)


def uppercase(output: str) -> bool:
    """All letters uppercase (and there are some)."""
    letters = [c for c in output or "" if c.isalpha() and unicodedata.category(c) in ("Lu", "Ll")]
    return bool(letters) and all(c.isupper() for c in letters)


def no_comma(output: str) -> bool:
    """No comma anywhere (and a non-empty answer)."""
    return bool((output or "").strip()) and "," not in output and "，" not in output


def quoted(output: str) -> bool:
    """The whole answer (surrounding whitespace ignored) is wrapped in double quotes ("..." or “...”), text inside."""
    out = (output or "").strip()
    return len(out) > 2 and out[0] in "\"“" and out[-1] in "\"”" and bool(out[1:-1].strip())


def plain_text(output: str) -> bool:
    """A non-empty answer with no JSON object or array in it: prose was asked for, so `{}` or the task's JSON
    is not an answer, whatever words it contains."""
    text = (output or "").strip()
    if not text or "{" in text or "}" in text:
        return False
    p = extract_json(text)  # "49" and '"quoted"' are JSON values too: only an array counts against prose here
    return not (p.found and isinstance(p.value, (dict, list)))


class Lowercase(Check):
    name = "lowercase"
    rule = staticmethod(lowercase)


class Uppercase(Check):
    name = "uppercase"
    rule = staticmethod(uppercase)


class NoComma(Check):
    name = "no_comma"
    rule = staticmethod(no_comma)


class Quoted(Check):
    name = "quoted"
    rule = staticmethod(quoted)


class PlainText(Check):
    name = "plain_text"
    rule = staticmethod(plain_text)
