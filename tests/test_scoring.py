"""harness.scoring: every task metric and probe check, asked for by name through the registry, returns one Score."""
from __future__ import annotations

import subprocess
import sys

import pytest

from harness.metrics import score_sample
from harness.probes import check_probe
from harness.scoring.base import Score
from harness.scoring.registry import FAMILIES, UnknownScorer, scorer_class

SCHEMA = {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}


def score(name: str, output: str, reference: str = "", schema: dict | None = None, **opts) -> Score:
    family = "metric" if name in FAMILIES["metric"] else "check"
    return scorer_class(name, family)(**opts).score(output, reference, schema)


@pytest.mark.parametrize("family,name", [(f, n) for f, table in FAMILIES.items() for n in table])
def test_every_registered_name_is_a_scorer_of_that_name(family, name):
    assert scorer_class(name, family).name == name


def test_an_unknown_metric_name_lists_the_known_metrics():
    with pytest.raises(UnknownScorer, match=r"unknown metric 'exact' \(known: all_fields_correct, .*token_f1\)"):
        scorer_class("exact", "metric")


def test_a_probe_check_is_not_a_task_metric():
    with pytest.raises(UnknownScorer, match=r"unknown metric 'word_count' \(known: .*\)"):
        scorer_class("word_count", "metric")


def test_the_registry_imports_a_scorer_module_only_when_its_name_is_asked_for():
    code = ("import sys; from harness.scoring.registry import scorer_class\n"
            "before = 'harness.scoring.fields' in sys.modules\n"
            "scorer_class('field_accuracy', 'metric')\n"
            "print(before, 'harness.scoring.fields' in sys.modules, 'harness.scoring.probes.length' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "False"]


def test_flatten_puts_field_parts_before_the_value_and_values_of_their_own_after():
    s = Score(0.5, "wrong: b", {".a": Score(1.0), ".b": Score(0.0), "extra": Score(None, "why")})
    assert list(s.flatten("acc")[0].items()) == [("acc.a", 1.0), ("acc.b", 0.0), ("acc", 0.5), ("extra", None)]
    assert s.flatten("acc")[1] == {"acc": "wrong: b", "extra": "why"}


def test_exact_match_ignores_case_and_whitespace():
    assert score("exact_match", "  paris \n", "Paris") == Score(1.0)


def test_exact_match_option_ignore_case_false_is_case_sensitive():
    assert score("exact_match", "paris", "Paris", ignore_case=False).value == 0.0


def test_token_f1_scores_partial_overlap():
    assert score("token_f1", "cat sat", "the cat sat").value == pytest.approx(0.8)


def test_rouge_l_of_a_reordered_sentence_is_below_one():
    assert 0.0 < score("rouge_l", "sat the cat", "the cat sat").value < 1.0


def test_regex_match_finds_the_pattern_anywhere():
    assert score("regex_match", "say Hi Ann", pattern="Hi [A-Z]").value == 1.0


def test_regex_match_full_needs_the_whole_stripped_output():
    assert score("regex_match", " Hi Ann, bye ", pattern="Hi [A-Z]\\w+,", full=True).value == 0.0


def test_numeric_match_does_not_apply_to_a_reference_without_a_number():
    assert score("numeric_match", "42", "no number here").value is None


def test_numeric_match_reads_the_gsm8k_answer_mark():
    assert score("numeric_match", "so 3 + 4 = 7 #### 7", "#### 7").value == 1.0


def test_json_valid_reports_a_code_fence_as_a_value_of_its_own():
    s = score("json_valid", '```json\n{"a": 1}\n```')
    assert (s.value, s.parts["code_fence"]) == (1.0, Score(1.0, "JSON wrapped in a markdown code fence"))


def test_json_valid_explains_text_around_the_json():
    s = score("json_valid", 'Sure: {"a": 1} done')
    assert (s.value, s.explanation, s.parts["trailing_text"].value) == (
        0.0, "JSON value surrounded by leading text and trailing text", 1.0)


def test_json_valid_has_no_trailing_text_value_when_nothing_parsed():
    assert score("json_valid", "").parts["trailing_text"].value is None


def test_schema_valid_without_a_schema_does_not_apply_and_says_so():
    assert score("schema_valid", '{"a": 1}') == Score(None, "task has no json_schema")


def test_schema_valid_explains_the_violation():
    s = score("schema_valid", '{"a": "x"}', schema=SCHEMA)
    assert s.value == 0.0 and s.explanation.startswith("$.a:")


def test_field_accuracy_has_one_part_per_field_and_names_the_wrong_ones():
    s = score("field_accuracy", '{"a": 1, "b": 3}', '{"a": 1, "b": 2}')
    assert (s.value, s.explanation, dict(s.parts)) == (0.5, "wrong: b", {".a": Score(1.0), ".b": Score(0.0)})


def test_all_fields_correct_compares_the_whole_object_without_fields():
    assert score("all_fields_correct", '{"b": 2, "a": 1}', '{"a": 1, "b": 2}').value == 1.0


CHECKS = [  # name, options, an answer that passes, one that fails
    ("word_count", {"max": 3}, "one two three", "one two three four"),
    ("forbidden_words", {"words": ["cat"]}, "a dog", "a Cat"),
    ("required_keywords", {"keywords": ["blue sky"]}, "the blue sky", "the sky is blue"),
    ("json_only", {}, '{"a": 1}', 'x {"a": 1}'),
    ("bullet_count", {"n": 2}, "- a\n- b", "- a"),
    ("lowercase", {}, "all small", "Not all"),
    ("uppercase", {}, "ALL BIG", "ALL Big"),
    ("ends_with", {"phrase": "Any questions?"}, "Done. any questions?", "Any questions? Done."),
    ("starts_with", {"phrase": "Yes"}, "Yes, sure", "Yesterday"),
    ("no_comma", {}, "no commas here", "a, b"),
    ("numeric", {"answer": 3, "echo": ["9 divided by 3"]}, "9 divided by 3 is 3", "9 divided by 3"),
    ("contains_any", {"answers": ["Paris"]}, "It is paris.", "It is Parisian."),
    ("json_keys", {"keys": ["a", "b"], "distinct": True}, '{"a": "x", "b": "y"}', '{"a": "x", "b": "x"}'),
    ("equals", {"text": "Hello world"}, '"hello   world"', "hello world!"),
    ("quoted", {}, '"hi"', "hi"),
    ("plain_text", {}, "prose only", '["a"]'),
    ("mentions", {"words": ["flower*"]}, "Flowering trees", "trees"),
    ("first_named", {"answers": ["March"], "options": ["February"]}, "March comes first", "February comes after March"),
    ("names_fact", {"answers": ["blue"], "others": ["red"], "own": ["Leo has a blue ball"],
                    "context": ["Mia's kite is red"]}, "It is blue", "It is red"),
    ("bullets_from", {"words": ["apple", "pear"]}, "- apple\n- pear", "- apple\n- apple"),
]


@pytest.mark.parametrize("name,opts,good,bad", CHECKS, ids=[c[0] for c in CHECKS])
def test_a_probe_check_scores_one_on_a_compliant_answer(name, opts, good, bad):
    assert score(name, good, **opts) == Score(1.0)


@pytest.mark.parametrize("name,opts,good,bad", CHECKS, ids=[c[0] for c in CHECKS])
def test_a_failed_probe_check_scores_zero_and_names_itself(name, opts, good, bad):
    s = score(name, bad, **opts)
    assert s.value == 0.0 and s.explanation.startswith(f"{name} not met: ")


def test_every_probe_check_has_a_case_here():
    assert sorted(c[0] for c in CHECKS) == sorted(FAMILIES["check"])


def test_a_probe_checks_options_are_its_rules_keywords():
    assert [p for p in scorer_class("bullet_count", "check").parameters()] == ["output", "n", "relation"]


def test_score_sample_names_field_parts_under_the_specs_as_name():
    values, details = score_sample('{"a": 1}', '{"a": 2}', [{"name": "field_accuracy", "as": "acc", "fields": ["a"]}])
    assert (values, details) == ({"acc.a": 0.0, "acc": 0.0}, {"acc": "wrong: a"})


def test_score_sample_turns_a_scorer_error_into_an_unscored_value():
    values, details = score_sample("a" * 30, "", [{"name": "regex_match", "as": "r", "pattern": "x(", "full": True}])
    assert values == {"r": None} and details["r"].startswith("metric error: error: ")


def test_check_probe_stops_at_the_first_failing_check():
    item = {"check": [{"type": "lowercase"}, {"type": "bullet_count", "n": 1, "relation": "sometimes"}]}
    assert check_probe(item, "Upper") == 0.0  # the second check, which would raise, is never run
