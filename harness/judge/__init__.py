"""LLM-as-judge: rubrics as data, strict verdict parsing, both-order pairwise, calibration, cache.

Modules: rubrics (rubrics/<name>.yaml), prompting (delimited untrusted text), parsing (the strict verdict
rule), client (cache + cost), core (Judge: retries, pointwise, both orders), labels (human labels file),
calibration (agreement with people), length (length-controlled win rates), settings (conf/judge, backend),
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

from harness.judge.calibration import (calibrate, calibration_metrics, defined_kappa, kappa_ci, labels_needed,
                                       load_calibration, pointwise_metrics)
from harness.judge.client import CostStats, JudgeClient
from harness.judge.core import Judge, combine_orders, default_gen, map_back, pairwise_tally
from harness.judge.labels import load_labels
from harness.judge.length import fit_logistic, length_controlled, length_explained, length_feature
from harness.judge.parsing import (VerdictError, check_not_echo, extract_json_object, json_objects_in, parse_pairwise,
                                   parse_pointwise, weighted_score)
from harness.judge.prompting import (REMINDER, delimit, escape_delimiters, fill_template, pairwise_messages,
                                     pointwise_messages, question_text, system_text)
from harness.judge.rubrics import SYSTEM_PROMPT, Rubric, list_rubrics, load_rubric, rubric_from_dict, rubric_path
from harness.judge.run import JudgeUnavailable, default_pairs, pairwise_summary, run_judge
from harness.judge.settings import (DEFAULT_MIN_KAPPA, SMALL_JUDGE_NOTE, backend_cfg_of, judge_from_cfg, load_judge_cfg,
                                    make_judge_backend, plain_cfg, resolve_judge_model_cfg, snapshot_model_cfg)

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
