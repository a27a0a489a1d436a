"""Probe checkers against hand-written passing and failing answers, the shipped probe set, and IFEval kwargs."""
from __future__ import annotations

import json

import pytest

from harness import probes as PR
from harness.io import UserError

P = pytest.param


@pytest.mark.parametrize(
    "check,output,expected",
    [
        P({"type": "word_count", "max": 5}, "Water keeps us alive.", True, id="wc-max-pass"),
        P({"type": "word_count", "max": 3}, "Water keeps us alive.", False, id="wc-max-fail"),
        P({"type": "word_count", "min": 3}, "one two three", True, id="wc-min-pass"),
        P({"type": "word_count", "min": 3}, "one two", False, id="wc-min-fail"),
        P({"type": "word_count", "max": 5}, "", False, id="wc-empty"),
        P({"type": "word_count", "max": 2}, "don't stop", True, id="wc-contraction-one-word"),
        P({"type": "forbidden_words", "words": ["cat", "pet"]}, "A small furry feline.", True, id="forbid-pass"),
        P({"type": "forbidden_words", "words": ["cat"]}, "The Cat sleeps.", False, id="forbid-case"),
        P({"type": "forbidden_words", "words": ["cat"]}, "A category of things.", True, id="forbid-word-boundary"),
        P({"type": "forbidden_words", "words": ["cat"]}, "", False, id="forbid-empty"),
        P({"type": "required_keywords", "keywords": ["sun", "beach"]}, "The Sun warms the beach.", True, id="req-pass"),
        P({"type": "required_keywords", "keywords": ["sun", "beach"]}, "The sun is hot.", False, id="req-missing"),
        P({"type": "required_keywords", "keywords": ["ice cream"]}, "I like Ice Cream!", True, id="req-phrase"),
        P({"type": "json_only"}, '{"name": "Ana", "age": 30}', True, id="json-pass"),
        P({"type": "json_only"}, '```json\n{"a": 1}\n```', True, id="json-fence-ok"),
        P({"type": "json_only", "allow_fence": False}, '```json\n{"a": 1}\n```', False, id="json-fence-strict"),
        P({"type": "json_only"}, 'Here it is: {"a": 1}', False, id="json-prose"),
        P({"type": "json_only"}, "", False, id="json-empty"),
        P({"type": "bullet_count", "n": 3}, "- apple\n- pear\n- plum", True, id="bullets-dash"),
        P({"type": "bullet_count", "n": 2}, "* run\n* swim", True, id="bullets-star"),
        P({"type": "bullet_count", "n": 3}, "1. a\n2. b\n3. c", True, id="bullets-numbered"),
        P({"type": "bullet_count", "n": 3}, "- apple\n- pear", False, id="bullets-too-few"),
        P({"type": "bullet_count", "n": 2, "relation": "at least"}, "- a\n- b\n- c", True, id="bullets-at-least"),
        P({"type": "bullet_count", "n": 2, "relation": "at most"}, "- a\n- b\n- c", False, id="bullets-at-most"),
        P({"type": "bullet_count", "n": 1}, "-not a bullet", False, id="bullets-need-space"),
        P({"type": "lowercase"}, "hello there, friend!", True, id="lower-pass"),
        P({"type": "lowercase"}, "Hello there", False, id="lower-fail"),
        P({"type": "lowercase"}, "123", False, id="lower-no-letters"),
        P({"type": "lowercase"}, "ça va très bien", True, id="lower-unicode"),
        P({"type": "uppercase"}, "HELLO!", True, id="upper-pass"),
        P({"type": "uppercase"}, "HELLO there", False, id="upper-fail"),
        P({"type": "uppercase"}, "ÇA VA", True, id="upper-unicode"),
        P({"type": "ends_with", "phrase": "Is there anything else?"}, "The moon orbits Earth. Is there anything else?",
          True, id="ends-pass"),
        P({"type": "ends_with", "phrase": "Woof"}, "Dogs are loyal. woof  \n", True, id="ends-case-space"),
        P({"type": "ends_with", "phrase": "Woof"}, "Woof! Dogs are loyal.", False, id="ends-fail"),
        P({"type": "ends_with", "phrase": "Woof"}, "", False, id="ends-empty"),
        P({"type": "starts_with", "phrase": "Yes"}, "Yes, the sun is a star.", True, id="starts-pass"),
        P({"type": "starts_with", "phrase": "Yes"}, "The sun is a star.", False, id="starts-fail"),
        P({"type": "no_comma"}, "A tall green tree stands alone.", True, id="nocomma-pass"),
        P({"type": "no_comma"}, "A tall, green tree.", False, id="nocomma-fail"),
        P({"type": "no_comma"}, "一棵树，很高", False, id="nocomma-fullwidth"),
        P({"type": "numeric", "answer": 12}, "7 + 5 = 12", True, id="num-pass"),
        P({"type": "numeric", "answer": 12}, "The answer is 12.", True, id="num-sentence"),
        P({"type": "numeric", "answer": 12}, "The answer is 13.", False, id="num-wrong"),
        P({"type": "numeric", "answer": 999}, "1,000 - 1 = 999", True, id="num-commas"),
        P({"type": "numeric", "answer": 5}, "five", False, id="num-words-not-parsed"),
        P({"type": "contains_any", "answers": ["Paris"]}, "The capital of France is Paris.", True, id="any-pass"),
        P({"type": "contains_any", "answers": ["Paris"]}, "It is Lyon.", False, id="any-fail"),
        P({"type": "contains_any", "answers": ["seven", "7"]}, "There are 7 days.", True, id="any-alt"),
        P({"type": "contains_any", "answers": ["Sun"]}, "Sunday is nice.", False, id="any-word-boundary"),
        P({"type": "contains_any", "answers": ["H₂O"]}, "Water is H₂O.", True, id="any-unicode"),
    ],
)
def test_checker(check, output, expected):
    assert PR.run_check(check, output) is expected
    assert PR.check_probe({"check": check}, output) == float(expected)


def test_check_probe_all_checks_must_pass():
    item = {"check": [{"type": "required_keywords", "keywords": ["cloud"]}, {"type": "word_count", "max": 4}]}
    assert PR.check_probe(item, "a cloud") == 1.0
    assert PR.check_probe(item, "a big grey cloud today") == 0.0
    assert PR.check_probe(item, "sunny") == 0.0


def test_bullet_bad_relation():
    with pytest.raises(ValueError):
        PR.bullet_count("- a", n=1, relation="roughly")


@pytest.mark.parametrize(
    "item,problem",
    [
        P({"id": "x", "family": "ifeval", "messages": [{"role": "user", "content": "q"}], "check": {"type": "nope"}},
          "check.type: unknown", id="unknown-type"),
        P({"id": "x", "family": "trivia", "messages": [{"role": "user", "content": "q"}], "check": {"type": "lowercase"}},
          "family: unknown", id="unknown-family"),
        P({"id": "x", "family": "ifeval", "messages": [{"role": "user", "content": "q"}], "check": {"type": "numeric"}},
          "check.answer: required", id="missing-option"),
        P({"id": "x", "family": "ifeval", "messages": [{"role": "user", "content": "q"}],
           "check": {"type": "lowercase", "x": 1}}, "check.x: unknown option", id="unknown-option"),
        P({"id": "x", "family": "ifeval", "messages": [], "check": {"type": "lowercase"}}, "messages", id="no-messages"),
        P({"family": "ifeval"}, "id: required", id="no-id"),
    ],
)
def test_validate_probe(item, problem):
    assert problem in PR.validate_probe(item)


def test_default_probe_set_is_valid_and_balanced():
    items = PR.load_probes("default")
    assert 40 <= len(items) <= 70
    fams = {f: sum(1 for it in items if it["family"] == f) for f in PR.FAMILIES}
    assert all(n >= 8 for n in fams.values()), fams
    assert len({it["id"] for it in items}) == len(items)


def test_load_probes_errors(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text(json.dumps({"id": "a", "family": "x", "messages": [{"role": "user", "content": "q"}],
                               "check": {"type": "lowercase"}}) + "\n")
    with pytest.raises(UserError, match=r"p.jsonl:1: family"):
        PR.load_probes(bad)
    with pytest.raises(UserError, match="probe set not found"):
        PR.load_probes(tmp_path / "missing.jsonl")


# ----------------------------------------------------------------------------- IFEval instructions from shared data


def _passing_and_failing(check: dict) -> tuple[str, str] | None:
    """A hand-built answer that satisfies / violates one mapped IFEval check, from its real kwargs."""
    t = check["type"]
    if t == "no_comma":
        return "A clean answer without that mark.", "One, two."
    if t == "word_count":
        if "min" in check:
            return " ".join(["word"] * check["min"]), " ".join(["word"] * max(check["min"] - 1, 0))
        return " ".join(["word"] * check["max"]), " ".join(["word"] * (check["max"] + 1))
    if t == "forbidden_words":
        return "Nothing relevant here at all zzz.", f"This mentions {check['words'][0]} plainly."
    if t == "required_keywords":
        return "Here: " + " and ".join(check["keywords"]) + ".", "Nothing relevant zzz."
    if t == "lowercase":
        return "all quiet here", "Not All Quiet"
    if t == "uppercase":
        return "ALL LOUD HERE", "Not loud"
    if t == "bullet_count":
        n = check["n"]
        return "\n".join(f"* item {i}" for i in range(n)), "\n".join(f"* item {i}" for i in range(n + 1))
    if t == "ends_with":
        return f"Some text. {check['phrase']}", f"{check['phrase']} Some text after."
    if t == "json_only":
        return '{"answer": "yes"}', 'Sure: {"answer": "yes"}'
    return None


def test_checkers_on_ifeval_instructions(shared_data):
    path = shared_data / "ifeval" / "input_data.jsonl"
    if not path.is_file():
        pytest.skip("ifeval data not present")
    mapped = 0
    seen_types = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            for iid, kw in zip(rec["instruction_id_list"], rec["kwargs"]):
                check = PR.ifeval_to_check(iid, kw)
                if check is None:
                    continue
                item = {"id": str(rec["key"]), "family": "ifeval", "messages": [{"role": "user", "content": rec["prompt"]}],
                        "check": check}
                assert PR.validate_probe(item) is None, (iid, kw)
                pair = _passing_and_failing(check)
                good, bad = pair
                assert PR.check_probe(item, good) == 1.0, (iid, kw, good)
                assert PR.check_probe(item, bad) == 0.0, (iid, kw, bad)
                mapped += 1
                seen_types.add(check["type"])
    assert mapped > 200
    assert seen_types == {"no_comma", "word_count", "forbidden_words", "required_keywords", "lowercase", "uppercase",
                          "bullet_count", "ends_with", "json_only"}
