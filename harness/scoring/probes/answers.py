"""Probe checks that the answer is the right one, not the question echoed: numeric, first_named, names_fact."""
from __future__ import annotations

import re

from harness.scoring.base import Check
from harness.scoring.numeric import extract_answer_number
from harness.scoring.probes.words import strip_phrases


def numeric(output: str, *, answer: float, tolerance: float = 1e-6, echo: list[str] | None = None) -> bool:
    """The answer's final number ('#### n' or the last number) equals `answer`, once the question's own wording
    (`echo`: "9 divided by 3", a word problem's sentences) is removed: echoing "9 divided by 3" does not answer 3."""
    got = extract_answer_number(strip_phrases(output or "", echo or []))
    return got is not None and abs(got - float(answer)) <= tolerance


def first_named(output: str, *, answers: list[str], options: list[str], ignore: list[str] | None = None,
                exclusive: bool = False) -> bool:
    """Of the candidate `options` (accepted `answers` are options too), the first one the answer names is an
    accepted answer, after removing the `ignore` phrases (the question restated, e.g. "after February", or a
    passage's other facts restated). "February comes after March" names February first: it fails, though it
    contains "March". With `exclusive`, no option other than an accepted answer may be named at all."""
    text = strip_phrases(output, ignore or [])
    ok = {a.casefold() for a in answers}
    hits = []
    for opt in set(options) | set(answers):
        m = re.search(r"(?<!\w)" + re.escape(opt.casefold()) + r"(?!\w)", text.casefold())
        if m:
            hits.append((m.start(), -len(opt), opt.casefold()))
    if not hits:
        return False
    hits.sort()
    if exclusive and any(h[2] not in ok for h in hits):
        return False
    return hits[0][2] in ok


def names_fact(output: str, *, answers: list[str], others: list[str], own: list[str], context: list[str]) -> bool:
    """Reading: the answer names the asked fact (`answers`) and not the distractor (`others`). The passage's other
    facts (`context`) may be restated without penalty, but then the answer must name the fact outside its own
    restated clause (`own`) too: "Leo has a blue ball; Mia's kite is red" answers, copying the passage does not."""
    squashed = " ".join((output or "").split())
    text = strip_phrases(squashed, context)
    if text != squashed:
        text = strip_phrases(text, own)
    return first_named(text, answers=answers, options=others, exclusive=True)


class Numeric(Check):
    name = "numeric"
    rule = staticmethod(numeric)


class FirstNamed(Check):
    name = "first_named"
    rule = staticmethod(first_named)


class NamesFact(Check):
    name = "names_fact"
    rule = staticmethod(names_fact)
