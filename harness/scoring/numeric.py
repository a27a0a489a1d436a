"""numeric_match: the answer's final number ('#### n' as in GSM8K, else the last number) against the reference's."""
from __future__ import annotations

import math
import re

from harness.scoring.base import Score, Scorer

_NUM_RX = re.compile(r"[-−]?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-−]?\.\d+")


def _to_float(tok: str) -> float | None:
    tok = tok.replace("−", "-").replace("$", "").replace(",", "").replace(" ", "")
    try:
        return float(tok)
    except ValueError:
        return None


def extract_answer_number(text: str) -> float | None:
    """GSM8K convention: the number after the last '####' if present, else the last number in the text."""
    text = text or ""
    if "####" in text:
        tail = text.rsplit("####", 1)[1]
        m = _NUM_RX.findall(tail)
        if m:
            return _to_float(m[0])
    m = _NUM_RX.findall(text)
    return _to_float(m[-1]) if m else None


def numeric_match(output: str, reference: str, *, tolerance: float = 1e-6, relative: bool = False) -> float | None:
    """1.0 when the output's answer number equals the reference's (within `tolerance`; relative if asked).

    None when the reference holds no number (not applicable); 0.0 when the output holds none.
    """
    ref = extract_answer_number(reference)
    if ref is None:
        return None
    got = extract_answer_number(output)
    if got is None:
        return 0.0
    tol = tolerance * max(abs(ref), 1e-12) if relative else tolerance
    return float(math.isclose(got, ref, rel_tol=0.0, abs_tol=tol) or got == ref)


class NumericMatch(Scorer):
    name = "numeric_match"
    description = "final number equals the reference's ('#### n' or last number)"
    option_types = {"tolerance": (int, float), "relative": bool}

    def score(self, output: str, reference: str = "", schema: dict | None = None) -> Score:
        return Score(numeric_match(output, reference, **self.opts))
