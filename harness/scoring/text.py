"""Plain-text task metrics against the reference: exact_match, token_f1, rouge_l (unicode-aware)."""
from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter

from harness.scoring.base import Score, Scorer


def strip_punct(text: str) -> str:
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith("P") and ch not in string.punctuation)


def normalize_text(text: str, *, ignore_case: bool = True, ignore_punctuation: bool = False) -> str:
    """NFKC, collapse whitespace, optionally lowercase and drop punctuation (unicode-aware)."""
    text = unicodedata.normalize("NFKC", text or "")
    if ignore_case:
        text = text.casefold()
    if ignore_punctuation:
        text = strip_punct(text)
    return " ".join(text.split())


def word_tokens(text: str) -> list[str]:
    # unicode word tokens; rouge-score's default tokenizer drops every non-ASCII character
    return re.findall(r"\w+", unicodedata.normalize("NFKC", text or "").casefold())


def exact_match(output: str, reference: str, *, normalize: bool = True, ignore_case: bool = True,
                ignore_punctuation: bool = False) -> float:
    """1.0 when output equals reference (after whitespace/unicode normalisation when `normalize`)."""
    if not normalize:
        a, b = output or "", reference or ""
        if ignore_case:
            a, b = a.casefold(), b.casefold()
        if ignore_punctuation:
            a, b = strip_punct(a), strip_punct(b)
        return float(a == b)
    a = normalize_text(output, ignore_case=ignore_case, ignore_punctuation=ignore_punctuation)
    b = normalize_text(reference, ignore_case=ignore_case, ignore_punctuation=ignore_punctuation)
    return float(a == b)


def token_f1(output: str, reference: str) -> float:
    """SQuAD-style bag-of-words F1 over lowercased unicode word tokens (both empty = 1.0)."""
    pred, gold = word_tokens(output), word_tokens(reference)
    if not pred and not gold:
        return 1.0
    if not pred or not gold:
        return 0.0
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    p, r = common / len(pred), common / len(gold)
    return 2 * p * r / (p + r)


class _UnicodeTokenizer:
    def tokenize(self, text: str) -> list[str]:
        return word_tokens(text)


_ROUGE = None


def rouge_l(output: str, reference: str) -> float:
    """ROUGE-L F-measure (rouge-score), with a unicode word tokenizer (both empty = 1.0)."""
    global _ROUGE
    if not word_tokens(output) and not word_tokens(reference):
        return 1.0
    if _ROUGE is None:
        from rouge_score.rouge_scorer import RougeScorer

        _ROUGE = RougeScorer(["rougeL"], tokenizer=_UnicodeTokenizer())
    return float(_ROUGE.score(reference or "", output or "")["rougeL"].fmeasure)


class ExactMatch(Scorer):
    name = "exact_match"
    description = "output == reference after normalisation"
    option_types = {"normalize": bool, "ignore_case": bool, "ignore_punctuation": bool}

    def score(self, output: str, reference: str = "", schema: dict | None = None) -> Score:
        return Score(exact_match(output, reference, **self.opts))


class TokenF1(Scorer):
    name = "token_f1"
    description = "bag-of-words F1 against the reference"

    def score(self, output: str, reference: str = "", schema: dict | None = None) -> Score:
        return Score(token_f1(output, reference, **self.opts))


class RougeL(Scorer):
    name = "rouge_l"
    description = "ROUGE-L F-measure against the reference"

    def score(self, output: str, reference: str = "", schema: dict | None = None) -> Score:
        return Score(rouge_l(output, reference, **self.opts))
