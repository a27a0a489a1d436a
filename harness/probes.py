"""Forgetting probes: small general-ability items every model is checked on, base vs adapters.

A probe set is evalsets/probes/<name>.jsonl (written by evalsets/probes/make_probes.py), one item a line:
  {"id": "ifeval-003", "family": "ifeval"|"arithmetic"|"general"|"reading",
   "kind": "lowercase",                                   # optional sub-family, for information
   "messages": [{"role": "user", "content": "..."}],
   "check": {"type": "word_count", "max": 20},            # or a list of checks (all must pass)
   "reference": "...",                                    # optional, shown in reports
   "max_new_tokens": 32}                                  # optional generation budget of this item
`check_probe(item, output)` is 1.0 when every check passes, else 0.0 (IFEval "strict, prompt-level");
`probe_gen(item)` is the item's generation settings (greedy PROBE_GEN with its own max_new_tokens).
Items are never selected on a model's outcome (a set the base passes entirely makes every flip look like
forgetting). Forgetting is judged as non-inferiority (harness.analysis, with harness.stats' power analysis).
A check type is a scorer in harness.scoring.probes (a pure function with keyword options, wrapped in a `Check`
class returning a `Score`), named in harness.scoring.registry's PROBE_CHECKS; this module reads probe sets.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from harness.backends.base import GenParams
from harness.io import UserError, iter_jsonl
from harness.scoring.base import Score
from harness.scoring.registry import PROBE_CHECKS, known_names, scorer_class

FAMILIES = ("ifeval", "arithmetic", "general", "reading")
PROBE_GEN = GenParams(max_new_tokens=96, temperature=0.0)  # for items without their own max_new_tokens
MAX_NEW_TOKENS_LIMIT = 512


def _checks(item: dict) -> list[dict]:
    c = item.get("check")
    return [c] if isinstance(c, dict) else list(c or [])


def score_check(check: dict, output: str) -> Score:
    """One check spec ({type, options}) on `output`, by the scorer the registry names for its type."""
    return scorer_class(check["type"], "check")(**{k: v for k, v in check.items() if k != "type"}).score(output)


def run_check(check: dict, output: str) -> bool:
    return score_check(check, output).value == 1.0


def check_probe(item: dict, output: str) -> float:
    """1.0 when every check of the item passes on `output`, else 0.0 (the first failing check ends it)."""
    return float(all(run_check(c, output) for c in _checks(item)))


def probe_gen(item: dict) -> GenParams:
    """Generation settings of one probe item: greedy PROBE_GEN with the item's max_new_tokens when it has one.
    Short budgets keep the probe run fast; the generator sizes each budget so that a compliant answer fits."""
    n = item.get("max_new_tokens")
    return PROBE_GEN if n is None else dataclasses.replace(PROBE_GEN, max_new_tokens=int(n))


def validate_probe(item: Any) -> str | None:
    """A problem with a probe item, or None."""
    if not isinstance(item, dict):
        return "must be an object"
    for k in ("id", "family", "messages", "check"):
        if k not in item:
            return f"{k}: required"
    if not isinstance(item["id"], str) or not item["id"]:
        return "id: must be a non-empty string"
    if item["family"] not in FAMILIES:
        return f"family: unknown {item['family']!r} (known: {', '.join(FAMILIES)})"
    msgs = item["messages"]
    if (not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs)
            or msgs[-1].get("role") != "user"):
        return "messages: must be a non-empty chat ending with a user message"
    n = item.get("max_new_tokens")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_NEW_TOKENS_LIMIT):
        return f"max_new_tokens: must be an integer from 1 to {MAX_NEW_TOKENS_LIMIT}"
    checks = _checks(item)
    if not checks:
        return "check: required"
    for c in checks:
        t = c.get("type") if isinstance(c, dict) else None
        if t not in PROBE_CHECKS:
            return f"check.type: unknown {t!r} (known: {', '.join(known_names('check'))})"
        params = scorer_class(t, "check").parameters()
        opts = {k for k in c if k != "type"}
        unknown = opts - set(params)
        if unknown:
            return f"check.{sorted(unknown)[0]}: unknown option for {t}"
        missing = [p.name for p in params.values()
                   if p.kind == p.KEYWORD_ONLY and p.default is p.empty and p.name not in opts]
        if missing:
            return f"check.{missing[0]}: required for {t}"
    return None


def probes_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "evalsets" / "probes"


def load_probes(name_or_path: str | Path = "default") -> list[dict]:
    """Probe items by set name (evalsets/probes/<name>.jsonl) or path; validated; a bad line is FILE:LINE."""
    return read_probe_set(name_or_path, validate_probe, "probe set")


def read_probe_set(name_or_path: str | Path, validate: Callable[[Any], str | None], what: str) -> list[dict]:
    """A probe file by set name (evalsets/probes/<name>.jsonl, also under the working directory) or path: every
    item checked by `validate`, ids unique, not empty; a bad line is FILE:LINE. One reader for the generated and
    the multiple-choice probes."""
    p = Path(name_or_path)
    if not p.suffix:
        p = probes_dir() / f"{name_or_path}.jsonl"
        if not p.is_file() and (Path.cwd() / "evalsets" / "probes" / f"{name_or_path}.jsonl").is_file():
            p = Path.cwd() / "evalsets" / "probes" / f"{name_or_path}.jsonl"
    if not p.is_file():
        raise UserError(f"{p}: {what} not found")
    items = []
    ids = set()
    for i, item in iter_jsonl(p, strict=True):  # written whole, never appended: any bad line is FILE:LINE
        problem = validate(item)
        if problem:
            raise UserError(f"{p}:{i}: {problem}")
        if item["id"] in ids:
            raise UserError(f"{p}:{i}: duplicate id {item['id']!r}")
        ids.add(item["id"])
        items.append(item)
    if not items:
        raise UserError(f"{p}: {what} is empty")
    return items


# --------------------------------------------------------------------------- IFEval mapping


def ifeval_to_check(instruction_id: str, kwargs: dict) -> dict | None:
    """Our check spec for an IFEval instruction (google-research instruction_id + kwargs); None if unmapped."""
    kw = {k: v for k, v in (kwargs or {}).items() if v is not None}
    if instruction_id == "punctuation:no_comma":
        return {"type": "no_comma"}
    if instruction_id == "length_constraints:number_words":
        n = int(kw["num_words"])
        return {"type": "word_count", "min": n} if kw.get("relation") == "at least" else {"type": "word_count", "max": n - 1}
    if instruction_id == "keywords:forbidden_words":
        return {"type": "forbidden_words", "words": list(kw["forbidden_words"])}
    if instruction_id == "keywords:existence":
        return {"type": "required_keywords", "keywords": list(kw["keywords"])}
    if instruction_id == "change_case:english_lowercase":
        return {"type": "lowercase"}
    if instruction_id == "change_case:english_capital":
        return {"type": "uppercase"}
    if instruction_id == "detectable_format:number_bullet_lists":
        return {"type": "bullet_count", "n": int(kw["num_bullets"]), "relation": "exactly"}
    if instruction_id == "startend:end_checker":
        return {"type": "ends_with", "phrase": kw["end_phrase"]}
    if instruction_id == "detectable_format:json_format":
        return {"type": "json_only"}
    return None
