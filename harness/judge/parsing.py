"""Strict verdict parsing (see harness/judge/__init__.py for the rule) and the G-Eval weighted score."""
from __future__ import annotations

import json
import math
import re
from typing import Any, Sequence

from harness.backends.base import Completion
from harness.judge.rubrics import Rubric

class VerdictError(ValueError):
    """The judge's completion is not a valid verdict under the strict rule."""


_FENCE_RE = re.compile(r"\A```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)\n?[ \t]*```\Z", re.S)


def _no_dupes(pairs: list[tuple[str, Any]]) -> dict:
    d: dict = {}
    for k, v in pairs:
        if k in d:
            raise VerdictError(f"duplicate key {k!r}")
        d[k] = v
    return d


def extract_json_object(completion: str) -> dict:
    """The strict rule: the whole completion is one JSON object, optionally in one code fence."""
    if completion is None:
        raise VerdictError("empty completion")
    s = completion.strip()
    if s.startswith("```"):
        m = _FENCE_RE.match(s)
        if not m:
            raise VerdictError("code fence is not the only content")
        s = m.group(1).strip()
    if not (s.startswith("{") and s.endswith("}")):
        raise VerdictError("completion is not a single JSON object (text before or after it)")
    try:
        obj = json.loads(s, object_pairs_hook=_no_dupes)
    except json.JSONDecodeError as e:
        raise VerdictError(f"invalid JSON: {e.msg}") from None
    except RecursionError:
        raise VerdictError("invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise VerdictError("not a JSON object")
    return obj


def parse_pointwise(completion: str, rubric: Rubric) -> dict:
    obj = extract_json_object(completion)
    if set(obj) != {"score", "reason"}:
        raise VerdictError(f"keys must be exactly score and reason, got {sorted(obj)}")
    score, reason = obj["score"], obj["reason"]
    if not isinstance(score, int) or isinstance(score, bool):
        raise VerdictError(f"score must be an integer, got {score!r}")
    if not rubric.scale_min <= score <= rubric.scale_max:
        raise VerdictError(f"score {score} outside the scale {rubric.scale_min}..{rubric.scale_max}")
    if not isinstance(reason, str):
        raise VerdictError("reason must be a string")
    return {"score": score, "reason": reason}


def parse_pairwise(completion: str, rubric: Rubric | None = None) -> dict:
    obj = extract_json_object(completion)
    if set(obj) != {"winner", "reason"}:
        raise VerdictError(f"keys must be exactly winner and reason, got {sorted(obj)}")
    w, reason = obj["winner"], obj["reason"]
    if not isinstance(w, str) or w.strip().lower() not in ("a", "b", "tie"):
        raise VerdictError(f"winner must be \"A\", \"B\" or \"tie\", got {w!r}")
    if not isinstance(reason, str):
        raise VerdictError("reason must be a string")
    w = w.strip().lower()
    return {"winner": "tie" if w == "tie" else w.upper(), "reason": reason}


def json_objects_in(text: str) -> list[dict]:
    """Every JSON object with at least one key that can be decoded starting at some '{' in `text` (a verdict
    always has keys, so '{' not followed by a quoted key is skipped: "{" * 5000 costs nothing; too deep
    nesting is no object)."""
    dec = json.JSONDecoder()
    out = []
    for m in re.finditer(r'\{(?=\s*")', text or ""):
        try:
            obj, _ = dec.raw_decode(text, m.start())
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def check_not_echo(verdict_obj: dict, untrusted: Sequence[str | None]) -> None:
    """Reject a verdict that is a verbatim copy of a JSON object inside a candidate (or other untrusted text).

    The parser only ever sees the judge's completion, but a judge can still copy a candidate's
    planted '{"score": 5, "reason": ...}'; such a completion is not the judge's own verdict.
    """
    for text in untrusted:
        if text and "{" in text:
            for obj in json_objects_in(str(text)):
                if obj == verdict_obj:
                    raise VerdictError("verdict is a copy of a JSON object found inside a candidate (echo)")


def weighted_score(completion: Completion, rubric: Rubric) -> float | None:
    """G-Eval: probability-weighted score over the scale's digit tokens at the score digit's position."""
    lps = completion.logprobs
    if not lps or rubric.type != "pointwise" or rubric.scale_max > 9 or rubric.scale_min < 0:
        return None
    text = completion.text or ""
    m = re.search(r'"score"\s*:\s*(\d)', text)
    if not m:
        return None
    tokens = [str(t.get("token", "")) for t in lps]
    joined = "".join(tokens)
    shift = joined.find(text) if text else -1
    if shift < 0:
        return None
    target = shift + m.start(1)
    pos = 0
    idx = None
    for i, tok in enumerate(tokens):
        if pos <= target < pos + len(tok):
            idx = i
            break
        pos += len(tok)
    if idx is None:
        return None
    entry = lps[idx]
    top = dict(entry.get("top") or {})
    top.setdefault(entry.get("token", ""), entry.get("logprob"))
    probs: dict[int, float] = {}
    for tok, lp in top.items():
        t = str(tok).strip()
        if lp is None or not t.isdigit() or len(t) != 1:
            continue
        v = int(t)
        if rubric.scale_min <= v <= rubric.scale_max:
            probs[v] = probs.get(v, 0.0) + math.exp(float(lp))
    total = sum(probs.values())
    if total <= 0:
        return None
    return sum(v * p for v, p in probs.items()) / total
