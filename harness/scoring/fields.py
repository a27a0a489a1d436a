"""field_accuracy and all_fields_correct: the output's JSON fields against the reference's (dotted paths)."""
from __future__ import annotations

import json
import unicodedata
from typing import Any, Sequence

from harness.scoring.base import Score, Scorer
from harness.scoring.json import extract_json

_MISSING = object()


def get_field(obj: Any, path: str) -> Any:
    """obj['a']['b'] for 'a.b' (list indices as digits); _MISSING when absent."""
    cur = obj
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return _MISSING
    return cur


def _canon(v: Any, *, ignore_case: bool, unordered_lists: bool) -> Any:
    if v is _MISSING or v is None:
        return None
    if isinstance(v, str):
        s = " ".join(unicodedata.normalize("NFKC", v).split())
        return s.casefold() if ignore_case else s
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, dict):
        return {str(k): _canon(x, ignore_case=ignore_case, unordered_lists=unordered_lists) for k, x in v.items()
                if x is not None}
    if isinstance(v, list):
        items = [_canon(x, ignore_case=ignore_case, unordered_lists=unordered_lists) for x in v]
        if unordered_lists:
            return sorted(items, key=lambda x: json.dumps(x, sort_keys=True, default=str))
        return items
    return v


def values_equal(a: Any, b: Any, *, ignore_case: bool = True, unordered_lists: bool = True) -> bool:
    """JSON value equality for field scoring: missing == null, 1 == 1.0, strings trimmed (and
    case-folded when `ignore_case`), lists compared as multisets when `unordered_lists`."""
    return _canon(a, ignore_case=ignore_case, unordered_lists=unordered_lists) == _canon(
        b, ignore_case=ignore_case, unordered_lists=unordered_lists)


def _ref_json(reference: str) -> Any:
    p = extract_json(reference)
    return p.value if p.found else _MISSING


def field_scores(output: str, reference: str, *, fields: Sequence[str] | None = None, ignore_case: bool = True,
                 unordered_lists: bool = True) -> dict[str, float]:
    """Per-field 1/0: does the output's value at each (dotted) field equal the reference's?

    Without `fields`, the reference object's top-level keys are used. An unparseable output
    scores 0 on every field.
    """
    ref = _ref_json(reference)
    if fields is None:
        fields = list(ref.keys()) if isinstance(ref, dict) else []
    out = extract_json(output)
    res = {}
    for f in fields:
        if not out.found:
            res[f] = 0.0
            continue
        res[f] = float(values_equal(get_field(out.value, f), get_field(ref, f) if ref is not _MISSING else _MISSING,
                                    ignore_case=ignore_case, unordered_lists=unordered_lists))
    return res


def field_accuracy(output: str, reference: str, *, fields: Sequence[str] | None = None, ignore_case: bool = True,
                   unordered_lists: bool = True) -> float | None:
    """Mean of field_scores (None when there are no fields to score)."""
    s = field_scores(output, reference, fields=fields, ignore_case=ignore_case, unordered_lists=unordered_lists)
    return sum(s.values()) / len(s) if s else None


def all_fields_correct(output: str, reference: str, *, fields: Sequence[str] | None = None, ignore_case: bool = True,
                       unordered_lists: bool = True) -> float:
    """1.0 when every listed field matches; without `fields`, the whole JSON value must match."""
    out = extract_json(output)
    if not out.found:
        return 0.0
    if fields is None:
        ref = _ref_json(reference)
        return float(values_equal(out.value, ref, ignore_case=ignore_case, unordered_lists=unordered_lists))
    s = field_scores(output, reference, fields=fields, ignore_case=ignore_case, unordered_lists=unordered_lists)
    return float(all(v == 1.0 for v in s.values()))


class _FieldScorer(Scorer):
    option_types = {"fields": (list, type(None)), "ignore_case": bool, "unordered_lists": bool}

    @classmethod
    def check(cls, opts: dict) -> None:
        f = opts.get("fields")
        if f is not None and (not isinstance(f, list) or not f or not all(isinstance(x, str) and x for x in f)):
            raise ValueError("fields: must be a non-empty list of field names (dotted paths allowed)")


class FieldAccuracy(_FieldScorer):
    name = "field_accuracy"
    description = "fraction of JSON fields equal to the reference (one value per field + mean)"

    @classmethod
    def outputs(cls, key: str, opts: dict) -> list[str]:
        return [key] + [f"{key}.{f}" for f in (opts.get("fields") or [])]

    def score(self, output: str, reference: str = "", schema: dict | None = None) -> Score:
        s = field_scores(output, reference, **self.opts)
        why = ""
        wrong = [f for f, v in s.items() if v == 0.0]
        if wrong:
            p = extract_json(output)
            why = ("not JSON: " + p.error) if not p.found else "wrong: " + ", ".join(wrong)
        return Score(sum(s.values()) / len(s) if s else None, why, {f".{f}": Score(v) for f, v in s.items()})


class AllFieldsCorrect(_FieldScorer):
    name = "all_fields_correct"
    description = "every JSON field equals the reference"

    def score(self, output: str, reference: str = "", schema: dict | None = None) -> Score:
        return Score(all_fields_correct(output, reference, **self.opts))
