"""Every task metric on tiny hand-written cases: normal, empty, unicode, fences, trailing text, nested schemas."""
from __future__ import annotations

import pytest

from harness import metrics as M
from harness.scoring import fields as fl
from harness.scoring import numeric, regex, text
from harness.scoring import schema as sch
from harness.scoring import json as sj

P = pytest.param

# ----------------------------------------------------------------------------- exact_match


@pytest.mark.parametrize(
    "out,ref,kw,expected",
    [
        P("Paris", "Paris", {}, 1.0, id="identical"),
        P("  paris \n", "Paris", {}, 1.0, id="case-and-whitespace"),
        P("paris", "Paris", {"ignore_case": False}, 0.0, id="case-sensitive"),
        P("Paris.", "Paris", {}, 0.0, id="punct-counts-by-default"),
        P("Paris.", "Paris", {"ignore_punctuation": True}, 1.0, id="ignore-punct"),
        P("New   York", "new york", {}, 1.0, id="collapse-inner-space"),
        P("New   York", "New York", {"normalize": False}, 0.0, id="no-normalize-keeps-spaces"),
        P("", "", {}, 1.0, id="both-empty"),
        P("", "x", {}, 0.0, id="empty-output"),
        P("Zürich", "ZÜRICH", {}, 1.0, id="unicode-casefold"),
        P("Straße", "STRASSE", {}, 1.0, id="casefold-eszett"),
        P("ｐａｒｉｓ", "paris", {}, 1.0, id="nfkc-fullwidth"),
        P("«Paris»", "Paris", {"ignore_punctuation": True}, 1.0, id="unicode-punct"),
        P("東京", "東京", {}, 1.0, id="cjk"),
    ],
)
def test_exact_match(out, ref, kw, expected):
    assert text.exact_match(out, ref, **kw) == expected


# ----------------------------------------------------------------------------- token_f1 / rouge_l


@pytest.mark.parametrize(
    "out,ref,expected",
    [
        P("the cat sat", "the cat sat", 1.0, id="identical"),
        P("", "", 1.0, id="both-empty"),
        P("", "cat", 0.0, id="empty-output"),
        P("cat", "", 0.0, id="empty-reference"),
        P("dog", "cat", 0.0, id="disjoint"),
        P("cat sat", "the cat sat", 0.8, id="partial"),
        P("Cat, SAT!", "cat sat", 1.0, id="case-punct-insensitive"),
        P("café noir", "café au lait", 0.4, id="unicode-tokens"),
    ],
)
def test_token_f1(out, ref, expected):
    assert text.token_f1(out, ref) == pytest.approx(expected)


@pytest.mark.parametrize(
    "out,ref,expected",
    [
        P("the cat sat on the mat", "the cat sat on the mat", 1.0, id="identical"),
        P("", "", 1.0, id="both-empty"),
        P("", "the cat", 0.0, id="empty-output"),
        P("dog", "cat", 0.0, id="disjoint"),
        P("日本 東京", "日本 東京", 1.0, id="unicode-not-dropped"),
    ],
)
def test_rouge_l(out, ref, expected):
    assert text.rouge_l(out, ref) == pytest.approx(expected)


def test_rouge_l_order_matters():
    assert 0 < text.rouge_l("mat the on sat cat the", "the cat sat on the mat") < 1


# ----------------------------------------------------------------------------- regex_match


@pytest.mark.parametrize(
    "out,kw,expected",
    [
        P("Answer: 42", {"pattern": r"\b42\b"}, 1.0, id="search"),
        P("answer: yes", {"pattern": "YES"}, 0.0, id="case-sensitive-default"),
        P("answer: yes", {"pattern": "YES", "flags": "i"}, 1.0, id="flag-i"),
        P("a\nb", {"pattern": "^b$", "flags": ["m"]}, 1.0, id="flag-m-list"),
        P(" yes ", {"pattern": "yes", "full": True}, 1.0, id="full-stripped"),
        P("yes sir", {"pattern": "yes", "full": True}, 0.0, id="full-rejects-extra"),
        P("", {"pattern": ".+"}, 0.0, id="empty-output"),
        P("naïve", {"pattern": r"na\wve"}, 1.0, id="unicode-word"),
    ],
)
def test_regex_match(out, kw, expected):
    assert regex.regex_match(out, **kw) == expected


def test_regex_bad_flag():
    with pytest.raises(ValueError, match="unknown regex flag"):
        regex.regex_flags("q")


# ----------------------------------------------------------------------------- numeric_match


@pytest.mark.parametrize(
    "out,ref,kw,expected",
    [
        P("The answer is 18.", "Janet sells ... #### 18", {}, 1.0, id="gsm8k-last-number"),
        P("#### 18", "#### 18", {}, 1.0, id="output-hashes"),
        P("so 5 + 13 = 18 #### 18 then 20", "#### 18", {}, 1.0, id="output-hash-beats-last"),
        P("She pays $1,234.", "#### 1234", {}, 1.0, id="commas-and-dollar"),
        P("1234", "#### 1,234", {}, 1.0, id="reference-commas"),
        P("It is 17", "#### 18", {}, 0.0, id="wrong"),
        P("no idea", "#### 18", {}, 0.0, id="no-number-in-output"),
        P("", "#### 18", {}, 0.0, id="empty-output"),
        P("anything", "no number here", {}, None, id="reference-without-number"),
        P("-3", "#### -3", {}, 1.0, id="negative"),
        P("−3", "#### -3", {}, 1.0, id="unicode-minus"),
        P("0.5", "#### .5", {}, 1.0, id="leading-dot"),
        P("3.1", "#### 3", {"tolerance": 0.2}, 1.0, id="abs-tolerance"),
        P("103", "#### 100", {"tolerance": 0.05, "relative": True}, 1.0, id="relative-tolerance"),
        P("110", "#### 100", {"tolerance": 0.05, "relative": True}, 0.0, id="relative-tolerance-fail"),
        P("18.0", "#### 18", {}, 1.0, id="float-vs-int"),
    ],
)
def test_numeric_match(out, ref, kw, expected):
    assert numeric.numeric_match(out, ref, **kw) == expected


# ----------------------------------------------------------------------------- JSON extraction


@pytest.mark.parametrize(
    "out,strict,found,fence,trailing,leading",
    [
        P('{"a": 1}', True, True, False, False, False, id="plain"),
        P('  \n{"a": 1}\n ', True, True, False, False, False, id="whitespace"),
        P('```json\n{"a": 1}\n```', True, True, True, False, False, id="json-fence"),
        P('```\n{"a": 1}\n```', True, True, True, False, False, id="bare-fence"),
        P('```JSON {"a": 1}```', True, True, True, False, False, id="inline-fence"),
        P('{"a": 1}\nHope this helps!', False, True, False, True, False, id="trailing-text"),
        P('{"a": 1}{"b": 2}', False, True, False, True, False, id="two-objects"),
        P('Sure! {"a": 1}', False, True, False, False, True, id="leading-text"),
        P('Here:\n```json\n{"a": 1}\n```\nDone.', False, True, True, True, True, id="fence-with-prose"),
        P("", False, False, False, False, False, id="empty"),
        P("   ", False, False, False, False, False, id="blank"),
        P("not json", False, False, False, False, False, id="prose"),
        P('{"a": 1', False, False, False, False, False, id="truncated"),
        P('[1, 2]', True, True, False, False, False, id="array"),
        P('"str"', True, True, False, False, False, id="scalar-string"),
        P('{"城市": "東京", "emoji": "🙂"}', True, True, False, False, False, id="unicode"),
        P('\ufeff{"a": 1}', True, True, False, False, False, id="bom"),
    ],
)
def test_extract_json(out, strict, found, fence, trailing, leading):
    p = sj.extract_json(out)
    assert (p.strict, p.found, p.code_fence, p.trailing_text, p.leading_text) == (strict, found, fence, trailing, leading)


def test_extract_json_error_messages():
    assert sj.extract_json("").error == "empty output"
    assert sj.extract_json('{"a": }').error.startswith("invalid JSON")


def test_extract_json_trailing_value_is_first_object():
    assert sj.extract_json('{"a": 1} and also {"a": 2}').value == {"a": 1}


@pytest.mark.parametrize(
    "out,expected",
    [
        P('{"a": 1}', 1.0, id="plain"),
        P('```json\n{"a": 1}\n```', 1.0, id="fenced-counts-valid"),
        P('{"a": 1} trailing', 0.0, id="trailing-invalid"),
        P("", 0.0, id="empty"),
        P("{'a': 1}", 0.0, id="python-dict-quotes"),
    ],
)
def test_json_valid(out, expected):
    assert sj.json_valid(out) == expected


# ----------------------------------------------------------------------------- schema_valid

SCHEMA = {
    "type": "object",
    "required": ["intent", "slots"],
    "additionalProperties": False,
    "properties": {
        "intent": {"type": "string", "enum": ["book", "cancel"]},
        "slots": {
            "type": "object",
            "properties": {"guests": {"type": "integer", "minimum": 1},
                           "dates": {"type": "array", "items": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}}},
        },
    },
}


@pytest.mark.parametrize(
    "out,valid,detail_part",
    [
        P('{"intent": "book", "slots": {"guests": 2}}', True, None, id="valid"),
        P('```json\n{"intent": "book", "slots": {}}\n```', True, None, id="fenced-valid"),
        P('{"intent": "book", "slots": {}} thanks', True, None, id="trailing-lenient"),
        P('{"intent": "fly", "slots": {}}', False, "$.intent", id="enum"),
        P('{"intent": "book"}', False, "'slots' is a required property", id="missing-required"),
        P('{"intent": "book", "slots": {"guests": 0}}', False, "$.slots.guests", id="nested-minimum"),
        P('{"intent": "book", "slots": {"dates": ["2024-01-01", "tomorrow"]}}', False, "$.slots.dates[1]",
          id="nested-array-item"),
        P('{"intent": "book", "slots": {}, "x": 1}', False, "Additional properties", id="additional"),
        P('[1]', False, "is not of type 'object'", id="wrong-type"),
        P("", False, "not JSON (empty output)", id="empty"),
        P("nope", False, "not JSON", id="prose"),
        P('{"intent": "cancel", "slots": {"note": "ünïcödé ✓"}}', True, None, id="unicode"),
    ],
)
def test_schema_valid(out, valid, detail_part):
    assert sch.schema_valid(out, schema=SCHEMA) == float(valid)
    v = sch.schema_violation(out, SCHEMA)
    if valid:
        assert v is None
    else:
        assert detail_part in v


def test_schema_violation_anyof_descends():
    schema = {"anyOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                        {"type": "array"}]}
    v = sch.schema_violation('{"a": "x"}', schema)
    assert v and v.startswith("$")


# ----------------------------------------------------------------------------- field_accuracy / all_fields_correct

REF = '{"product": "Widget", "qty": 2, "tags": ["a", "b"], "addr": {"city": "Paris", "zip": "75001"}}'


@pytest.mark.parametrize(
    "out,fields,expected",
    [
        P(REF, ["product", "qty"], {"product": 1.0, "qty": 1.0}, id="all-right"),
        P('{"product": "widget ", "qty": 2.0}', ["product", "qty"], {"product": 1.0, "qty": 1.0}, id="case-space-float"),
        P('{"product": "Gadget", "qty": 2}', ["product", "qty"], {"product": 0.0, "qty": 1.0}, id="one-wrong"),
        P('{"qty": 2}', ["product", "qty"], {"product": 0.0, "qty": 1.0}, id="missing-field"),
        P('{"tags": ["b", "a"]}', ["tags"], {"tags": 1.0}, id="unordered-list"),
        P('{"addr": {"city": "paris", "zip": "75001"}}', ["addr.city", "addr.zip"], {"addr.city": 1.0, "addr.zip": 1.0},
          id="dotted-path"),
        P('{"addr": {"city": "Lyon"}}', ["addr.city", "addr.zip"], {"addr.city": 0.0, "addr.zip": 0.0}, id="nested-wrong"),
        P("", ["product"], {"product": 0.0}, id="empty-output"),
        P("garbage", ["product"], {"product": 0.0}, id="not-json"),
        P('```json\n{"product": "Widget"}\n```', ["product"], {"product": 1.0}, id="fenced"),
        P('{"product": "Widget"} I hope that helps', ["product"], {"product": 1.0}, id="trailing-parsed"),
        P('{"product": "Widget", "absent": null}', ["absent"], {"absent": 1.0}, id="null-equals-missing"),
    ],
)
def test_field_scores(out, fields, expected):
    assert fl.field_scores(out, REF, fields=fields) == expected


def test_field_scores_default_fields_are_reference_keys():
    assert set(fl.field_scores(REF, REF)) == {"product", "qty", "tags", "addr"}


def test_field_accuracy_mean_and_case_option():
    out = '{"product": "widget", "qty": 3}'
    assert fl.field_accuracy(out, REF, fields=["product", "qty"]) == 0.5
    assert fl.field_accuracy(out, REF, fields=["product"], ignore_case=False) == 0.0


def test_field_accuracy_ordered_lists_option():
    assert fl.field_accuracy('{"tags": ["b", "a"]}', REF, fields=["tags"], unordered_lists=False) == 0.0


@pytest.mark.parametrize(
    "out,fields,expected",
    [
        P(REF, None, 1.0, id="whole-object"),
        P('{"product": "Widget"}', None, 0.0, id="whole-object-missing"),
        P('{"product": "Widget", "qty": 2}', ["product", "qty"], 1.0, id="listed-fields"),
        P('{"product": "Widget", "qty": 3}', ["product", "qty"], 0.0, id="one-wrong"),
        P("", ["product"], 0.0, id="empty"),
    ],
)
def test_all_fields_correct(out, fields, expected):
    assert fl.all_fields_correct(out, REF, fields=fields) == expected


# ----------------------------------------------------------------------------- registry / score_sample


def test_score_sample_json_task():
    specs = [{"name": "json_valid"}, {"name": "schema_valid"},
             {"name": "field_accuracy", "fields": ["intent", "slots.guests"]}, {"name": "all_fields_correct"}]
    ref = '{"intent": "book", "slots": {"guests": 2}}'
    out = '```json\n{"intent": "book", "slots": {"guests": 3}}\n```'
    values, details = M.score_sample(out, ref, specs, schema=SCHEMA)
    assert values == {"json_valid": 1.0, "code_fence": 1.0, "trailing_text": 0.0, "schema_valid": 1.0,
                      "field_accuracy.intent": 1.0, "field_accuracy.slots.guests": 0.0, "field_accuracy": 0.5,
                      "all_fields_correct": 0.0}
    assert "slots.guests" in details["field_accuracy"]
    assert details["code_fence"]


def test_score_sample_schema_detail_and_not_json():
    values, details = M.score_sample("nope", "{}", [{"name": "json_valid"}, {"name": "schema_valid"}], schema=SCHEMA)
    assert values["json_valid"] == 0.0 and values["schema_valid"] == 0.0
    assert values["trailing_text"] is None
    assert details["schema_valid"].startswith("not JSON")


def test_score_sample_schema_missing_is_none():
    values, details = M.score_sample("{}", "{}", [{"name": "schema_valid"}])
    assert values["schema_valid"] is None and "json_schema" in details["schema_valid"]


def test_score_sample_alias_and_numeric_none():
    specs = [{"name": "exact_match"}, {"name": "exact_match", "as": "em_strict", "ignore_case": False},
             {"name": "numeric_match"}]
    values, _ = M.score_sample("paris", "Paris", specs)
    assert values == {"exact_match": 1.0, "em_strict": 0.0, "numeric_match": None}


def test_score_sample_values_in_unit_interval():
    specs = [{"name": n} for n in M.METRICS if n != "regex_match"] + [{"name": "regex_match", "pattern": "x"}]
    for out in ["", "x", '{"a": 1}', "```json\n[1]\n```", "ü" * 50]:
        values, _ = M.score_sample(out, '{"a": 1}', specs, schema={"type": "object"})
        assert all(v is None or 0.0 <= v <= 1.0 for v in values.values())


@pytest.mark.parametrize(
    "spec,problem",
    [
        P({"name": "foo"}, "unknown metric 'foo'", id="unknown-metric"),
        P({}, "required", id="no-name"),
        P("exact_match", "must be a mapping", id="not-mapping"),
        P({"name": "exact_match", "bogus": 1}, "unknown option", id="unknown-option"),
        P({"name": "exact_match", "ignore_case": "yes"}, "wrong type", id="wrong-type"),
        P({"name": "regex_match"}, "required", id="regex-needs-pattern"),
        P({"name": "regex_match", "pattern": "("}, "invalid regular expression", id="bad-regex"),
        P({"name": "field_accuracy", "fields": []}, "non-empty list", id="empty-fields"),
        P({"name": "numeric_match", "tolerance": True}, "wrong type", id="bool-not-number"),
    ],
)
def test_validate_spec(spec, problem):
    problems = M.validate_spec(spec)
    assert problems and problem in problems[0][1]


def test_validate_spec_ok_and_outputs():
    spec = {"name": "field_accuracy", "fields": ["a", "b.c"]}
    assert M.validate_spec(spec) == []
    assert M.metric_outputs(spec) == ["field_accuracy", "field_accuracy.a", "field_accuracy.b.c"]
    assert M.metric_outputs({"name": "json_valid"}) == ["json_valid", "code_fence", "trailing_text"]


def test_mean_values_skips_none():
    assert M.mean_values([{"a": 1.0, "b": None}, {"a": 0.0, "b": None}]) == {"a": 0.5, "b": None}


@pytest.mark.parametrize("output", ["[" * 5000, "[" * 5000 + "]" * 5000, '{"a": ' + "[" * 3000 + "]" * 3000 + "}",
                                    "```json\n" + "{" * 4000 + "\n```"], ids=["open", "closed", "in-field", "fenced"])
def test_deeply_nested_json_output_scores_as_invalid_json_not_none(output):
    """No RecursionError and no None (which would silently drop the item from paired comparisons)."""
    specs = [{"name": "json_valid"}, {"name": "schema_valid"}, {"name": "field_accuracy", "fields": ["a"]},
             {"name": "all_fields_correct"}]
    values, details = M.score_sample(output, '{"a": 1}', specs, schema={"type": "object"})
    assert values["json_valid"] == 0.0 and values["schema_valid"] == 0.0
    assert values["field_accuracy"] == 0.0 and values["all_fields_correct"] == 0.0
    assert "nested deeper than" in details["json_valid"]


def test_nesting_inside_json_strings_and_moderate_depth_still_parse():
    assert sj.json_valid('{"a": "' + "[" * 5000 + '"}') == 1.0
    assert sj.json_valid("[" * 50 + "]" * 50) == 1.0
    assert sj.json_depth_exceeds('"\\"[[["', limit=1) is False and sj.json_depth_exceeds("[[", limit=1) is True
