"""Format bleed: a probe answered in the fine-tuning task's output form although it did not ask for it.

An adapter trained to answer tickets in JSON may answer "What is 5 times 8?" with `{"five": "8"}`: the
answer is wrong, but a pass-rate table only sees "wrong", not *why*. Bleed is that why, measured per probe
answer and compared with the base model (harness.analysis), so the decision can name it.

The task's output form (`task_form`), in this order:
  pattern   task.yaml `answer_pattern: REGEX` (the whole stripped answer matches it): the user's own word
  json      the task's answers are JSON (a json_schema, a JSON metric, or most reference answers parse as a
            JSON object/array): a probe answer bleeds when it holds a JSON value of that type
  labels    the reference answers are a closed set of short labels that recur (classification; words, not bare
            numbers): a probe answer bleeds when it is exactly one of those labels, or, when the labels share a
            shape of their own (snake_case like `card_arrival`, kebab-case), when it is a new word of that shape
            (`day_of_week` to "Which day comes after Thursday?"); never when the probe accepts that answer
  none      free text: bleed is not measurable (None everywhere, reported as "not measured")
A probe that asks for the form itself (a JSON probe when the task is JSON) has bleed None: answering in JSON
there is following the instruction.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from harness.metrics import bounded_match, extract_json

JSON_METRICS = ("json_valid", "schema_valid", "field_accuracy", "all_fields_correct")
JSON_PROBE_CHECKS = ("json_only", "json_keys")
MAX_LABELS = 150         # more distinct reference answers than this is not a closed label set (BANKING77 has 77)
MAX_LABEL_WORDS = 4      # a label is a short phrase
MIN_LABEL_REPEATS = 2.0  # references per distinct label on average: labels recur, free text does not
# Label shapes that ordinary answers do not take; a task's labels have one when SHAPE_SHARE of them do.
LABEL_SHAPES = {"snake_case": r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+", "kebab-case": r"[a-z][a-z0-9]*(?:-[a-z0-9]+)+"}
SHAPE_SHARE = 0.8


@dataclass(frozen=True)
class TaskForm:
    """The task's output form as bleed detection uses it."""

    kind: str                          # pattern | json | labels | none
    json_type: str = "object"          # json: "object" | "array"
    labels: tuple[str, ...] = ()       # labels: normalised
    pattern: str | None = None         # pattern: the task's answer_pattern
    shape: str | None = None           # labels: the labels' shared shape (a LABEL_SHAPES name), if any

    def describe(self) -> str:
        """How a report names the form, e.g. "a JSON object (the task's answer form)"."""
        return {"json": f"a JSON {self.json_type}",
                "labels": "one of the task's labels" + (f" or a {self.shape} label like them" if self.shape else ""),
                "pattern": "the task's answer_pattern", "none": "not measured"}[self.kind]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "json_type": self.json_type, "labels": list(self.labels), "pattern": self.pattern,
                "shape": self.shape}


def _norm(text: str) -> str:
    return " ".join(str(text or "").strip().strip(".!\"'“”").split()).casefold()


def _json_type(value: Any) -> str | None:
    return "object" if isinstance(value, dict) else "array" if isinstance(value, list) else None


def form_of(references: Sequence[str], *, json_task: bool, pattern: str | None = None) -> TaskForm:
    """The output form of a task from its reference answers (see the module docstring)."""
    if pattern:
        return TaskForm("pattern", pattern=pattern)
    refs = [r for r in references if isinstance(r, str) and r.strip()]
    types = [_json_type(extract_json(r).value) if extract_json(r).strict else None for r in refs]
    json_refs = [t for t in types if t]
    if json_task or (refs and len(json_refs) >= 0.5 * len(refs)):
        kind = max(("object", "array"), key=json_refs.count) if json_refs else "object"
        return TaskForm("json", json_type=kind)
    labels = sorted({_norm(r) for r in refs})
    if (refs and len(labels) <= MAX_LABELS and len(refs) >= MIN_LABEL_REPEATS * len(labels)
            and all(0 < len(lab.split()) <= MAX_LABEL_WORDS and any(ch.isalpha() for ch in lab) for lab in labels)):
        shape = next((name for name, rx in LABEL_SHAPES.items()
                      if sum(bool(re.fullmatch(rx, lab)) for lab in labels) >= SHAPE_SHARE * len(labels)), None)
        return TaskForm("labels", labels=tuple(labels), shape=shape)
    return TaskForm("none")


def task_form(task) -> TaskForm:
    """The form of a harness.tasks.Task: its answer_pattern, JSON metrics / schema, or its references."""
    json_task = task.json_schema is not None or any(m.get("name") in JSON_METRICS for m in task.metrics)
    refs = [ex.target for split in ("train", "eval") for ex in task.load_split(split)]
    return form_of(refs, json_task=json_task, pattern=task.raw.get("answer_pattern"))


def _checks(item: dict) -> list[dict]:
    c = item.get("check")
    return [c] if isinstance(c, dict) else [x for x in (c or []) if isinstance(x, dict)]


def _accepted(item: dict) -> set[str]:
    """Answers the probe itself accepts (a yes/no label is no bleed on a yes/no probe)."""
    out: set[str] = set()
    for c in _checks(item):
        for key in ("answers", "words_from"):
            out |= {_norm(a) for a in c.get(key) or [] if isinstance(a, str)}
    return out


def bleeds(form: TaskForm, item: dict, output: str) -> float | None:
    """1.0 when `output` takes the task's form where probe `item` did not ask for it, 0.0 when not, None when
    it cannot be told (free-text task, or a probe that asks for that very form)."""
    if form.kind == "none":
        return None
    if form.kind == "json":
        if any(c.get("type") in JSON_PROBE_CHECKS for c in _checks(item)):
            return None
        p = extract_json(output)
        return float(p.found and _json_type(p.value) == form.json_type and bool(p.value or p.strict))
    text = (output or "").strip()
    if form.kind == "pattern":
        try:
            hit = bool(text) and bounded_match(form.pattern, text, re.S, full=True)
        except re.error:
            return None
        return None if hit is None else float(hit)  # None: the pattern ran out of time on this answer
    got = _norm(text)
    if got in _accepted(item):
        return 0.0
    shaped = form.shape is not None and re.fullmatch(LABEL_SHAPES[form.shape], got) is not None
    return float(got in form.labels or shaped)
