"""Probe checks on JSON answers: json_only, json_keys."""
from __future__ import annotations

import json
import re
from typing import Any

from harness.scoring.base import Check
from harness.scoring.json import extract_json
from harness.scoring.probes.words import squash


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    return isinstance(v, str) and re.fullmatch(r"\s*-?\d+(?:[.,]\d+)?\s*", v) is not None


def json_only(output: str, *, allow_fence: bool = True) -> bool:
    """The whole answer is one JSON value (a lone ```json fence is accepted when `allow_fence`)."""
    p = extract_json(output)
    return p.strict and (allow_fence or not p.code_fence)


def json_keys(output: str, *, keys: list[str], distinct: bool = False, numbers: list[str] | None = None) -> bool:
    """The whole answer is one JSON object (a lone ```json fence accepted) that has every key in `keys`; with
    `distinct`, their values are non-empty and differ from each other (`{"day": "Monday", "weather": "Monday"}`
    has the keys but says nothing), and none is its own key's name (`{"dish": "dish", "ingredient": "ingredient"}`);
    keys in `numbers` hold a number."""
    p = extract_json(output)
    if not (p.strict and isinstance(p.value, dict) and all(k in p.value for k in keys)):
        return False
    vals = [p.value[k] for k in keys]
    if distinct:
        texts = [squash(json.dumps(v) if not isinstance(v, str) else v) for v in vals]
        if any(not t or t in ('""', "null", "{}", "[]") for t in texts) or len(set(texts)) < len(texts):
            return False
        if any(t == squash(k) for t, k in zip(texts, keys)):  # {"dish": "dish"}: the key's name as its value
            return False
    return all(_is_number(p.value[k]) for k in numbers or [])


class JsonOnly(Check):
    name = "json_only"
    rule = staticmethod(json_only)


class JsonKeys(Check):
    name = "json_keys"
    rule = staticmethod(json_keys)
