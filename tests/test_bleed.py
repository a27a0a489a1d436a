"""Format bleed (harness/bleed.py): which form a task's answers take, and when a probe answer takes it unasked."""
from __future__ import annotations

import csv
import json

from harness.bleed import TaskForm, bleeds, form_of
from tests.conftest import SHARED_DATA

FISH = {"prompt": "Name one fish. Answer with a single word.", "check": {"type": "one_word", "words_from": ["trout", "salmon"]}}
YES_NO = {"prompt": "Is the sun a star? Answer yes or no.", "check": {"type": "one_of", "answers": ["yes"]}}
JSON_PROBE = {"prompt": "Describe a cat as a JSON object.", "check": {"type": "json_keys", "keys": ["name"]}}


def _banking77_labels(step: int = 25) -> list[str]:
    """Every 25th training label (the file is sorted by label): ~400 references over the 77 intents."""
    with (SHARED_DATA / "banking77" / "train.csv").open() as fh:
        return [r["category"] for r in list(csv.DictReader(fh))[::step]]


def test_json_references_make_a_json_task():
    assert form_of(['{"a": 1}', '{"a": 2}', "oops"], json_task=False).kind == "json"


def test_a_json_object_answer_to_a_plain_probe_bleeds():
    assert bleeds(TaskForm("json"), FISH, '{"fish": "fish"}') == 1.0
    assert bleeds(TaskForm("json"), FISH, "trout") == 0.0


def test_json_answer_to_a_probe_asking_for_json_is_not_bleed():
    assert bleeds(TaskForm("json"), JSON_PROBE, '{"name": "Tom"}') is None


def test_a_77_intent_classification_task_is_a_label_set():
    form = form_of(_banking77_labels(), json_task=False)
    assert form.kind == "labels" and "card_arrival" in form.labels and len(form.labels) > 30


def test_an_intent_label_answering_a_fish_probe_bleeds():
    form = form_of(_banking77_labels(), json_task=False)
    assert bleeds(form, FISH, "card_arrival") == 1.0
    assert bleeds(form, FISH, "salmon") == 0.0


def test_a_label_the_probe_accepts_is_not_bleed():
    form = form_of(["yes", "no"] * 10, json_task=False)
    assert bleeds(form, YES_NO, "Yes.") == 0.0


def test_numeric_answers_are_not_a_label_set():
    refs = [json.loads(line)["answer"].rsplit("####", 1)[-1].strip()
            for line in (SHARED_DATA / "gsm8k" / "train.jsonl").read_text().splitlines()[:600]]
    assert form_of(refs, json_task=False).kind == "none"


def test_free_text_answers_leave_bleed_unmeasured():
    refs = [f"Sentence number {i} about something else entirely." for i in range(40)]
    form = form_of(refs, json_task=False)
    assert form.kind == "none" and bleeds(form, FISH, "anything") is None


def test_answer_pattern_wins_over_the_references():
    form = form_of(['{"a": 1}'] * 5, json_task=True, pattern=r"TICKET-\d+")
    assert form.kind == "pattern"
    assert bleeds(form, FISH, "TICKET-42") == 1.0 and bleeds(form, FISH, "trout") == 0.0


def test_snake_case_labels_give_the_task_a_label_shape():
    assert form_of(_banking77_labels(), json_task=False).shape == "snake_case"
    assert form_of(["positive", "negative", "neutral"] * 5, json_task=False).shape is None


def test_a_new_word_in_the_labels_shape_bleeds():
    form = form_of(_banking77_labels(), json_task=False)
    assert bleeds(form, FISH, "day_of_week") == 1.0
    assert bleeds(form, FISH, "trout") == 0.0 and bleeds(form, FISH, "The day of the week") == 0.0


def test_plain_word_labels_flag_only_the_labels_themselves():
    form = form_of(["positive", "negative", "neutral"] * 5, json_task=False)
    assert bleeds(form, FISH, "negative") == 1.0 and bleeds(form, FISH, "day_of_week") == 0.0
