"""Task metrics: small pure functions with keyword options, plus a registry that task.yaml names.

Every metric value is a float in [0, 1], or None when it does not apply (e.g. numeric_match on a
reference without a number); summaries average the non-None values.

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
import math
import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from harness.io import UserError

Value = float | None

# --------------------------------------------------------------------------- text normalisation

def _strip_punct(text: str) -> str:
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith("P") and ch not in string.punctuation)


def normalize_text(text: str, *, ignore_case: bool = True, ignore_punctuation: bool = False) -> str:
    """NFKC, collapse whitespace, optionally lowercase and drop punctuation (unicode-aware)."""
    text = unicodedata.normalize("NFKC", text or "")
    if ignore_case:
        text = text.casefold()
    if ignore_punctuation:
        text = _strip_punct(text)
    return " ".join(text.split())


def _tokens(text: str) -> list[str]:
    # unicode word tokens; rouge-score's default tokenizer drops every non-ASCII character
    return re.findall(r"\w+", unicodedata.normalize("NFKC", text or "").casefold())


# --------------------------------------------------------------------------- plain-text metrics


def exact_match(output: str, reference: str, *, normalize: bool = True, ignore_case: bool = True,
                ignore_punctuation: bool = False) -> float:
    """1.0 when output equals reference (after whitespace/unicode normalisation when `normalize`)."""
    if not normalize:
        a, b = output or "", reference or ""
        if ignore_case:
            a, b = a.casefold(), b.casefold()
        if ignore_punctuation:
            a, b = _strip_punct(a), _strip_punct(b)
        return float(a == b)
    a = normalize_text(output, ignore_case=ignore_case, ignore_punctuation=ignore_punctuation)
    b = normalize_text(reference, ignore_case=ignore_case, ignore_punctuation=ignore_punctuation)
    return float(a == b)


def token_f1(output: str, reference: str) -> float:
    """SQuAD-style bag-of-words F1 over lowercased unicode word tokens (both empty = 1.0)."""
    pred, gold = _tokens(output), _tokens(reference)
    if not pred and not gold:
        return 1.0
    if not pred or not gold:
        return 0.0
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    p, r = common / len(pred), common / len(gold)
    return 2 * p * r / (p + r)


class _UnicodeTokenizer:
    def tokenize(self, text: str) -> list[str]:
        return _tokens(text)


_ROUGE = None


def rouge_l(output: str, reference: str) -> float:
    """ROUGE-L F-measure (rouge-score), with a unicode word tokenizer (both empty = 1.0)."""
    global _ROUGE
    if not _tokens(output) and not _tokens(reference):
        return 1.0
    if _ROUGE is None:
        from rouge_score.rouge_scorer import RougeScorer

        _ROUGE = RougeScorer(["rougeL"], tokenizer=_UnicodeTokenizer())
    return float(_ROUGE.score(reference or "", output or "")["rougeL"].fmeasure)


_FLAG_MAP = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


def regex_flags(flags: str | Sequence[str] | int | None) -> int:
    if flags is None or flags == "":
        return 0
    if isinstance(flags, int):
        return flags
    letters = "".join(flags) if not isinstance(flags, str) else flags
    out = 0
    for ch in letters.replace("re.", "").replace("|", "").replace(",", "").replace(" ", ""):
        key = ch.lower()
        if key not in _FLAG_MAP:
            raise ValueError(f"unknown regex flag {ch!r} (known: i, m, s, x)")
        out |= _FLAG_MAP[key]
    return out


REGEX_TIMEOUT_S = 1.0  # per output and pattern


def bounded_match(pattern: str, text: str, flags: int = 0, full: bool = False) -> bool | None:
    """re.search (re.fullmatch when `full`) semantics, run by the `regex` engine (re-compatible V0) under a time
    limit: a task's pattern that backtracks catastrophically on some output ('(a|aa)+$' on 40 a's and a b) gives
    None after REGEX_TIMEOUT_S instead of hanging the evaluation. A bad pattern raises re.error."""
    import regex

    try:
        rx = regex.compile(pattern, flags)
    except regex.error as exc:
        raise re.error(str(exc)) from None
    try:
        m = rx.fullmatch(text, timeout=REGEX_TIMEOUT_S) if full else rx.search(text, timeout=REGEX_TIMEOUT_S)
    except TimeoutError:
        return None
    return m is not None


def regex_match(output: str, *, pattern: str, flags: str | Sequence[str] | int | None = None,
                full: bool = False) -> float:
    """1.0 when `pattern` is found in the output (re.search; re.fullmatch on the stripped output when `full`);
    a match that runs past REGEX_TIMEOUT_S is a metric error (unscored), never a hang."""
    text = output or ""
    hit = bounded_match(pattern, text.strip() if full else text, regex_flags(flags), full)
    if hit is None:
        raise ValueError(f"pattern ran longer than {REGEX_TIMEOUT_S:g} s on this output (catastrophic backtracking?)")
    return float(hit)


_NUM_RX = re.compile(r"[-−]?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-−]?\.\d+")


def _to_float(tok: str) -> float | None:
    tok = tok.replace("−", "-").replace("$", "").replace(",", "").replace(" ", "")
    try:
        return float(tok)
    except ValueError:
        return None


def extract_answer_number(text: str) -> float | None:
    """GSM8K convention: the number after the last '####' if present, else the last number in the text."""
    text = text or ""
    if "####" in text:
        tail = text.rsplit("####", 1)[1]
        m = _NUM_RX.findall(tail)
        if m:
            return _to_float(m[0])
    m = _NUM_RX.findall(text)
    return _to_float(m[-1]) if m else None


def numeric_match(output: str, reference: str, *, tolerance: float = 1e-6, relative: bool = False) -> Value:
    """1.0 when the output's answer number equals the reference's (within `tolerance`; relative if asked).

    None when the reference holds no number (not applicable); 0.0 when the output holds none.
    """
    ref = extract_answer_number(reference)
    if ref is None:
        return None
    got = extract_answer_number(output)
    if got is None:
        return 0.0
    tol = tolerance * max(abs(ref), 1e-12) if relative else tolerance
    return float(math.isclose(got, ref, rel_tol=0.0, abs_tol=tol) or got == ref)


# --------------------------------------------------------------------------- JSON


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
    from harness.jsonscan import brackets

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


def schema_violation(output: str, schema: dict) -> str | None:
    """The first (most relevant) schema violation as '<json path>: <message>', or None when valid.

    The JSON is read leniently (see extract_json), so prose around a valid object is a format
    problem for json_valid, not a schema violation.
    """
    parsed = extract_json(output)
    if not parsed.found:
        return f"not JSON ({parsed.error})"
    from jsonschema import validators
    from jsonschema.exceptions import best_match
    from referencing import Registry
    from referencing.exceptions import Unresolvable

    cls = validators.validator_for(schema)
    try:
        errors = list(cls(schema, registry=Registry(retrieve=_no_remote_refs)).iter_errors(parsed.value))
    except Unresolvable as exc:
        raise UserError(f"json_schema: $ref {getattr(exc, 'ref', '')!r} cannot be resolved inside the schema (a $ref "
                        "to a URL or file is never fetched: put the definition under $defs)") from None
    if not errors:
        return None
    err = best_match(errors)
    path = getattr(err, "json_path", None) or "$" + "".join(f"[{p!r}]" for p in err.absolute_path)
    return f"{path}: {err.message}"


def _no_remote_refs(uri: str):
    """jsonschema's default fetches a $ref URL over the network: a request from the scorer, and a server that
    decides schema_valid. Only references inside the schema resolve."""
    from referencing.exceptions import NoSuchResource

    raise NoSuchResource(ref=uri)


def schema_valid(output: str, *, schema: dict) -> float:
    """1.0 when the (leniently parsed) JSON validates against `schema` (any JSON Schema draft)."""
    return float(schema_violation(output, schema) is None)


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
                   unordered_lists: bool = True) -> Value:
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


# --------------------------------------------------------------------------- registry

Scorer = Callable[[str, str, dict, "dict | None"], tuple[dict[str, Value], dict[str, str]]]


@dataclass(frozen=True)
class Metric:
    """A registered metric: how to score one sample and which value names it produces."""

    name: str
    score: Scorer
    options: dict[str, type | tuple]  # allowed option -> accepted type(s)
    description: str
    needs_schema: bool = False
    outputs: Callable[[str, dict], list[str]] = lambda key, opts: [key]
    check: Callable[[dict], None] = lambda opts: None  # raises ValueError on bad options


def _simple(fn: Callable[..., Value], takes_reference: bool = True) -> Scorer:
    def score(output: str, reference: str, opts: dict, schema: dict | None) -> tuple[dict, dict]:
        v = fn(output, reference, **opts) if takes_reference else fn(output, **opts)
        return {"": v}, {}

    return score


# Sub-metrics of json_valid that count format deviations: higher is worse, never reported as a gain.
FORMAT_DEVIATIONS = ("code_fence", "trailing_text")


def _score_json_valid(output, reference, opts, schema):
    p = extract_json(output)
    values = {"": float(p.strict), "code_fence": float(p.code_fence),
              "trailing_text": float(p.trailing_text) if p.found else None}
    details = {}
    if not p.strict:
        if not p.found:
            details[""] = p.error
        else:
            where = [w for w, on in (("leading text", p.leading_text), ("trailing text", p.trailing_text)) if on]
            details[""] = "JSON value surrounded by " + " and ".join(where or ["extra text"])
    elif p.code_fence:
        details["code_fence"] = "JSON wrapped in a markdown code fence"
    return values, details


def _score_schema_valid(output, reference, opts, schema):
    if schema is None:
        return {"": None}, {"": "task has no json_schema"}
    v = schema_violation(output, schema)
    return {"": float(v is None)}, ({"": v} if v else {})


def _score_field_accuracy(output, reference, opts, schema):
    s = field_scores(output, reference, **opts)
    values: dict[str, Value] = {f".{f}": v for f, v in s.items()}
    values[""] = sum(s.values()) / len(s) if s else None
    details = {}
    wrong = [f for f, v in s.items() if v == 0.0]
    if wrong:
        p = extract_json(output)
        details[""] = ("not JSON: " + p.error) if not p.found else "wrong: " + ", ".join(wrong)
    return values, details


def _check_regex(opts: dict) -> None:
    if "pattern" not in opts:
        raise ValueError("pattern: required")
    try:
        re.compile(opts["pattern"], regex_flags(opts.get("flags")))
    except re.error as exc:
        raise ValueError(f"pattern: invalid regular expression ({exc})") from None


def _check_fields(opts: dict) -> None:
    f = opts.get("fields")
    if f is not None and (not isinstance(f, list) or not f or not all(isinstance(x, str) and x for x in f)):
        raise ValueError("fields: must be a non-empty list of field names (dotted paths allowed)")


_FIELD_OPTS = {"fields": (list, type(None)), "ignore_case": bool, "unordered_lists": bool}

METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("exact_match", _simple(exact_match),
               {"normalize": bool, "ignore_case": bool, "ignore_punctuation": bool},
               "output == reference after normalisation"),
        Metric("token_f1", _simple(token_f1), {}, "bag-of-words F1 against the reference"),
        Metric("rouge_l", _simple(rouge_l), {}, "ROUGE-L F-measure against the reference"),
        Metric("regex_match", _simple(regex_match, takes_reference=False),
               {"pattern": str, "flags": (str, list, int, type(None)), "full": bool},
               "output matches a regular expression", check=_check_regex),
        Metric("numeric_match", _simple(numeric_match), {"tolerance": (int, float), "relative": bool},
               "final number equals the reference's ('#### n' or last number)"),
        Metric("json_valid", _score_json_valid, {}, "output is exactly one JSON value (also reports code_fence, trailing_text)",
               outputs=lambda key, opts: [key, "code_fence", "trailing_text"]),
        Metric("schema_valid", _score_schema_valid, {}, "JSON validates against the task's json_schema",
               needs_schema=True),
        Metric("field_accuracy", _score_field_accuracy, _FIELD_OPTS,
               "fraction of JSON fields equal to the reference (one value per field + mean)",
               outputs=lambda key, opts: [key] + [f"{key}.{f}" for f in (opts.get("fields") or [])],
               check=_check_fields),
        Metric("all_fields_correct", _simple(all_fields_correct), _FIELD_OPTS,
               "every JSON field equals the reference", check=_check_fields),
    ]
}

RESERVED_SPEC_KEYS = ("name", "as")


def spec_key(spec: dict) -> str:
    """The value name a metric spec produces (`as:` renames, e.g. two exact_match variants)."""
    return str(spec.get("as") or spec["name"])


def validate_spec(spec: Any) -> list[tuple[str, str]]:
    """Problems with one metric spec as (key, message) pairs; empty when fine."""
    if not isinstance(spec, dict):
        return [("", "must be a mapping like {name: exact_match}")]
    if "name" not in spec:
        return [("name", "required")]
    name = spec["name"]
    if name not in METRICS:
        return [("name", f"unknown metric {name!r} (known: {', '.join(sorted(METRICS))})")]
    m = METRICS[name]
    problems = []
    opts = {k: v for k, v in spec.items() if k not in RESERVED_SPEC_KEYS}
    for k, v in opts.items():
        if k not in m.options:
            known = ", ".join(sorted(m.options)) or "none"
            problems.append((k, f"unknown option for {name} (known: {known})"))
        elif not isinstance(v, m.options[k]) or (isinstance(v, bool) and m.options[k] in ((int, float),)):
            problems.append((k, f"wrong type {type(v).__name__}"))
    if not problems:
        try:
            m.check(opts)
        except ValueError as exc:
            key, _, msg = str(exc).partition(": ")
            problems.append((key, msg or str(exc)))
    return problems


def metric_outputs(spec: dict) -> list[str]:
    """Every value name a (valid) spec produces."""
    m = METRICS[spec["name"]]
    opts = {k: v for k, v in spec.items() if k not in RESERVED_SPEC_KEYS}
    return m.outputs(spec_key(spec), opts)


def score_sample(output: str, reference: str, specs: Sequence[dict], *, schema: dict | None = None
                 ) -> tuple[dict[str, Value], dict[str, str]]:
    """Score one output with every metric spec: ({value name: float|None}, {value name: detail})."""
    values: dict[str, Value] = {}
    details: dict[str, str] = {}
    for spec in specs:
        m = METRICS[spec["name"]]
        key = spec_key(spec)
        opts = {k: v for k, v in spec.items() if k not in RESERVED_SPEC_KEYS}
        try:
            vals, dets = m.score(output or "", reference or "", opts, schema)
        except Exception as exc:  # a metric must never kill a whole evaluation
            vals, dets = {"": None}, {"": f"metric error: {type(exc).__name__}: {exc}"}
        for sub, v in vals.items():
            name = key + sub if sub.startswith(".") or sub == "" else sub
            values[name] = None if v is None else min(1.0, max(0.0, float(v)))
        for sub, d in dets.items():
            name = key + sub if sub.startswith(".") or sub == "" else sub
            details[name] = d
    return values, details


def mean_values(rows: Sequence[dict[str, Value]]) -> dict[str, float | None]:
    """Per-name mean over rows, skipping None; a name with only None values maps to None."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    names: list[str] = []
    for r in rows:
        for k, v in r.items():
            if k not in counts:
                names.append(k)
                counts[k], sums[k] = 0, 0.0
            if v is not None:
                counts[k] += 1
                sums[k] += v
    return {k: (sums[k] / counts[k] if counts[k] else None) for k in names}
