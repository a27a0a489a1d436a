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
Checkers are pure functions with keyword options; CHECKERS maps a check type to its function.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import re
import unicodedata
from pathlib import Path
from typing import Any, Callable

from harness.backends.base import GenParams
from harness.io import UserError, iter_jsonl
from harness.metrics import extract_answer_number, extract_json

FAMILIES = ("ifeval", "arithmetic", "general", "reading")
PROBE_GEN = GenParams(max_new_tokens=96, temperature=0.0)  # for items without their own max_new_tokens
MAX_NEW_TOKENS_LIMIT = 512


def _words(text: str) -> list[str]:
    return re.findall(r"\b\w+(?:['’-]\w+)*\b", text or "")


def _contains_word(text: str, word: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(word.casefold()) + r"(?!\w)", (text or "").casefold()) is not None


# --------------------------------------------------------------------------- checkers (pure)


def word_count(output: str, *, min: int | None = None, max: int | None = None) -> bool:
    """The answer has between `min` and `max` words (inclusive); empty never passes a min."""
    n = len(_words(output))
    return (min is None or n >= min) and (max is None or n <= max) and n > 0


def forbidden_words(output: str, *, words: list[str]) -> bool:
    """None of `words` appears as a whole word (case-insensitive)."""
    return bool((output or "").strip()) and not any(_contains_word(output, w) for w in words)


def required_keywords(output: str, *, keywords: list[str]) -> bool:
    """Every keyword appears (case-insensitive, whole word / phrase)."""
    return all(_contains_word(output, k) for k in keywords)


def json_only(output: str, *, allow_fence: bool = True) -> bool:
    """The whole answer is one JSON value (a lone ```json fence is accepted when `allow_fence`)."""
    p = extract_json(output)
    return p.strict and (allow_fence or not p.code_fence)


_BULLET_RX = re.compile(r"^\s*(?:[*•-]|\d+[.)])\s+\S", re.M)


def bullet_count(output: str, *, n: int, relation: str = "exactly") -> bool:
    """Number of bullet lines ('* ', '- ', '• ', '1. ') compared with n: exactly | at least | at most."""
    k = len(_BULLET_RX.findall(output or ""))
    if relation == "exactly":
        return k == n
    if relation == "at least":
        return k >= n
    if relation == "at most":
        return 0 < k <= n
    raise ValueError(f"unknown relation {relation!r} (exactly, at least, at most)")


def lowercase(output: str) -> bool:
    """All letters lowercase (and there are some)."""
    letters = [c for c in output or "" if c.isalpha()]
    return bool(letters) and all(not c.isupper() for c in letters)


def uppercase(output: str) -> bool:
    """All letters uppercase (and there are some)."""
    letters = [c for c in output or "" if c.isalpha() and unicodedata.category(c) in ("Lu", "Ll")]
    return bool(letters) and all(c.isupper() for c in letters)


def _clean_end(text: str) -> str:
    return " ".join((text or "").strip().strip("\"'“”").split()).casefold()


def ends_with(output: str, *, phrase: str) -> bool:
    """The answer ends with `phrase` (case-insensitive, surrounding whitespace/quotes ignored)."""
    return _clean_end(output).endswith(_clean_end(phrase)) and bool(_clean_end(output))


def starts_with(output: str, *, phrase: str) -> bool:
    """The answer starts with `phrase` as whole words (case-insensitive): 'Yes, ...' passes 'Yes', 'Yesterday' not."""
    text, head = _clean_end(output), _clean_end(phrase)
    after = text[len(head):len(head) + 1]
    return bool(text) and text.startswith(head) and not (head[-1:].isalnum() and after.isalnum())


def no_comma(output: str) -> bool:
    """No comma anywhere (and a non-empty answer)."""
    return bool((output or "").strip()) and "," not in output and "，" not in output


def numeric(output: str, *, answer: float, tolerance: float = 1e-6, echo: list[str] | None = None) -> bool:
    """The answer's final number ('#### n' or the last number) equals `answer`, once the question's own wording
    (`echo`: "9 divided by 3", a word problem's sentences) is removed: echoing "9 divided by 3" does not answer 3."""
    got = extract_answer_number(_strip_phrases(output or "", echo or []))
    return got is not None and abs(got - float(answer)) <= tolerance


def contains_any(output: str, *, answers: list[str]) -> bool:
    """Any accepted answer appears as a whole word/phrase (case-insensitive)."""
    return any(_contains_word(output, a) for a in answers)


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    return isinstance(v, str) and re.fullmatch(r"\s*-?\d+(?:[.,]\d+)?\s*", v) is not None


def json_keys(output: str, *, keys: list[str], distinct: bool = False, numbers: list[str] | None = None) -> bool:
    """The whole answer is one JSON object (a lone ```json fence accepted) that has every key in `keys`; with
    `distinct`, their values are non-empty and differ from each other (`{"day": "Monday", "weather": "Monday"}`
    has the keys but says nothing); keys in `numbers` hold a number."""
    p = extract_json(output)
    if not (p.strict and isinstance(p.value, dict) and all(k in p.value for k in keys)):
        return False
    vals = [p.value[k] for k in keys]
    if distinct:
        texts = [_squash(json.dumps(v) if not isinstance(v, str) else v) for v in vals]
        if any(not t or t in ('""', "null", "{}", "[]") for t in texts) or len(set(texts)) < len(texts):
            return False
    return all(_is_number(p.value[k]) for k in numbers or [])


def plain_text(output: str) -> bool:
    """A non-empty answer with no JSON object or array in it: prose was asked for, so `{}` or the task's JSON
    is not an answer, whatever words it contains."""
    text = (output or "").strip()
    if not text or "{" in text or "}" in text:
        return False
    p = extract_json(text)  # "49" and '"quoted"' are JSON values too: only an array counts against prose here
    return not (p.found and isinstance(p.value, (dict, list)))


def mentions(output: str, *, words: list[str]) -> bool:
    """The answer is about the topic: one of its words is one of `words` (case-insensitive); a word ending in
    "*" is a prefix ("flower*" matches "flowers", "flowering")."""
    got = {w.casefold() for w in _words(output)}
    exact = {w.casefold() for w in words if not w.endswith("*")}
    stems = [w[:-1].casefold() for w in words if w.endswith("*")]
    return bool(got & exact) or any(g.startswith(st) for g in got for st in stems)


def _strip_phrases(text: str, phrases: list[str]) -> str:
    out = " ".join((text or "").split())
    for ph in phrases or []:
        out = re.sub(re.escape(" ".join(ph.split())), " ", out, flags=re.I)
    return out


def first_named(output: str, *, answers: list[str], options: list[str], ignore: list[str] | None = None,
                exclusive: bool = False) -> bool:
    """Of the candidate `options` (accepted `answers` are options too), the first one the answer names is an
    accepted answer, after removing the `ignore` phrases (the question restated, e.g. "after February", or a
    passage's other facts restated). "February comes after March" names February first: it fails, though it
    contains "March". With `exclusive`, no option other than an accepted answer may be named at all."""
    text = _strip_phrases(output, ignore or [])
    ok = {a.casefold() for a in answers}
    hits = []
    for opt in set(options) | set(answers):
        m = re.search(r"(?<!\w)" + re.escape(opt.casefold()) + r"(?!\w)", text.casefold())
        if m:
            hits.append((m.start(), -len(opt), opt.casefold()))
    if not hits:
        return False
    hits.sort()
    if exclusive and any(h[2] not in ok for h in hits):
        return False
    return hits[0][2] in ok


def names_fact(output: str, *, answers: list[str], others: list[str], own: list[str], context: list[str]) -> bool:
    """Reading: the answer names the asked fact (`answers`) and not the distractor (`others`). The passage's other
    facts (`context`) may be restated without penalty, but then the answer must name the fact outside its own
    restated clause (`own`) too: "Leo has a blue ball; Mia's kite is red" answers, copying the passage does not."""
    squashed = " ".join((output or "").split())
    text = _strip_phrases(squashed, context)
    if text != squashed:
        text = _strip_phrases(text, own)
    return first_named(text, answers=answers, options=others, exclusive=True)


def bullets_from(output: str, *, words: list[str]) -> bool:
    """Every bullet line names a member of the asked category (`words`, whole words, case-insensitive), and no
    two bullets name the same one: "- web\n- mobile" is a list, not a list of fruits."""
    lines = [ln for ln in (output or "").splitlines() if _BULLET_RX.match(ln)]
    if not lines:
        return False
    named = []
    for ln in lines:
        hit = next((w.casefold() for w in sorted(words, key=len, reverse=True) if _contains_word(ln, w)), None)
        if hit is None:
            return False
        named.append(hit)
    return len(set(named)) == len(named)


def _squash(text: str) -> str:
    return " ".join((text or "").split()).casefold()


_OPEN_QUOTES, _CLOSE_QUOTES = "\"'“‘", "\"'”’"


def equals(output: str, *, text: str) -> bool:
    """The answer is `text` (case and runs of whitespace ignored; one pair of surrounding quotes allowed)."""
    out = (output or "").strip()
    if len(out) >= 2 and out[0] in _OPEN_QUOTES and out[-1] in _CLOSE_QUOTES:
        out = out[1:-1]
    return bool(out.strip()) and _squash(out) == _squash(text)


def quoted(output: str) -> bool:
    """The whole answer (surrounding whitespace ignored) is wrapped in double quotes ("..." or “...”), text inside."""
    out = (output or "").strip()
    return len(out) > 2 and out[0] in "\"“" and out[-1] in "\"”" and bool(out[1:-1].strip())


CHECKERS: dict[str, Callable[..., bool]] = {
    f.__name__: f
    for f in (word_count, forbidden_words, required_keywords, json_only, bullet_count, lowercase, uppercase,
              ends_with, starts_with, no_comma, numeric, contains_any, json_keys, equals, quoted, plain_text,
              mentions, first_named, names_fact, bullets_from)
}


def _checks(item: dict) -> list[dict]:
    c = item.get("check")
    return [c] if isinstance(c, dict) else list(c or [])


def run_check(check: dict, output: str) -> bool:
    opts = {k: v for k, v in check.items() if k != "type"}
    return bool(CHECKERS[check["type"]](output, **opts))


def check_probe(item: dict, output: str) -> float:
    """1.0 when every check of the item passes on `output`, else 0.0."""
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
        if t not in CHECKERS:
            return f"check.type: unknown {t!r} (known: {', '.join(sorted(CHECKERS))})"
        params = inspect.signature(CHECKERS[t]).parameters
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
