"""Task metrics as task.yaml names them: the adapter between a task's metric specs and the scorers.

Each metric is a scorer class in harness.scoring (text, regex, numeric, json, schema, fields), named in
harness.scoring.registry; it returns one `Score`. Here a spec ({name, as, options}) is validated, its value
names listed, and one output scored into the flat rows scores.jsonl holds: ({value name: float|None},
{value name: detail}). Every value is a float in [0, 1], or None when it does not apply (e.g. numeric_match on
a reference without a number); summaries average the non-None values. How JSON outputs are read: see
harness.scoring.json. extract_json, bounded_match, schema_valid and FORMAT_DEVIATIONS are imported from here
by callers that predate harness.scoring; their home is there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from harness.scoring.json import FORMAT_DEVIATIONS, extract_json
from harness.scoring.regex import bounded_match
from harness.scoring.registry import TASK_METRICS, UnknownScorer, scorer_class
from harness.scoring.schema import schema_valid

__all__ = ["FORMAT_DEVIATIONS", "METRICS", "Metric", "bounded_match", "extract_json", "mean_values",
           "metric_outputs", "schema_valid", "score_sample", "spec_key", "validate_spec"]

Value = float | None
RowScorer = Callable[[str, str, dict, "dict | None"], tuple[dict[str, Value], dict[str, str]]]


@dataclass(frozen=True)
class Metric:
    """A registered metric: how to score one sample and which value names it produces."""

    name: str
    score: RowScorer
    options: dict[str, type | tuple]  # allowed option -> accepted type(s)
    description: str
    needs_schema: bool = False
    outputs: Callable[[str, dict], list[str]] = lambda key, opts: [key]
    check: Callable[[dict], None] = lambda opts: None  # raises ValueError on bad options


def _flat_scorer(name: str) -> RowScorer:
    """score(output, reference, opts, schema) -> ({"" or sub name: value}, {"" or sub name: detail}) of the
    registered scorer `name`: the shape score_sample has always read."""
    cls = scorer_class(name, "metric")

    def score(output: str, reference: str, opts: dict, schema: dict | None) -> tuple[dict, dict]:
        return cls(**opts).score(output, reference, schema).flatten("")

    return score


def _metric(name: str) -> Metric:
    cls = scorer_class(name, "metric")
    return Metric(name, _flat_scorer(name), cls.option_types, cls.description, cls.needs_schema, cls.outputs,
                  cls.check)


METRICS: dict[str, Metric] = {name: _metric(name) for name in TASK_METRICS}

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
        try:
            scorer_class(name, "metric")
        except UnknownScorer as exc:
            return [("name", str(exc))]
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
        key = spec_key(spec)
        opts = {k: v for k, v in spec.items() if k not in RESERVED_SPEC_KEYS}
        try:
            scored = scorer_class(spec["name"], "metric")(**opts).score(output or "", reference or "", schema)
            vals, dets = scored.flatten(key)
        except Exception as exc:  # a metric must never kill a whole evaluation
            vals, dets = {key: None}, {key: f"metric error: {type(exc).__name__}: {exc}"}
        for name, v in vals.items():
            values[name] = None if v is None else min(1.0, max(0.0, float(v)))
        details.update(dets)
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
