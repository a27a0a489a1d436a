"""Issue #22 item 11: a task's regular expression runs on model output, which anyone can shape. A pattern that
backtracks catastrophically ('(a|aa)+$' on 40 a's and a b: about 10^8 steps for Python's re) must end in a
bounded time as an unscored value, in the task metric (regex_match) and in format bleed (answer_pattern)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from hostile_kit import REPO

EVIL_PATTERN, EVIL_OUTPUT = "(a|aa)+$", "a" * 40 + "b"

CHILD = """
import json, sys, time
from harness.bleed import TaskForm, bleeds
from harness.metrics import score_sample
t = time.perf_counter()
values, details = score_sample(sys.argv[2], "", [{"name": "regex_match", "pattern": sys.argv[1]}])
bleed = bleeds(TaskForm("pattern", pattern=sys.argv[1].rstrip("$")), {}, sys.argv[2])
print(json.dumps({"values": values, "details": details, "bleed": bleed, "s": time.perf_counter() - t}))
"""


def _run(pattern: str, output: str) -> dict:
    p = subprocess.run([sys.executable, "-c", CHILD, pattern, output], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)  # the old code ran for hours
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_a_catastrophic_pattern_on_a_hostile_output_is_unscored_in_bounded_time():
    r = _run(EVIL_PATTERN, EVIL_OUTPUT)
    assert r["values"] == {"regex_match": None}
    assert "longer than" in r["details"]["regex_match"]
    assert r["bleed"] is None
    assert r["s"] < 10


def test_ordinary_patterns_keep_re_semantics():
    assert _run("^a+b$", EVIL_OUTPUT)["values"] == {"regex_match": 1.0}
    r = _run("ab+c", EVIL_OUTPUT)
    assert r["values"] == {"regex_match": 0.0}
