"""The decision with the judge as the primary metric (issue #24): judge verdicts in, outcome out.

Per-item verdicts are built as the judge gives them (each order mapped back, combined by
harness.judge.core.combine_orders) and summarised by the real harness.judge.run.pairwise_summary; the
calibration by the real harness.judge.agreement.calibration_metrics on constructed human labels.
No model, no files.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from harness.analysis import RunView, Settings
from harness.decision import decide
from harness.judge.agreement import calibration_metrics
from harness.judge.core import combine_orders
from harness.judge.length import length_feature
from harness.judge.run import pairwise_summary
from harness.judge_decision import PAIRWISE, analyze_judged

S = Settings(n_boot=400)
N = 30


def verdicts(wins: int, losses: int, ties: int, flipped: int = 0) -> list[dict]:
    """Judge results of x vs y: consistent wins / losses / ties, then `flipped` pairs whose verdict changes with the
    order (x first in one order, y in the other: an order-inconsistent pair)."""
    orders = [("x", "x")] * wins + [("y", "y")] * losses + [("tie", "tie")] * ties + [("x", "y")] * flipped
    out = []
    for w1, w2 in orders:
        v, consistent = combine_orders(w1, w2)
        out.append({"verdict": v, "consistent": consistent})
    return out


def summary_of(a: str, b: str, results: list[dict], len_a: list[int] | None = None, len_b: list[int] | None = None) -> dict:
    n = len(results)
    return pairwise_summary(a, b, results, len_a or [100 + (i * 37) % 50 for i in range(n)],
                            len_b or [100 + (i * 53) % 50 for i in range(n)])


def calibration(agree: int, n: int = N, **extra) -> dict:
    """A task calibration on n labelled pairs of which the judge agrees with `agree` (the rest it calls the other
    way round), as load_calibration hands it to a judge run."""
    labels = [1 if i % 2 else 2 for i in range(n)]
    items = [{"label": g, "output_1": "a" * 20, "output_2": "b" * 20} for g in labels]
    res = [{"verdict": ("x" if g == 1 else "y") if i < agree else ("y" if g == 1 else "x"), "consistent": True}
           for i, g in enumerate(labels)]
    cal = calibration_metrics(items, res, 0.4)
    return {**cal, "source": "task", "task": "voice", "matches_judge": True, "matches_task": True, **extra}


def task_rows(models=("base", "fewshot", "a1"), n: int = N, probes: bool = True) -> list[dict]:
    rows = [{"model": m, "split": "task", "sample_id": f"s{i:03d}", "metrics": {"no_exclamation": 1.0}}
            for m in models for i in range(n)]
    if probes:
        rows += [{"model": m, "split": "probe", "family": "general", "sample_id": f"g{i}",
                  "metrics": {"pass": float(i % 3 != 0)}} for m in ("base", "a1") for i in range(150)]
    return rows


def judged(pairs: list[dict], cal: dict | None, **settings):
    js = {"status": "ok", "judge_model": "rule-judge", "rubric": None, "calibration": cal, "pointwise": {},
          "pairwise": pairs}
    runs = [RunView("a1", "", "complete", {"lora.r": 8}, 0.5, True)]
    an = analyze_judged(task_rows(), runs, dataclasses.replace(S, **settings), primary=PAIRWISE, judge=js)
    return an, decide(an)


PREFERRED = [summary_of("a1", "base", verdicts(26, 1, 3)), summary_of("a1", "fewshot", verdicts(24, 2, 4))]


def test_calibrated_judge_preferring_the_adapter_ships():
    an, d = judged(PREFERRED, calibration(27))
    assert d.outcome == "ship", d.headline
    assert an.comparison("a1", "fewshot").test == "sign test"
    assert any("kappa 0.80" in r for r in d.reasons)


def test_win_rate_target_over_the_few_shot_prompt_applies():
    _, d = judged(PREFERRED, calibration(27), target=0.95)
    assert d.outcome == "keep_training"
    assert "misses the target 0.95" in d.headline


def test_uncalibrated_judge_is_inconclusive_with_labels_needed():
    _, d = judged(PREFERRED, None)
    assert d.outcome == "inconclusive"
    assert "no calibration on this task's labels" in d.headline and "label about" in d.headline


def test_uncalibrated_judge_says_why_its_scores_are_not_used():
    _, d = judged(PREFERRED, None)
    assert any("has not been checked against your labels" in r and "not used to decide" in r for r in d.reasons)


def test_judge_below_min_kappa_is_inconclusive_naming_its_kappa_and_n():
    _, d = judged(PREFERRED, calibration(17))
    assert d.outcome == "inconclusive"
    assert "kappa 0.13" in d.headline and "(n = 30)" in d.headline
    assert "more items in review.html" in d.headline and "judge=openai" in d.headline


def test_generic_calibration_informs_but_does_not_replace_task_labels():
    _, d = judged(PREFERRED, calibration(29, source="generic", task=None))
    assert d.outcome == "inconclusive"
    assert "generic labels" in d.headline


def test_order_inconsistent_pairs_count_as_ties():
    p = summary_of("a1", "fewshot", verdicts(10, 4, 0, flipped=16))
    assert (p["wins"], p["losses"], p["ties"], p["inconsistent"]) == (10, 4, 16, 16)
    an, _ = judged([summary_of("a1", "base", verdicts(26, 1, 3)), p], calibration(27), min_judge_consistency=0.1)
    c = an.comparison("a1", "fewshot")
    assert (c.a_only, c.b_only, c.n) == (10, 4, 30)
    assert abs(c.diff - ((10 + 16 * 0.5) / 30 - 0.5)) < 1e-9


def test_judge_flipping_with_the_order_is_inconclusive():
    p = summary_of("a1", "fewshot", verdicts(10, 4, 0, flipped=16))
    _, d = judged([summary_of("a1", "base", verdicts(26, 1, 3)), p], calibration(27))
    assert d.outcome == "inconclusive"
    assert "swap places" in d.headline and "0.47" in d.headline


def test_preference_explained_by_length_is_decided_on_the_controlled_rate():
    # the judge prefers whichever answer is longer (P(adapter wins) = sigmoid(3 * length feature)), and the
    # adapter is longer on most items: length, not quality, explains the preference
    rng = np.random.default_rng(1)
    len_b = rng.integers(50, 400, size=120)
    len_a = rng.integers(50, 400, size=120) + 120
    p_a = 1 / (1 + np.exp(-3 * length_feature(len_a, len_b)))
    res = [{"verdict": "x" if u < q else "y", "consistent": True} for u, q in zip(rng.uniform(size=120), p_a)]
    p = summary_of("a1", "fewshot", res, list(len_a), list(len_b))
    assert p["length_explained"] and p["win_rate_ci"][0] > 0.5  # raw: the adapter "wins"
    an, d = judged([summary_of("a1", "base", verdicts(26, 1, 3)), p], calibration(27))
    c = an.comparison("a1", "fewshot")
    assert c.test.startswith("length-controlled")
    assert abs(c.diff + 0.5 - p["lc_win_rate"]) < 1e-9
    assert d.outcome != "ship"
    assert "length explains the judge's preference" in d.headline


def test_pointwise_judge_metric_ships_on_a_mean_score_target():
    rows = task_rows()
    score = {"base": 2, "fewshot": 3, "a1": 5}
    jrows = [{"kind": "pointwise", "rubric": "voice@1", "model": r["model"], "sample_id": r["sample_id"],
              "score": score[r["model"]] - (i % 7 == 0)} for i, r in enumerate(rows) if r["split"] == "task"]
    js = {"status": "ok", "judge_model": "rule-judge", "rubric": "voice", "calibration": calibration(27),
          "pointwise": {}, "pairwise": []}
    runs = [RunView("a1", "", "complete", {"lora.r": 8}, 0.5, True)]
    an = analyze_judged(rows, runs, dataclasses.replace(S, target=4.0), primary="judge:voice", judge=js,
                        judge_rows=jrows)
    d = decide(an)
    assert an.primary == "judge:voice"
    assert d.outcome == "ship", d.headline
    assert an.models["a1"].metrics["judge:voice"].mean > 4


def test_pointwise_judge_primary_without_judge_scores_does_not_fall_back_to_another_metric():
    runs = [RunView("a1", "", "complete", {"lora.r": 8}, 0.5, True)]
    an = analyze_judged(task_rows(), runs, S, primary="judge:voice", judge=None)
    d = decide(an)
    assert an.primary == "judge:voice"
    assert d.outcome == "inconclusive" and "judge did not run" in d.headline
