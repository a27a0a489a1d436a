"""Probe checks on the words an answer uses: forbidden_words, required_keywords, contains_any, mentions."""
from __future__ import annotations

from harness.scoring.base import Check
from harness.scoring.probes.words import contains_word, word_list


def forbidden_words(output: str, *, words: list[str]) -> bool:
    """None of `words` appears as a whole word (case-insensitive)."""
    return bool((output or "").strip()) and not any(contains_word(output, w) for w in words)


def required_keywords(output: str, *, keywords: list[str]) -> bool:
    """Every keyword appears (case-insensitive, whole word / phrase)."""
    return all(contains_word(output, k) for k in keywords)


def contains_any(output: str, *, answers: list[str]) -> bool:
    """Any accepted answer appears as a whole word/phrase (case-insensitive)."""
    return any(contains_word(output, a) for a in answers)


def mentions(output: str, *, words: list[str]) -> bool:
    """The answer is about the topic: one of its words is one of `words` (case-insensitive); a word ending in
    "*" is a prefix ("flower*" matches "flowers", "flowering")."""
    got = {w.casefold() for w in word_list(output)}
    exact = {w.casefold() for w in words if not w.endswith("*")}
    stems = [w[:-1].casefold() for w in words if w.endswith("*")]
    return bool(got & exact) or any(g.startswith(st) for g in got for st in stems)


class ForbiddenWords(Check):
    name = "forbidden_words"
    rule = staticmethod(forbidden_words)


class RequiredKeywords(Check):
    name = "required_keywords"
    rule = staticmethod(required_keywords)


class ContainsAny(Check):
    name = "contains_any"
    rule = staticmethod(contains_any)


class Mentions(Check):
    name = "mentions"
    rule = staticmethod(mentions)
