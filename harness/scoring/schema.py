"""schema_valid: the (leniently read) JSON validates against the task's json_schema; a $ref is never fetched."""
from __future__ import annotations

from harness.io import UserError
from harness.scoring.base import Score, Scorer
from harness.scoring.json import extract_json


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


class SchemaValid(Scorer):
    name = "schema_valid"
    description = "JSON validates against the task's json_schema"
    needs_schema = True

    def score(self, output: str, reference: str = "", schema: dict | None = None) -> Score:
        if schema is None:
            return Score(None, "task has no json_schema")
        v = schema_violation(output, schema)
        return Score(float(v is None), v or "")
