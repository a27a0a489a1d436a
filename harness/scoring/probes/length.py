"""Probe checks on an answer's length and lists: word_count, bullet_count, bullets_from."""
from __future__ import annotations

import re

from harness.scoring.base import Check
from harness.scoring.probes.words import contains_word, word_list


BULLET_RX = re.compile(r"^\s*(?:[*•-]|\d+[.)])\s+\S", re.M)


def word_count(output: str, *, min: int | None = None, max: int | None = None) -> bool:
    """The answer has between `min` and `max` words (inclusive); empty never passes a min."""
    n = len(word_list(output))
    return (min is None or n >= min) and (max is None or n <= max) and n > 0


def bullet_count(output: str, *, n: int, relation: str = "exactly") -> bool:
    """Number of bullet lines ('* ', '- ', '• ', '1. ') compared with n: exactly | at least | at most."""
    k = len(BULLET_RX.findall(output or ""))
    if relation == "exactly":
        return k == n
    if relation == "at least":
        return k >= n
    if relation == "at most":
        return 0 < k <= n
    raise ValueError(f"unknown relation {relation!r} (exactly, at least, at most)")


def bullets_from(output: str, *, words: list[str]) -> bool:
    """Every bullet line names a member of the asked category (`words`, whole words, case-insensitive), and no
    two bullets name the same one: "- web\n- mobile" is a list, not a list of fruits."""
    lines = [ln for ln in (output or "").splitlines() if BULLET_RX.match(ln)]
    if not lines:
        return False
    named = []
    for ln in lines:
        hit = next((w.casefold() for w in sorted(words, key=len, reverse=True) if contains_word(ln, w)), None)
        if hit is None:
            return False
        named.append(hit)
    return len(set(named)) == len(named)


class WordCount(Check):
    name = "word_count"
    rule = staticmethod(word_count)


class BulletCount(Check):
    name = "bullet_count"
    rule = staticmethod(bullet_count)


class BulletsFrom(Check):
    name = "bullets_from"
    rule = staticmethod(bullets_from)
