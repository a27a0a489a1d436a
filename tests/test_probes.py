"""Probe checkers against hand-written passing and failing answers, the shipped probe set, and IFEval kwargs."""
from __future__ import annotations

import json

import pytest

from harness import probes as PR
from harness.scoring.probes import length
from harness.scoring.probes.words import word_list
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
        P({"type": "starts_with", "phrase": "Yes"}, "Yesterday it rained.", False, id="starts-whole-word"),
        P({"type": "starts_with", "phrase": "Today"}, "  today, the sea is calm.", True, id="starts-case-space"),
        P({"type": "json_keys", "keys": ["name", "color"]}, '{"name": "apple", "color": "red"}', True, id="jkeys-pass"),
        P({"type": "json_keys", "keys": ["name", "color"]}, '```json\n{"name": "a", "color": "b", "x": 1}\n```', True,
          id="jkeys-fence-extra-key"),
        P({"type": "json_keys", "keys": ["name", "color"]}, '{"name": "apple"}', False, id="jkeys-missing-key"),
        P({"type": "json_keys", "keys": ["name"]}, '["name"]', False, id="jkeys-not-object"),
        P({"type": "json_keys", "keys": ["name"]}, 'Sure! {"name": "apple"}', False, id="jkeys-prose"),
        P({"type": "json_keys", "keys": ["dish", "ingredient"], "distinct": True},
          '{"dish": "dish", "ingredient": "ingredient"}', False, id="jkeys-values-are-the-key-names"),
        P({"type": "json_keys", "keys": ["dish", "ingredient"], "distinct": True},
          '{"dish": "pasta", "ingredient": "tomato"}', True, id="jkeys-distinct-pass"),
        P({"type": "equals", "text": "The old fox sits."}, "the old  fox sits.", True, id="equals-case-space"),
        P({"type": "equals", "text": "The old fox sits."}, '"The old fox sits."', True, id="equals-quoted"),
        P({"type": "equals", "text": "The old fox sits."}, "The old fox sits. Anything else?", False, id="equals-extra"),
        P({"type": "equals", "text": "The old fox sits."}, "The old fox sits", False, id="equals-punctuation"),
        P({"type": "equals", "text": "x"}, "", False, id="equals-empty"),
        P({"type": "quoted"}, '"The sea is calm."', True, id="quoted-pass"),
        P({"type": "quoted"}, "“The sea is calm.”", True, id="quoted-curly"),
        P({"type": "quoted"}, 'The "sea" is calm.', False, id="quoted-inner-only"),
        P({"type": "quoted"}, '""', False, id="quoted-empty-inside"),
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
        length.bullet_count("- a", n=1, relation="roughly")


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


# ----------------------------------------------------------------------------- probe files: loading and generation

import importlib.util  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402

PROBES_DIR = PR.probes_dir()


def _maker():
    spec = importlib.util.spec_from_file_location("make_probes", PROBES_DIR / "make_probes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _line(item: dict) -> str:
    return json.dumps(item) + "\n"


GOOD = {"id": "a", "family": "general", "messages": [{"role": "user", "content": "q"}],
        "check": {"type": "contains_any", "answers": ["x"]}}


def test_load_probes_names_file_and_line_of_a_bad_item(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text(_line(GOOD) + _line({**GOOD, "id": "b", "family": "x"}))
    with pytest.raises(UserError, match=r"p.jsonl:2: family"):
        PR.load_probes(bad)


def test_load_probes_bad_json_in_the_middle_is_an_error_not_skipped(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text(_line(GOOD) + '{"id": "b", "family": \n' + _line({**GOOD, "id": "c"}))
    with pytest.raises(UserError, match=r"p.jsonl:2: invalid JSON"):
        PR.load_probes(bad)


def test_load_probes_duplicate_id(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text(_line(GOOD) + "\n" + _line(GOOD))
    with pytest.raises(UserError, match=r"p.jsonl:3: duplicate id 'a'"):
        PR.load_probes(bad)


def test_load_probes_missing_and_empty(tmp_path):
    with pytest.raises(UserError, match="probe set not found"):
        PR.load_probes(tmp_path / "missing.jsonl")
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(UserError, match="probe set is empty"):
        PR.load_probes(tmp_path / "e.jsonl")


@pytest.mark.parametrize("value", [0, -3, 513, 2.5, "16", True])
def test_validate_probe_rejects_bad_max_new_tokens(value):
    assert "max_new_tokens" in PR.validate_probe({**GOOD, "max_new_tokens": value})


def test_probe_gen_uses_the_item_budget():
    g = PR.probe_gen({**GOOD, "max_new_tokens": 12})
    assert g.max_new_tokens == 12 and g.temperature == 0.0


def test_probe_gen_default_without_a_budget():
    assert PR.probe_gen(GOOD) == PR.PROBE_GEN


def test_shipped_sets_equal_a_fresh_deterministic_build():
    """default.jsonl/fast.jsonl are exactly the generator's output: nothing was hand-dropped (no selection)."""
    mk = _maker()
    assert mk.build() == mk.build()
    for path, text in mk.outputs().items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: run make_probes.py"


def test_default_set_size_and_families():
    items = PR.load_probes("default")
    fams = {f: sum(1 for it in items if it["family"] == f) for f in PR.FAMILIES}
    assert len(items) >= 500 and all(n >= 120 for n in fams.values()), fams
    assert all("base_pass" not in it for it in items)  # no model outcome recorded in (or used for) the set


def test_fast_set_is_a_stratified_prefix_of_default():
    default = {it["id"]: it for it in PR.load_probes("default")}
    fast = PR.load_probes("fast")
    assert all(default[it["id"]] == it for it in fast)
    fams = {f: {it.get("kind") for it in fast if it["family"] == f} for f in PR.FAMILIES}
    all_kinds = {f: {it.get("kind") for it in default.values() if it["family"] == f} for f in PR.FAMILIES}
    assert fams == all_kinds  # every kind of every family is in the fast set
    assert 100 <= len(fast) <= 200


def test_every_item_has_a_short_budget():
    for it in PR.load_probes("default"):
        assert it["max_new_tokens"] <= 64, it["id"]


def test_free_text_ifeval_items_have_a_word_cap_a_cut_answer_cannot_meet():
    """Truncation must not turn a violation into a pass: a word cap with >= 2.5 tokens of budget per word."""
    for it in PR.load_probes("default"):
        if it["family"] != "ifeval" or it["kind"] in ("json", "repeat"):
            continue
        caps = [c["max"] for c in PR._checks(it) if c["type"] == "word_count" and "max" in c]
        assert caps, it["id"]
        assert it["max_new_tokens"] >= 2 * min(caps), it["id"]


_ARITH_RX = [
    (re.compile(r"^What is (\d+) \+ (\d+)\?"), lambda a, b: a + b),
    (re.compile(r"^What is (\d+) - (\d+)\?"), lambda a, b: a - b),
    (re.compile(r"^What is (\d+) times (\d+)\?"), lambda a, b: a * b),
    (re.compile(r"^What is (\d+) divided by (\d+)\?"), lambda a, b: a / b),
    (re.compile(r"has (\d+) \w+\. \w+ gives \w+ (\d+) more"), lambda a, b: a + b),
    (re.compile(r"has (\d+) \w+ and gives (\d+) of them"), lambda a, b: a - b),
    (re.compile(r"has (\d+) boxes with (\d+) \w+ in each"), lambda a, b: a * b),
]


def test_arithmetic_answers_recomputed_from_the_prompt():
    items = [it for it in PR.load_probes("default") if it["family"] == "arithmetic"]
    assert len(items) >= 120
    for it in items:
        q = it["messages"][-1]["content"]
        got = [f(int(m.group(1)), int(m.group(2))) for rx, f in _ARITH_RX if (m := rx.search(q))]
        assert len(got) == 1, q
        (num,) = [c for c in it["check"] if c["type"] == "numeric"]
        assert got[0] == num["answer"] and float(got[0]).is_integer() and got[0] >= 0, q
        assert PR.check_probe(it, f"{q.split('?')[0]}? {int(got[0])}") == 1.0
        assert PR.check_probe(it, f"{int(got[0]) + 1}") == 0.0


def test_general_references_pass_and_echoing_the_question_fails():
    items = [it for it in PR.load_probes("default") if it["family"] == "general"]
    assert len(items) >= 120
    for it in items:
        q = it["messages"][-1]["content"]
        assert PR.check_probe(it, f"The answer is {it['reference']}.") == 1.0, it["id"]
        assert PR.check_probe(it, q) == 0.0, it["id"]
        assert PR.check_probe(it, "I do not know.") == 0.0, it["id"]


def test_yes_no_items_are_balanced_and_exclusive():
    items = [it for it in PR.load_probes("default") if it.get("kind") == "yes_no"]
    refs = [it["reference"] for it in items]
    assert refs.count("yes") >= 5 and refs.count("no") >= 5
    for it in items:
        assert PR.check_probe(it, "Yes and no.") == 0.0


def test_reading_answer_passes_and_copying_the_passage_fails():
    items = [it for it in PR.load_probes("default") if it["family"] == "reading"]
    assert len(items) >= 120
    for it in items:
        passage, question = it["messages"][-1]["content"].split("\n")
        assert it["reference"] in passage
        assert PR.check_probe(it, f"{it['reference']}.") == 1.0, it["id"]
        assert PR.check_probe(it, passage) == 0.0, it["id"]


def _topic(it: dict) -> str:
    """A word the item's topic check accepts ("flower*" -> "flowers"), or a neutral one when it has none."""
    words = next((c["words"] for c in PR._checks(it) if c["type"] == "mentions"), None)
    return (words[0].rstrip("*") + ("s" if words[0].endswith("*") else "")) if words else "calm"


def _compliant(it: dict) -> str:
    """A hand-built answer that follows the item's instruction and is about its topic (per kind, from its own
    parameters)."""
    checks = {c["type"]: c for c in PR._checks(it)}
    kind, t = it["kind"], _topic(it)
    if kind == "lowercase":
        return f"the {t} are calm and quiet here."
    if kind == "uppercase":
        return f"THE {t.upper()} ARE CALM AND QUIET HERE."
    if kind == "exact_words":
        return " ".join(["calm"] * checks["word_count"]["min"])
    if kind == "one_word":
        return checks["contains_any"]["answers"][0].capitalize()
    if kind == "starts_with":
        return f"{checks['starts_with']['phrase']}, the {t} are calm here."
    if kind == "ends_with":
        return f"The {t} are calm here. {checks['ends_with']['phrase']}"
    if kind == "keyword":
        return f"The {t} are {checks['required_keywords']['keywords'][0]} here."
    if kind == "forbidden":
        return "It is calm here."
    if kind == "no_comma":
        return f"The {t} are calm here."
    if kind == "bullets":
        return "\n".join(f"- {w}" for w in checks["bullets_from"]["words"][: checks["bullet_count"]["n"]])
    if kind == "json":
        nums = checks["json_keys"].get("numbers") or []
        return json.dumps({k: (i + 2 if k in nums else f"value{i}") for i, k in enumerate(checks["json_keys"]["keys"])})
    if kind == "quoted":
        return f'"The {t} are calm here."'
    if kind == "repeat":
        return it["reference"]
    raise AssertionError(f"no compliant answer for kind {kind}")


def _violating(it: dict) -> str:
    checks = {c["type"]: c for c in PR._checks(it)}
    long = " ".join(["calm"] * 30)
    t = _topic(it)
    return {"lowercase": f"The {t} are Calm.", "uppercase": f"THE {t.upper()} ARE Calm.", "exact_words": long,
            "one_word": "An apple", "starts_with": f"Well, the {t} are calm.", "ends_with": f"The {t} are calm here.",
            "keyword": f"The {t} are calm.",
            "forbidden": f"It is a {(checks.get('forbidden_words') or {'words': ['x']})['words'][0]}.",
            "no_comma": f"The {t} are calm, here.", "bullets": "- one", "json": '{"other": 1}',
            "quoted": f"The {t} are calm.", "repeat": "Sure: " + it["reference"]}[it["kind"]]


def test_every_ifeval_item_passes_a_compliant_answer_and_fails_a_violation():
    items = [it for it in PR.load_probes("default") if it["family"] == "ifeval"]
    assert len(items) >= 120
    for it in items:
        assert PR.check_probe(it, _compliant(it)) == 1.0, (it["id"], _compliant(it))
        assert PR.check_probe(it, _violating(it)) == 0.0, (it["id"], _violating(it))


def test_compliant_answers_fit_their_budget_in_smollm2_tokens(smol_spec):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(smol_spec.path))
    for it in PR.load_probes("default"):
        answer = _compliant(it) if it["family"] == "ifeval" else f"The answer is {it['reference']}."
        if it["family"] == "ifeval" and it["kind"] not in ("json", "repeat", "one_word", "exact_words", "bullets"):
            cap = min(c["max"] for c in PR._checks(it) if c["type"] == "word_count")
            filler = " ".join(["calm"] * (cap - len(word_list(answer))))  # a compliant answer AT its word cap
            if it["kind"] == "lowercase":
                filler = filler.lower()
            if it["kind"] == "quoted":
                answer = f'"{filler} {answer[1:]}'
            elif it["kind"] == "starts_with":
                answer = f"{answer} {filler}"
            else:
                answer = f"{filler} {answer}"
            answer = answer.upper() if it["kind"] == "uppercase" else answer
            assert len(word_list(answer)) == cap and PR.check_probe(it, answer) == 1.0, (it["id"], answer)
        assert len(tok(answer)["input_ids"]) < it["max_new_tokens"], (it["id"], answer)


# ----------------------------------------------------------------------------- sample size for non-inferiority
# One power analysis (harness.stats, as analysis.py uses it): a paired pass/fail difference has sd sqrt(discordance).

from harness.stats import mde_paired, n_needed_paired  # noqa: E402


def test_probes_needed_textbook_value():
    # (1.96 + 0.8416)^2 * 0.5 / 0.1^2 = 392.4 -> 393 (discordance 2 * 0.5 * 0.5 = 0.5)
    assert n_needed_paired(math.sqrt(0.5), 0.10) == 393


def test_probes_needed_uses_the_given_discordance():
    assert n_needed_paired(math.sqrt(0.2), 0.10) == 157


def test_probes_needed_smaller_margin_needs_more():
    sd = math.sqrt(0.42)
    assert n_needed_paired(sd, 0.05) > n_needed_paired(sd, 0.10) > n_needed_paired(sd, 0.20)


def test_probes_needed_more_power_needs_more():
    assert n_needed_paired(0.6, 0.10, power=0.9) > n_needed_paired(0.6, 0.10, power=0.8)


def test_probes_needed_stricter_alpha_needs_more():
    assert n_needed_paired(0.6, 0.10, alpha=0.01) > n_needed_paired(0.6, 0.10, alpha=0.05)


def test_probes_needed_is_none_without_a_margin_to_show():
    assert n_needed_paired(0.6, 0.0) is None and n_needed_paired(0.6, -0.05) is None


def test_probe_mde_is_the_inverse_of_probes_needed():
    sd = math.sqrt(0.48)
    n = n_needed_paired(sd, 0.10)
    assert mde_paired(sd, n) <= 0.10 < mde_paired(sd, n - 1)
    assert mde_paired(sd, 0) == math.inf


def test_probes_needed_reaches_its_power_in_simulation():
    """Simulated paired outcomes at the computed n: the CI's lower bound clears -margin in about 80% of runs."""
    d, margin = 0.3, 0.10
    n = n_needed_paired(math.sqrt(d), margin)
    rng = random.Random(0)
    z, hits, reps = 1.959964, 0, 1500
    for _ in range(reps):
        diffs = []
        for _ in range(n):
            u = rng.random()
            diffs.append(1 if u < d / 2 else -1 if u < d else 0)  # equal true pass rates, discordance d
        mean = sum(diffs) / n
        var = sum((x - mean) ** 2 for x in diffs) / (n - 1)
        hits += mean - z * math.sqrt(var / n) > -margin
    assert 0.76 <= hits / reps <= 0.84, (n, hits / reps)


# ------------------------------------------------------------------------- content, not only shape (issue #21)

TASK_JSON = '{"product": "mobile-app", "severity": "high", "category": "bug"}'  # the demo task's answer form
DEGENERATE = ["", "ok", "thing", "yes", "no", "{}", TASK_JSON]


@pytest.mark.parametrize("answer", DEGENERATE)
@pytest.mark.parametrize("family", PR.FAMILIES)
def test_a_degenerate_answer_passes_no_probe_except_by_chance(family, answer):
    """Empty, "ok", one generic word, `{}` or the task's JSON answer nothing; the only passes allowed are a
    yes/no question whose right answer is that very word (chance: one of two candidates)."""
    items = [it for it in PR.load_probes("default") if it["family"] == family]
    passed = [it for it in items if PR.check_probe(it, answer)]
    by_chance = [it for it in passed if it["kind"] == "yes_no" and it["reference"] == answer]
    assert passed == by_chance, [(it["id"], it["messages"][-1]["content"][:60]) for it in passed[:5]]


@pytest.mark.parametrize("kind,prompt_has,good,bad", [
    ("one_word", "Name one kitchen tool", "whisk", "furniture"),
    ("one_word", "Name one fish", "salmon", "fish"),
    ("next_month", "comes after February", "March comes after February.", "February comes after March"),
    ("next_month", "comes after February", "The month after February is March.", "It is January."),
    ("json", "a day of the week and its weather", '{"day": "Monday", "weather": "sunny"}',
     '{"day": "Monday", "weather": "Monday"}'),
    ("lowercase", "about flowers", "flowers bloom in the spring sun", "ok"),
    ("bullets", "fruits", "- apple\n- pear\n- plum", "- web\n- mobile\n- api"),
])
def test_probe_checks_verify_the_content(kind, prompt_has, good, bad):
    """The issue's examples: terse or shape-only answers that used to pass now fail; a right answer passes."""
    items = [it for it in PR.load_probes("default") if it.get("kind") == kind
             and prompt_has in it["messages"][-1]["content"]]
    assert items, (kind, prompt_has)
    for it in items:
        if kind == "bullets":  # the item's own count
            n = next(c["n"] for c in it["check"] if c["type"] == "bullet_count")
            good_n = "\n".join(good.splitlines()[:n] + ["- peach", "- mango"][: max(0, n - 3)])
            assert PR.check_probe(it, good_n) == 1.0, (it["id"], good_n)
        else:
            assert PR.check_probe(it, good) == 1.0, (it["id"], good)
        assert PR.check_probe(it, bad) == 0.0, (it["id"], bad)


def test_reading_accepts_a_restated_context_with_the_answer_but_not_a_copied_passage():
    item = {"check": [{"type": "names_fact", "answers": ["red"], "others": ["blue"], "own": ["Mia has a red kite"],
                       "context": ["Leo has a blue ball"]}, {"type": "plain_text"}]}
    assert PR.check_probe(item, "red") == 1.0
    assert PR.check_probe(item, "Mia has a red kite.") == 1.0
    assert PR.check_probe(item, "Leo has a blue ball, so Mia's kite is red.") == 1.0
    assert PR.check_probe(item, "Mia has a red kite and Leo has a blue ball.") == 0.0  # a copy answers nothing
    assert PR.check_probe(item, "blue") == 0.0
    assert PR.check_probe(item, "red or blue") == 0.0


def test_the_generated_sets_are_the_committed_ones():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(PR.probes_dir() / "make_probes.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_echoing_the_arithmetic_question_is_no_answer():
    """"9 divided by 3" ends in 3 but answers nothing; the same words followed by the result do."""
    items = [it for it in PR.load_probes("default") if it.get("kind") in ("div", "word_mul")]
    for it in items:
        (num,) = [c for c in it["check"] if c["type"] == "numeric"]
        q = it["messages"][-1]["content"].split(" Reply with")[0]
        echo = q[len("What is "):].rstrip("?") if q.startswith("What is ") else q.split(". ")[0]
        assert PR.check_probe(it, echo) == 0.0, (it["id"], echo)
        assert PR.check_probe(it, f"{echo} = {num['answer']}") == 1.0, (it["id"], echo)
    # the case that passed before: the divisor equals the quotient ("What is 9 divided by 3?")
    assert any(it["kind"] == "div" and it["messages"][-1]["content"].split("?")[0].endswith(f" {c['answer']}")
               for it in items for c in it["check"] if c["type"] == "numeric")
