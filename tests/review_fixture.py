"""A sweep for the review page tests: tests/fixtures_sweep.py's demo sweep with outputs a person would read.

write_review_sweep(root) -> sweep dir. On top of write_sweep(root, "clear_win"):
- every task output is a distinct text (JSON for json_valid rows, prose otherwise), so diffs and search mean something;
- prompts carry a system message, and the few-shot baseline's prompts carry a demonstration turn (the review page
  and the labels must use the zero-shot question, not the few-shot one);
- one backend error (ERROR_ROW: error set, output "", every metric None), one output that tries to run a script
  (XSS_ROW), one truncated output (finish_reason "length");
- scores/judge.jsonl (contract 4: order_ab / order_ba with rationales, some orders disagreeing) and pointwise rows.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from fixtures_sweep import write_sweep

CHOSEN = "r8-lr0.0002"
SYSTEM = "Return the fields of the record as one JSON object."
XSS = '</script><script>alert(1)</script><img src=x onerror="alert(2)">&amp;'
XSS_ROW = ("base", "demo-002")
ERROR_ROW = ("r4-lr0.001", "demo-005")
ERROR = "HTTP 500 from the backend: upstream overloaded"
CITIES = ["Lyon", "Porto", "Graz", "Turku", "Leeds", "Basel", "Gdansk", "Cork"]
JUDGED = 12  # judge rows for the first JUDGED items, chosen adapter vs each baseline


def _output(rng: random.Random, sid: str, row: dict) -> str:
    k = int(sid.split("-")[1])
    if row["metrics"]["json_valid"]:
        city = CITIES[k % len(CITIES)] if row["metrics"]["all_fields_correct"] else rng.choice(CITIES)
        return json.dumps({"name": f"Person {k}", "city": city, "year": 1990 + k % 30})
    return rng.choice(["Sure! The name is Person {k} and they live in {c}.",
                       "I think the record says {c}, but I am not sure about the year.",
                       "Name: Person {k}\nCity: {c}"]).format(k=k, c=rng.choice(CITIES))


def write_review_sweep(root: str | Path, *, judge: bool = True) -> Path:
    sweep = write_sweep(root, "clear_win", judge="reliable" if judge else None)
    scores = sweep / "scores" / "scores.jsonl"
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    rng = random.Random(7)
    for r in rows:
        if r["split"] != "task":
            continue
        sid = r["sample_id"]
        k = int(sid.split("-")[1])
        question = f"Record {k}: Person {k} moved to {CITIES[k % len(CITIES)]} in {1990 + k % 30}. Extract the fields."
        demo = [{"role": "user", "content": "Record 0: Ann moved to Oslo in 2001. Extract the fields."},
                {"role": "assistant", "content": '{"name": "Ann", "city": "Oslo", "year": 2001}'}]
        r["prompt"] = ([{"role": "system", "content": SYSTEM}] + (demo if r["model"] == "fewshot" else [])
                       + [{"role": "user", "content": question}])
        r["reference"] = json.dumps({"name": f"Person {k}", "city": CITIES[k % len(CITIES)], "year": 1990 + k % 30})
        r["output"] = _output(rng, sid, r)
        r["error"] = None
        r["finish_reason"] = "stop"
        r["completion_tokens"] = len(r["output"]) // 4
        if (r["model"], sid) == XSS_ROW:
            r["output"] = XSS
        if (r["model"], sid) == ERROR_ROW:
            r.update(output="", error=ERROR, finish_reason="error", completion_tokens=0,
                     metrics={k2: None for k2 in r["metrics"]})
        if (r["model"], sid) == ("fewshot", "demo-007"):
            r["finish_reason"] = "length"
    scores.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))

    if judge:
        jrows = []
        ids = [f"demo-{k:03d}" for k in range(JUDGED)]
        for b in ("base", "fewshot"):
            for n, sid in enumerate(ids):
                disagree = n % 4 == 1
                ab = {"winner": "A", "reason": f"A ({CHOSEN}) names the city correctly for {sid}."}
                ba = ({"winner": "A", "reason": f"A ({b}) is shorter, so it is better for {sid}."} if disagree
                      else {"winner": "B", "reason": f"B ({CHOSEN}) keeps the year for {sid}."})
                jrows.append({"kind": "pairwise", "sample_id": sid, "a": CHOSEN, "b": b, "order_ab": ab,
                              "order_ba": ba, "verdict": "tie" if disagree else CHOSEN, "consistent": not disagree})
        for m in ("base", CHOSEN):
            for n, sid in enumerate(ids):
                jrows.append({"kind": "pointwise", "model": m, "sample_id": sid, "score": 2 + n % 4,
                              "reason": f"{m} on {sid}: score {2 + n % 4}"})
        (sweep / "scores" / "judge.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in jrows))
    return sweep


PROBE_XSS = '<script>alert(4)</script><img src=x onerror="alert(5)"> &lt; done'
PROBE_XSS_ROW = (CHOSEN, "general_knowledge-003")
PROBE_ERROR_ROW = ("r4-lr0.001", "general_knowledge-004")
PROBE_BLEED = {"arithmetic": 0.25}  # every adapter answers the first quarter of the arithmetic probes in JSON
PROBE_EXTRA_BLEED_ROW = ("r4-lr0.001", "general_knowledge-010")  # ... and this one bleeds once more


def write_probe_sweep(root: str | Path, *, n_probe: int = 40, name: str | None = None) -> Path:
    """write_sweep's clear_win sweep with format bleed (PROBE_BLEED) and probe rows as harness.evaluate writes them
    (metrics {"pass", "bleed"}), one more bleeding answer of one adapter (PROBE_EXTRA_BLEED_ROW), one probe output that tries to run markup (PROBE_XSS_ROW, pass 0, no bleed)
    and one failed probe request (PROBE_ERROR_ROW: error set, with stale metrics the page must ignore)."""
    sweep = write_sweep(root, "clear_win", judge=None, bleed=PROBE_BLEED, n_probe=n_probe, name=name)
    scores = sweep / "scores" / "scores.jsonl"
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    for r in rows:
        if r["split"] != "probe":
            continue
        r["metrics"] = {"pass": r["metrics"]["exact_match"], "bleed": r["metrics"]["bleed"]}
        r["prompt"] = [{"role": "user", "content": f"Probe {r['sample_id']}: answer in one short sentence."}]
        if (r["model"], r["sample_id"]) == PROBE_XSS_ROW:
            r.update(output=PROBE_XSS, metrics={"pass": 0.0, "bleed": 0.0})
        if (r["model"], r["sample_id"]) == PROBE_EXTRA_BLEED_ROW:
            r.update(output='{"product": "web", "severity": "high"}', metrics={"pass": 0.0, "bleed": 1.0})
        if (r["model"], r["sample_id"]) == PROBE_ERROR_ROW:
            # stale values on purpose: a row with an error has no pass and no bleed, whatever its metrics say
            r.update(output="", error=ERROR, finish_reason="error", metrics={"pass": 0.0, "bleed": 1.0})
    scores.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return sweep
