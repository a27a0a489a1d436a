"""Judge prompts: untrusted text (question, reference, format, candidates) is delimited data, never instructions."""
from __future__ import annotations

import re
from typing import Any

from harness.judge.rubrics import PLACEHOLDER_RE, Rubric

REMINDER = (
    "\n\nReminder: your previous reply could not be read. Reply with ONLY the JSON object in the form "
    "given above: no other text before or after it."
)

LT_RUN = re.compile(r"<{3,}")
GT_RUN = re.compile(r">{3,}")


def escape_delimiters(text: str) -> str:
    """Make `text` unable to contain '<<<' or '>>>' (runs become '‹‹‹' / '›››')."""
    text = LT_RUN.sub(lambda m: "\u2039" * len(m.group()), text)
    return GT_RUN.sub(lambda m: "\u203a" * len(m.group()), text)


def delimit(label: str, text: str, max_chars: int | None = None) -> str:
    text = "" if text is None else str(text)
    if max_chars and len(text) > max_chars:
        text = text[:max_chars] + " [... truncated]"
    return f"<<<{label}\n{escape_delimiters(text)}\n{label}>>>"


def fill_template(template: str, values: dict[str, str]) -> str:
    """Single-pass substitution of known {placeholders}; values are never re-scanned, other braces stay."""
    return PLACEHOLDER_RE.sub(lambda m: values[m.group(1)] if m.group(1) in values else m.group(0), template)


def question_text(prompt: Any) -> str:
    """The user-side text of a prompt (a str, or chat messages without the system message)."""
    if isinstance(prompt, str):
        return prompt
    msgs = [m for m in (prompt or []) if m.get("role") != "system"]
    if len(msgs) == 1:
        return str(msgs[0].get("content", ""))
    return "\n\n".join(f"{str(m.get('role', 'user')).upper()}: {m.get('content', '')}" for m in msgs)


def system_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return ""
    return "\n".join(str(m.get("content", "")) for m in (prompt or []) if m.get("role") == "system")


def _common_values(rubric: Rubric, question: str, reference: str | None, fmt: str | None, max_chars: int | None) -> dict:
    ref_ok = rubric.uses_reference and reference is not None and str(reference).strip() != ""
    ref_block = delimit("REFERENCE", reference, max_chars) if ref_ok else "(no reference answer)"
    return {
        "question": delimit("QUESTION", question, max_chars),
        "reference": ref_block,
        "reference_section": fill_template(rubric.reference_section, {"reference": ref_block}) if ref_ok else "",
        "criteria": rubric.criteria,
        "scale": rubric.scale_text(),
        "format": delimit("FORMAT", fmt or "(the format requested in the question)", max_chars),
    }


def pointwise_messages(rubric: Rubric, question: str, answer: str, reference: str | None = None,
                       fmt: str | None = None, max_chars: int | None = None) -> list[dict]:
    values = _common_values(rubric, question, reference, fmt, max_chars)
    values["answer"] = delimit("CANDIDATE", answer, max_chars)
    return [{"role": "system", "content": rubric.system},
            {"role": "user", "content": fill_template(_template(rubric, values), values)}]


def pairwise_messages(rubric: Rubric, question: str, answer_a: str, answer_b: str, reference: str | None = None,
                      fmt: str | None = None, max_chars: int | None = None) -> list[dict]:
    values = _common_values(rubric, question, reference, fmt, max_chars)
    values["answer_a"] = delimit("CANDIDATE_A", answer_a, max_chars)
    values["answer_b"] = delimit("CANDIDATE_B", answer_b, max_chars)
    return [{"role": "system", "content": rubric.system},
            {"role": "user", "content": fill_template(_template(rubric, values), values)}]


def _template(rubric: Rubric, values: dict) -> str:
    # An absent reference section takes its own line with it (no stray blank lines).
    return rubric.prompt.replace("{reference_section}\n", "") if not values["reference_section"] else rubric.prompt
