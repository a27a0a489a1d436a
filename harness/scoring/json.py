"""json_valid: is the output exactly one JSON value? Also the one JSON reader every scorer uses (`extract_json`).

JSON outputs are read "the way users expect" (see `extract_json`):
  * surrounding whitespace is ignored;
  * an output that is exactly one ```json ... ``` (or bare ```) markdown fence is unwrapped and
    parsed: json_valid = 1, and the deviation is reported separately as code_fence = 1;
  * an output with prose before/after a complete JSON value is NOT valid JSON (json_valid = 0,
    trailing_text = 1 / leading_text = 1), but the first JSON object/array in it is still parsed so
    schema_valid / field_accuracy / all_fields_correct measure the content the model produced.
    Strict format compliance is json_valid; content quality is the field metrics.
  * empty output: json_valid = 0, every field wrong, details say "empty output".
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from harness.jsonscan import brackets
from harness.scoring.base import Score, Scorer


@dataclass
class JsonParse:
    """What `extract_json` found in an output."""

    value: Any = None  # the parsed JSON value (lenient: first object/array when there is extra text)
    found: bool = False  # a JSON value was parsed at all
    strict: bool = False  # the whole output (or the whole fenced block) is exactly one JSON value
    code_fence: bool = False  # wrapped in a ``` markdown fence
    leading_text: bool = False  # prose before the JSON value
    trailing_text: bool = False  # anything after the first complete JSON value
    error: str = ""


_FENCE_RX = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n?(.*?)\n?[ \t]*```", re.DOTALL)
_DECODER = json.JSONDecoder()


MAX_JSON_DEPTH = 100  # deeper outputs are invalid JSON (Python's parser would recurse out, and slowly)


def json_depth_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when [ / { outside JSON strings nest deeper than `limit` anywhere in `text` (one linear scan)."""
    return any(depth > limit for _, depth in brackets(text))


def extract_json(output: str) -> JsonParse:
    """Parse a model's JSON answer; see the module docstring for the rules."""
    text = (output or "").strip().lstrip("\ufeff")
    if not text:
        return JsonParse(error="empty output")
    if json_depth_exceeds(text):
        return JsonParse(error=f"invalid JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    res = JsonParse()
    m = _FENCE_RX.search(text)
    if m and (m.group(1) == "" or m.group(1).lower() in ("json", "jsonc", "json5")):
        res.code_fence = True
        res.leading_text = bool(text[: m.start()].strip())
        after = text[m.end():].strip()
        inner = m.group(2).strip()
        if after:
            res.trailing_text = True
        try:
            res.value = json.loads(inner)
            res.found = True
            res.strict = not res.leading_text and not res.trailing_text
            return res
        except json.JSONDecodeError:
            text = inner  # fall through: lenient parse of the fenced content
    try:
        res.value = json.loads(text)
        res.found = True
        res.strict = not res.code_fence or (not res.leading_text and not res.trailing_text)
        return res
    except json.JSONDecodeError as exc:
        res.error = f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    # lenient: the first complete object/array anywhere in the text
    for i, ch in enumerate(text):
        if ch not in "{[":
            continue
        try:
            value, end = _DECODER.raw_decode(text, i)
        except json.JSONDecodeError:
            continue
        res.value, res.found, res.strict = value, True, False
        res.leading_text = res.leading_text or bool(text[:i].strip())
        res.trailing_text = res.trailing_text or bool(text[end:].strip())
        return res
    return res


def json_valid(output: str) -> float:
    """1.0 when the output is exactly one JSON value (a lone ```json fence around it is tolerated)."""
    return float(extract_json(output).strict)


# Sub-metrics of json_valid that count format deviations: higher is worse, never reported as a gain.
FORMAT_DEVIATIONS = ("code_fence", "trailing_text")


class JsonValid(Scorer):
    name = "json_valid"
    description = "output is exactly one JSON value (also reports code_fence, trailing_text)"

    @classmethod
    def outputs(cls, key: str, opts: dict) -> list[str]:
        return [key, *FORMAT_DEVIATIONS]

    def score(self, output: str, reference: str = "", schema: dict | None = None) -> Score:
        p = extract_json(output)
        why = ""
        if not p.strict:
            if not p.found:
                why = p.error
            else:
                where = [w for w, on in (("leading text", p.leading_text), ("trailing text", p.trailing_text)) if on]
                why = "JSON value surrounded by " + " and ".join(where or ["extra text"])
        fence = "JSON wrapped in a markdown code fence" if p.strict and p.code_fence else ""
        return Score(float(p.strict), why, {"code_fence": Score(float(p.code_fence), fence),
                                            "trailing_text": Score(float(p.trailing_text) if p.found else None)})
