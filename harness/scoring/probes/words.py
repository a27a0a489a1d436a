"""Words and phrases as the probe checks read them (whole words, case-insensitive); no check of its own."""
from __future__ import annotations

import re


def word_list(text: str) -> list[str]:
    return re.findall(r"\b\w+(?:['’-]\w+)*\b", text or "")


def contains_word(text: str, word: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(word.casefold()) + r"(?!\w)", (text or "").casefold()) is not None


def strip_phrases(text: str, phrases: list[str]) -> str:
    out = " ".join((text or "").split())
    for ph in phrases or []:
        out = re.sub(re.escape(" ".join(ph.split())), " ", out, flags=re.I)
    return out


def squash(text: str) -> str:
    return " ".join((text or "").split()).casefold()
