"""regex_match: a task's regular expression, run under a time limit (never a hang on catastrophic backtracking)."""
from __future__ import annotations

import re
from typing import Sequence

from harness.scoring.base import Score, Scorer

_FLAG_MAP = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


def regex_flags(flags: str | Sequence[str] | int | None) -> int:
    if flags is None or flags == "":
        return 0
    if isinstance(flags, int):
        return flags
    letters = "".join(flags) if not isinstance(flags, str) else flags
    out = 0
    for ch in letters.replace("re.", "").replace("|", "").replace(",", "").replace(" ", ""):
        key = ch.lower()
        if key not in _FLAG_MAP:
            raise ValueError(f"unknown regex flag {ch!r} (known: i, m, s, x)")
        out |= _FLAG_MAP[key]
    return out


REGEX_TIMEOUT_S = 1.0  # per output and pattern


def bounded_match(pattern: str, text: str, flags: int = 0, full: bool = False) -> bool | None:
    """re.search (re.fullmatch when `full`) semantics, run by the `regex` engine (re-compatible V0) under a time
    limit: a task's pattern that backtracks catastrophically on some output ('(a|aa)+$' on 40 a's and a b) gives
    None after REGEX_TIMEOUT_S instead of hanging the evaluation. A bad pattern raises re.error."""
    import regex

    try:
        rx = regex.compile(pattern, flags)
    except regex.error as exc:
        raise re.error(str(exc)) from None
    try:
        m = rx.fullmatch(text, timeout=REGEX_TIMEOUT_S) if full else rx.search(text, timeout=REGEX_TIMEOUT_S)
    except TimeoutError:
        return None
    return m is not None


def regex_match(output: str, *, pattern: str, flags: str | Sequence[str] | int | None = None,
                full: bool = False) -> float:
    """1.0 when `pattern` is found in the output (re.search; re.fullmatch on the stripped output when `full`);
    a match that runs past REGEX_TIMEOUT_S is a metric error (unscored), never a hang."""
    text = output or ""
    hit = bounded_match(pattern, text.strip() if full else text, regex_flags(flags), full)
    if hit is None:
        raise ValueError(f"pattern ran longer than {REGEX_TIMEOUT_S:g} s on this output (catastrophic backtracking?)")
    return float(hit)


class RegexMatch(Scorer):
    name = "regex_match"
    description = "output matches a regular expression"
    option_types = {"pattern": str, "flags": (str, list, int, type(None)), "full": bool}

    @classmethod
    def check(cls, opts: dict) -> None:
        if "pattern" not in opts:
            raise ValueError("pattern: required")
        try:
            re.compile(opts["pattern"], regex_flags(opts.get("flags")))
        except re.error as exc:
            raise ValueError(f"pattern: invalid regular expression ({exc})") from None

    def score(self, output: str, reference: str = "", schema: dict | None = None) -> Score:
        return Score(regex_match(output, **self.opts))
