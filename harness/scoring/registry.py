"""Which scorer a name means: lazy {name: "module:Class"} tables (nothing is imported until used), one family.

    scorer_class("field_accuracy", "metric")(fields=["product"]).score(output, reference)  # -> Score
    scorer_class("word_count", "check")(max=20).score(output)                                # -> Score

Task metrics are what task.yaml's `metrics:` names (harness.metrics); probe checks are what a probe item's
`check:` names (harness.probes). An unknown name's error lists the names that exist.
"""
from __future__ import annotations

import importlib

from harness.scoring.base import Scorer

TASK_METRICS: dict[str, str] = {
    "exact_match": "harness.scoring.text:ExactMatch",
    "token_f1": "harness.scoring.text:TokenF1",
    "rouge_l": "harness.scoring.text:RougeL",
    "regex_match": "harness.scoring.regex:RegexMatch",
    "numeric_match": "harness.scoring.numeric:NumericMatch",
    "json_valid": "harness.scoring.json:JsonValid",
    "schema_valid": "harness.scoring.schema:SchemaValid",
    "field_accuracy": "harness.scoring.fields:FieldAccuracy",
    "all_fields_correct": "harness.scoring.fields:AllFieldsCorrect",
}
_P = "harness.scoring.probes."
PROBE_CHECKS: dict[str, str] = {
    "word_count": _P + "length:WordCount",
    "forbidden_words": _P + "keywords:ForbiddenWords",
    "required_keywords": _P + "keywords:RequiredKeywords",
    "json_only": _P + "json:JsonOnly",
    "bullet_count": _P + "length:BulletCount",
    "lowercase": _P + "form:Lowercase",
    "uppercase": _P + "form:Uppercase",
    "ends_with": _P + "phrases:EndsWith",
    "starts_with": _P + "phrases:StartsWith",
    "no_comma": _P + "form:NoComma",
    "numeric": _P + "answers:Numeric",
    "contains_any": _P + "keywords:ContainsAny",
    "json_keys": _P + "json:JsonKeys",
    "equals": _P + "phrases:Equals",
    "quoted": _P + "form:Quoted",
    "plain_text": _P + "form:PlainText",
    "mentions": _P + "keywords:Mentions",
    "first_named": _P + "answers:FirstNamed",
    "names_fact": _P + "answers:NamesFact",
    "bullets_from": _P + "length:BulletsFrom",
}
FAMILIES: dict[str, dict[str, str]] = {"metric": TASK_METRICS, "check": PROBE_CHECKS}


class UnknownScorer(KeyError):
    """A name no table holds; the message lists the names that exist."""

    def __str__(self) -> str:
        return str(self.args[0])


def known_names(family: str) -> list[str]:
    return sorted(FAMILIES[family])


def scorer_class(name: str, family: str) -> type[Scorer]:
    """The class registered for `name` among the `family`'s scorers ("metric" or "check"), imported now."""
    target = FAMILIES[family].get(name)
    if target is None:
        raise UnknownScorer(f"unknown {family} {name!r} (known: {', '.join(known_names(family))})")
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
