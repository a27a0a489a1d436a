"""LLM-as-judge: rubrics as data, strict verdict parsing, both-order pairwise, calibration, cache.

Modules: rubrics (rubrics/<name>.yaml), prompting (delimited untrusted text), parsing (the strict verdict
rule), client (cache + cost), core (Judge: retries, pointwise, both orders), labels (human labels file),
agreement (kappa, its CI, labels needed: pure statistics), calibration (running the judge on human labels,
calibration files), length (length-controlled win rates), settings (conf/judge, backend),
run (a sweep's outputs -> judge.jsonl + judge_summary.json).

Rubrics live in rubrics/<name>.yaml (see `load_rubric`). A judge call is an ordinary chat
request through harness.backends (model_key "base" of the judge backend), so any backend
works: embedded hf (default), llama.cpp server, vLLM, any OpenAI-compatible endpoint.

Verdict rule (STRICT, see `extract_json_object`): the judge's completion -- and only the
completion, never the prompt or a candidate -- must be exactly one JSON object, optionally
wrapped in ONE markdown code fence (```json ... ``` or ``` ... ```), with nothing but whitespace
before or after. No prose, no second object, no duplicate keys, and not a verbatim copy of a JSON object
found inside a candidate (`check_not_echo`). Pointwise verdicts must have
exactly the keys {"score", "reason"}, score an integer (not bool/float) inside the rubric's
scale; pairwise verdicts exactly {"winner", "reason"} with winner "A", "B" or "tie"
(case-insensitive). Anything else is unparseable: the call is retried up to `retries` times
(seed + attempt, temperature raised to `retry_temperature`, a format reminder appended to the
prompt) and, if still unparseable, recorded as missing (score None) -- never a silent score.

Candidate text is data, never instructions: every untrusted text (question, reference, format,
candidates) is wrapped as <<<LABEL ... LABEL>>>; any run of 3+ '<' or '>' inside it is
replaced by the same number of '‹' / '›' so a candidate can neither close its own block nor
open a fake one. The system prompt tells the judge to ignore instructions inside the blocks.

Pairwise: each pair is judged in both orders (A=x,B=y and A=y,B=x). Mapped back to x/y, a win
counts only when both orders agree; disagreement is a tie. Position consistency = share of pairs
(both orders parsed) whose mapped verdicts are identical. If either order is missing, the pair is
missing (not a tie) in sweep results; calibration maps it to "tie" (see `calibration_metrics`).

Logprobs (G-Eval style): when the backend returns per-token logprobs, the probability-weighted
score sum_v v * p(v) / sum_v p(v) is computed over the scale's digit tokens in the top-k at the
position of the score digit (scales with max <= 9 only; else None).

Cache: every judge call goes through harness.backends.cache.CachedBackend (one JSONL file,
default <scores>/judge_cache.jsonl) keyed by (judge model identity, rubric name+version,
messages, generation params, backend name), so a re-run pays nothing twice. Error completions
are never cached.
"""
from __future__ import annotations

import importlib
from typing import Any

# name -> the submodule that defines it. Loaded on first use (PEP 562), so importing one submodule (the task
# reader needs judge.rubrics) does not import the whole package: no import of run/settings/calibration, no cycle.
_HOME = {
    "CostStats": "client",
    "DEFAULT_MIN_KAPPA": "settings",
    "Judge": "core",
    "JudgeClient": "client",
    "JudgeUnavailable": "run",
    "REMINDER": "prompting",
    "Rubric": "rubrics",
    "SMALL_JUDGE_NOTE": "settings",
    "SYSTEM_PROMPT": "rubrics",
    "VerdictError": "parsing",
    "backend_cfg_of": "settings",
    "calibrate": "calibration",
    "calibration_metrics": "agreement",
    "check_not_echo": "parsing",
    "combine_orders": "core",
    "default_gen": "core",
    "default_pairs": "run",
    "defined_kappa": "agreement",
    "delimit": "prompting",
    "escape_delimiters": "prompting",
    "extract_json_object": "parsing",
    "fill_template": "prompting",
    "fit_logistic": "length",
    "json_objects_in": "parsing",
    "judge_from_cfg": "settings",
    "kappa_ci": "agreement",
    "labels_needed": "agreement",
    "length_controlled": "length",
    "length_explained": "length",
    "length_feature": "length",
    "list_rubrics": "rubrics",
    "load_calibration": "calibration",
    "load_judge_cfg": "settings",
    "load_labels": "labels",
    "load_rubric": "rubrics",
    "make_judge_backend": "settings",
    "map_back": "core",
    "pairwise_messages": "prompting",
    "pairwise_summary": "run",
    "pairwise_tally": "core",
    "parse_pairwise": "parsing",
    "parse_pointwise": "parsing",
    "plain_cfg": "settings",
    "pointwise_messages": "prompting",
    "pointwise_metrics": "agreement",
    "question_text": "prompting",
    "resolve_judge_model_cfg": "settings",
    "rubric_from_dict": "rubrics",
    "rubric_path": "rubrics",
    "run_judge": "run",
    "snapshot_model_cfg": "settings",
    "system_text": "prompting",
    "weighted_score": "parsing",
}

__all__ = [
    "CostStats", "DEFAULT_MIN_KAPPA", "Judge", "JudgeClient", "JudgeUnavailable", "REMINDER", "Rubric",
    "SMALL_JUDGE_NOTE", "SYSTEM_PROMPT", "VerdictError", "backend_cfg_of", "calibrate", "calibration_metrics",
    "check_not_echo", "combine_orders", "default_gen", "default_pairs", "defined_kappa", "delimit",
    "escape_delimiters", "extract_json_object", "fill_template", "fit_logistic", "json_objects_in", "judge_from_cfg",
    "kappa_ci", "labels_needed", "length_controlled", "length_explained", "length_feature", "list_rubrics",
    "load_calibration", "load_judge_cfg", "load_labels", "load_rubric", "make_judge_backend", "map_back",
    "pairwise_messages", "pairwise_summary", "pairwise_tally", "parse_pairwise", "parse_pointwise", "plain_cfg",
    "pointwise_messages", "pointwise_metrics", "question_text", "resolve_judge_model_cfg", "rubric_from_dict",
    "rubric_path", "run_judge", "snapshot_model_cfg", "system_text", "weighted_score",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'harness.judge' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"harness.judge.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
