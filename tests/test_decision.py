"""The decision, one behaviour per tiny named case (Inspect-style): per-item score tables in, outcome out.

Rows are built by `table()`: each model gets a list of pass/fail values on the primary metric (and optionally
json_valid, knowledge flags, probes, errors); runs carry validation losses. No model, no files.
"""
from __future__ import annotations

import pytest

from harness.analysis import RunView, Settings, analyze, forgetting_status, score_table
from harness.decision import decide

P = "acc"
S = Settings(n_boot=400)


def ones(k: int, n: int) -> list[float]:
    """k passes then n - k failures."""
    return [1.0] * k + [0.0] * (n - k)


def table(models: dict[str, list[float]], *, form: dict[str, list[float]] | None = None,
          knowledge: list[bool] | None = None, probes: dict[str, dict[str, list[float]]] | None = None,
          errors: dict[str, set[int]] | None = None, val: dict[str, list[float]] | None = None,
          bleed: dict[str, dict[str, list[float]]] | None = None) -> list[dict]:
    rows = []
    for m, vals in models.items():
        for i, v in enumerate(vals):
            err = i in (errors or {}).get(m, set())
            metrics = {P: None if err else v}
            if form and m in form:
                metrics["json_valid"] = None if err else form[m][i]
            rows.append({"model": m, "split": "task", "sample_id": f"s{i:03d}", "metrics": metrics,
                         "knowledge": bool(knowledge[i]) if knowledge else False,
                         "error": "HTTP 500: upstream died" if err else None})
    for m, fams in (probes or {}).items():
        for fam, vals in fams.items():
            for i, v in enumerate(vals):
                b = (bleed or {}).get(m, {}).get(fam)
                rows.append({"model": m, "split": "probe", "family": fam, "sample_id": f"{fam}-{i}",
                             "metrics": {"pass": v, "bleed": b[i] if b else None},
                             "prompt": [{"role": "user", "content": f"{fam} question {i}?"}],
                             "output": '{"product": "api-gateway"}' if b and b[i] else "an answer"})
    for m, vals in (val or {}).items():
        for i, v in enumerate(vals):
            rows.append({"model": m, "split": "val", "sample_id": f"v{i}", "metrics": {P: v}})
    return rows


def runs(**losses: float) -> list[RunView]:
    return [RunView(rid, "", "complete", {"lora.r": 8, "train.lr": 2e-4 * (i + 1)}, loss, True)
            for i, (rid, loss) in enumerate(losses.items())]


def run(rows, rs=None, **settings) -> tuple:
    import dataclasses

    an = analyze(rows, rs if rs is not None else runs(a1=0.5), dataclasses.replace(S, **settings), primary=P)
    return an, decide(an)


SAME_PROBES = {"base": {"general": ones(100, 150)}, "a1": {"general": ones(100, 150)}}


# ------------------------------------------------------------------------------------------------- ship

def test_clear_win_with_no_forgetting_ships():
    _, d = run(table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(50, 60)}, probes=SAME_PROBES))
    assert d.outcome == "ship"
    assert d.headline.startswith("SHIP `")


def test_clear_win_without_probes_ships_with_care_saying_not_measured():
    _, d = run(table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(50, 60)}))
    assert d.outcome == "ship_with_care"
    assert "not measured" in d.headline


def test_clear_win_with_significant_forgetting_names_the_family():
    probes = {"base": {"math": ones(100, 150)}, "a1": {"math": ones(40, 150)}}
    _, d = run(table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(50, 60)}, probes=probes))
    assert d.outcome == "ship_with_care" and "math" in d.headline and d.forgetting == {"math": "fail", "all": "fail"}


def test_forgetting_that_cannot_be_ruled_out_says_how_many_probes():
    probes = {"base": {"math": ones(9, 13)}, "a1": {"math": ones(7, 13)}}
    _, d = run(table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(50, 60)}, probes=probes))
    assert d.outcome == "ship_with_care" and d.forgetting == {"math": "inconclusive", "all": "inconclusive"}
    assert any("probes would show" in s for s in d.next_steps)


def test_a_family_too_small_to_judge_blocks_no_forgetting_even_when_the_pool_passes():
    """Pooling must not mask a family: 'no forgetting' needs every family non-inferior on its own."""
    probes = {"base": {"big": ones(100, 150), "small": ones(9, 13)}, "a1": {"big": ones(100, 150), "small": ones(8, 13)}}
    _, d = run(table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(50, 60)}, probes=probes))
    assert d.outcome == "ship_with_care" and d.forgetting == {"big": "pass", "small": "inconclusive", "all": "pass"}
    assert "cannot be ruled out on small" in d.headline and "no forgetting" not in d.headline
    assert any("Settle `small`" in s for s in d.next_steps)


def test_a_family_down_ten_points_with_others_up_is_named_not_pooled_away():
    """The issue's demo: general -0.10 [-0.23, +0.03] (n = 40) hidden by form-only gains elsewhere."""
    probes = {"base": {"general": ones(28, 40), "arithmetic": ones(10, 40), "ifeval": ones(8, 40), "reading": ones(9, 40)},
              "a1": {"general": ones(22, 28) + [1.0, 1.0] + [0.0] * 10, "arithmetic": ones(10, 40),
                     "ifeval": ones(19, 40), "reading": ones(18, 40)}}
    an, d = run(table({"base": ones(0, 60), "fewshot": ones(2, 60), "a1": ones(54, 60)}, probes=probes))
    g = an.forgetting["a1"]["general"].comparison
    assert g.diff == pytest.approx(-0.1) and g.lo < -0.1 < 0 < g.hi
    assert an.forgetting["a1"]["all"].status == "pass"  # the pool alone would have said "no forgetting"
    assert d.outcome == "ship_with_care" and "no forgetting" not in d.headline
    assert "general (-0.100" in d.headline and "ifeval" not in d.headline.split("ruled out on")[-1]
    assert any("Settle `general`" in s for s in d.next_steps)


def test_twelve_bleeding_probes_in_160_are_not_shipped_and_the_headline_names_bleed():
    fams = ("general", "arithmetic", "ifeval", "reading")
    probes = {m: {f: ones(40, 40) for f in fams} for m in ("base", "a1")}
    bleed = {"base": {f: [0.0] * 40 for f in fams},
             "a1": {f: [1.0] * (11 if f == "arithmetic" else 1 if f == "ifeval" else 0) + [0.0] * (29 if f == "arithmetic"
                    else 39 if f == "ifeval" else 40) for f in fams}}
    an, d = run(table({"base": ones(0, 60), "fewshot": ones(2, 60), "a1": ones(54, 60)}, probes=probes, bleed=bleed))
    b = an.bleed["a1"]
    assert (b.count, b.n, b.base_count, b.status) == (12, 160, 0, "bleeds")
    assert b.families["arithmetic"] == (11, 0, 40) and b.comparison.diff == pytest.approx(12 / 160)
    assert d.outcome == "ship_with_care" and "12 of 160" in d.headline and "task's output form" in d.headline
    assert '{"product": "api-gateway"}' in d.headline  # an example, so a person sees what bleed means
    assert any("train.replay" in s for s in d.next_steps)


def test_bleed_within_max_bleed_and_clean_families_ship():
    probes = {m: {"general": ones(100, 150)} for m in ("base", "a1")}
    bleed = {"base": {"general": [0.0] * 150}, "a1": {"general": [1.0] + [0.0] * 149}}
    an, d = run(table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(50, 60)}, probes=probes, bleed=bleed))
    assert an.bleed["a1"].status == "clean" and d.outcome == "ship"
    assert "no forgetting on any of the 1 probe families and no format bleed" in d.headline


def test_bleed_is_excess_over_base():
    """A base that already answers 10% of probes in that form: the adapter's 11% is not bleed it caused."""
    probes = {m: {"general": ones(100, 150)} for m in ("base", "a1")}
    bleed = {"base": {"general": [1.0] * 15 + [0.0] * 135}, "a1": {"general": [1.0] * 16 + [0.0] * 134}}
    an, _ = run(table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(50, 60)}, probes=probes, bleed=bleed))
    assert an.bleed["a1"].status == "clean"
    an, _ = run(table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(50, 60)}, probes=probes, bleed=bleed),
                max_bleed=0.0)
    assert an.bleed["a1"].status == "bleeds"


def test_two_probe_flips_out_of_13_are_not_forgetting():
    """The demo's old gate failed on 2 of 13 arithmetic probes: that is inconclusive, never a fail."""
    probes = {"base": {"arithmetic": ones(13, 13)}, "a1": {"arithmetic": ones(11, 13)}}
    an, _ = run(table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(50, 60)}, probes=probes))
    assert an.forgetting["a1"]["arithmetic"].status == "inconclusive"


def test_target_met_ships_and_missed_keeps_training():
    rows = table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(45, 60)}, probes=SAME_PROBES)
    assert run(rows, target=0.7)[1].outcome == "ship"
    _, d = run(rows, target=0.9)
    assert d.outcome == "keep_training" and "misses the target 0.9 by 0.150" in d.headline


# ------------------------------------------------------------------------------------------------ prompt

def test_prompt_meeting_the_target_wins_when_adapter_is_not_better():
    _, d = run(table({"base": ones(10, 60), "fewshot": ones(50, 60), "a1": ones(52, 60)}), target=0.8)
    assert d.outcome == "use_prompt" and "few-shot prompt" in d.headline


def test_without_target_a_prompt_that_beats_base_and_ties_the_adapter_wins():
    _, d = run(table({"base": ones(10, 60), "fewshot": ones(48, 60), "a1": ones(49, 60)}))
    assert d.outcome == "use_prompt"


def test_base_already_meeting_the_target_is_use_prompt_zero_shot():
    _, d = run(table({"base": ones(55, 60), "fewshot": ones(54, 60), "a1": ones(56, 60)}), target=0.9)
    assert d.outcome == "use_prompt"


def test_weak_fewshot_and_weak_adapter_with_form_gains_is_keep_training_never_use_prompt():
    """Few-shot 1/60, adapter 5/60 on the primary metric, but JSON validity 0.4 -> 1.0: keep training."""
    rows = table({"base": ones(0, 60), "fewshot": ones(1, 60), "a1": ones(5, 60)},
                 form={"base": ones(5, 60), "fewshot": ones(24, 60), "a1": ones(60, 60)})
    _, d = run(rows, target=0.9)
    assert d.outcome == "keep_training"
    assert any("json_valid" in r for r in d.reasons)


# ------------------------------------------------------------------------------------------- wrong tool

def test_knowledge_only_set_where_nothing_improves_is_wrong_tool():
    rows = table({"base": ones(6, 60), "fewshot": ones(6, 60), "a1": ones(7, 60)}, knowledge=[True] * 60)
    _, d = run(rows)
    assert d.outcome == "wrong_tool" and "form, not the facts" in d.headline


def test_form_items_improve_knowledge_items_do_not_is_wrong_tool():
    know = [i % 2 == 0 for i in range(80)]
    base = [0.0] * 80
    a1 = [0.0 if k else 1.0 for k in know]  # every form item right, every knowledge item wrong
    _, d = run(table({"base": base, "fewshot": base, "a1": a1}, knowledge=know))
    assert d.outcome == "wrong_tool"


def test_knowledge_items_improving_too_is_not_wrong_tool():
    know = [i % 2 == 0 for i in range(80)]
    _, d = run(table({"base": [0.0] * 80, "fewshot": [0.0] * 80, "a1": [1.0] * 80}, knowledge=know,
                     probes={"base": {"g": ones(100, 150)}, "a1": {"g": ones(100, 150)}}))
    assert d.outcome == "ship"


# ---------------------------------------------------------------------------------- no gain / too small

def test_identical_models_on_many_items_are_no_gain():
    v = ones(30, 200)
    _, d = run(table({"base": v, "fewshot": v, "a1": v}))
    assert d.outcome == "no_gain"


def test_adapter_worse_than_base_is_no_gain():
    _, d = run(table({"base": ones(40, 60), "fewshot": ones(40, 60), "a1": ones(10, 60)}))
    assert d.outcome == "no_gain" and "worse" in d.headline


@pytest.mark.parametrize("n", [1, 4])
def test_tiny_eval_sets_are_inconclusive_never_a_pass(n):
    _, d = run(table({"base": [0.0] * n, "fewshot": [0.0] * n, "a1": [1.0] * n}))
    assert d.outcome == "inconclusive"
    assert d.sample_size["items_needed"] > 20


def test_small_set_with_wide_cis_is_inconclusive_with_items_needed():
    _, d = run(table({"base": ones(5, 30), "fewshot": ones(6, 30), "a1": ones(9, 30)}))
    assert d.outcome == "inconclusive"
    assert any("eval items" in s for s in d.next_steps)


# ---------------------------------------------------------------------------------------------- errors

def test_adapter_erroring_on_30_percent_is_unusable_naming_requests():
    rows = table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(50, 60)},
                 errors={"a1": set(range(0, 60, 3))})
    an, d = run(rows)
    assert d.outcome == "unusable"
    assert "20 of 60 requests failed" in d.headline and "s000" in d.headline and "HTTP 500" in d.headline


def test_errors_are_not_scored_as_wrong_answers():
    t = score_table(table({"a1": ones(3, 4)}, errors={"a1": {0}}))
    assert t.task["a1"][P]["s000"] is None and t.errors["a1"] == {"s000": "HTTP 500: upstream died"}


def test_few_errors_below_the_threshold_still_decide():
    rows = table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(50, 60)}, errors={"a1": {59}},
                 probes=SAME_PROBES)
    assert run(rows)[1].outcome == "ship"


def test_nothing_scored_is_unusable():
    _, d = run([], [])
    assert d.outcome == "unusable"


# -------------------------------------------------------------------------------------------- selection

def test_winner_is_chosen_on_validation_loss_not_eval_scores():
    rows = table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(40, 60), "a2": ones(55, 60)})
    an, d = run(rows, runs(a1=0.4, a2=0.9))
    assert d.chosen == "a1" and an.selection.method == "val_loss"
    assert "validation loss" in d.selection


def test_winner_can_be_chosen_on_a_val_split_metric():
    rows = table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(40, 60), "a2": ones(30, 60)},
                 val={"a1": ones(3, 20), "a2": ones(15, 20)})
    an, d = run(rows, runs(a1=0.4, a2=0.9), select_by=P)
    assert d.chosen == "a2" and an.selection.method == f"val:{P}"


def test_without_validation_signal_the_choice_is_marked_biased_and_holm_adjusted():
    rows = table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(40, 60), "a2": ones(55, 60)})
    rs = [RunView("a1", "", "complete", {"lora.r": 4}), RunView("a2", "", "complete", {"lora.r": 8})]
    an, d = run(rows, rs)
    assert d.chosen == "a2" and not an.selection.unbiased
    assert an.comparison("a2", "base").p_adjusted is not None and "optimistic" in d.selection


def test_chosen_adapter_comparison_stands_alone_others_are_holm_adjusted():
    rows = table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(40, 60), "a2": ones(55, 60)})
    an, _ = run(rows, runs(a1=0.4, a2=0.9))
    assert an.comparison("a1", "base").p_adjusted is None
    assert an.comparison("a2", "base").p_adjusted is not None


def test_adapter_that_did_not_learn_is_never_chosen():
    rows = table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(10, 60), "a2": ones(50, 60)})
    rs = runs(a1=0.1, a2=0.9)
    rs[0].improved = False
    an, d = run(rows, rs)
    assert d.chosen == "a2" and "did not learn" in an.selection.excluded["a1"]


def test_no_adapter_learned_is_no_gain():
    rs = runs(a1=0.5)
    rs[0].improved = False
    _, d = run(table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(10, 60)}), rs)
    assert d.outcome == "no_gain" and "no adapter learned" in d.headline


def test_adapters_are_named_by_their_hyperparameters():
    an, d = run(table({"base": ones(10, 60), "fewshot": ones(15, 60), "a1": ones(50, 60)}),
                [RunView("a1", "", "complete", {"lora.r": 16, "train.lr": 2e-4}, 0.5, True)],
                )
    assert d.chosen_name == "r16-lr2e-4"


# --------------------------------------------------------------------------------------- pieces

def test_forgetting_passes_when_ci_low_is_above_minus_margin():
    an, _ = run(table({"base": ones(10, 60), "a1": ones(10, 60)}, probes=SAME_PROBES))
    assert an.forgetting["a1"]["general"].status == "pass"


def test_forgetting_status_inconclusive_gives_probes_needed():
    an, _ = run(table({"base": ones(10, 60), "a1": ones(10, 60)},
                      probes={"base": {"m": ones(10, 20)}, "a1": {"m": ones(8, 20)}}))
    r = an.forgetting["a1"]["m"]
    assert r.status == "inconclusive" and r.probes_needed and r.probes_needed > 20
    assert forgetting_status(r.comparison, 0.5, S)[0] == "pass"


def test_rare_metrics_are_not_compared():
    rows = table({"base": ones(10, 60), "a1": ones(50, 60)})
    for r in rows:
        r["metrics"]["code_fence"] = 1.0 if r["sample_id"] == "s007" and r["model"] == "a1" else 0.0
    an, _ = run(rows)
    assert "code_fence" in an.rare_metrics and "code_fence" not in an.comparisons["base"]["a1"]


def test_seed_spread_and_distinguishability():
    rows = table({"base": ones(10, 60), "a": ones(50, 60), "b": ones(49, 60), "c": ones(51, 60),
                  "x": ones(20, 60), "y": ones(22, 60), "z": ones(19, 60)})
    rs = []
    for rid, cid, loss in (("a", "c1", 0.3), ("b", "c1", 0.31), ("c", "c1", 0.32),
                           ("x", "c2", 0.5), ("y", "c2", 0.52), ("z", "c2", 0.51)):
        rs.append(RunView(rid, "", "complete", {"lora.r": 8 if cid == "c1" else 4}, loss, True, seed=0, config_id=cid))
    an, d = run(rows, rs)
    assert {sp.config_id: len(sp.values) for sp in an.seeds} == {"c1": 3, "c2": 3}
    assert an.seed_test["p_value"] < 0.05 and d.chosen == "a"


# ------------------------------------------------------------------------------------------- keep training

def test_keep_training_headline_names_at_most_three_metrics_and_the_reasons_list_all():
    rows = table({"base": ones(0, 60), "fewshot": ones(1, 60), "a1": ones(5, 60)})
    for r in rows:  # twelve other metrics the adapter gains on, by different amounts
        if r["split"] == "task":
            k = int(r["sample_id"][1:])
            for j in range(12):
                r["metrics"][f"m{j:02d}"] = float(r["model"] == "a1" and k < 20 + 3 * j)
    _, d = run(rows, target=0.9)
    assert d.outcome == "keep_training"
    named = [f"m{j:02d}" for j in range(12) if f"m{j:02d}" in d.headline]
    assert named == ["m09", "m10", "m11"], d.headline  # the largest gains
    assert "and 9 more metrics" in d.headline
    assert all(f"m{j:02d}" in " ".join(d.reasons) for j in range(12))


@pytest.mark.parametrize("losses,falling", [
    ([0.0250, 0.0215, 0.0209, 0.0208], False),   # the 0.0209 -> 0.0208: a plateau
    ([1.20, 0.90, 0.70, 0.55], True),            # clearly still going down
    ([1.20, 0.90, 0.91, 0.60], False),           # noisy: one rise among the drops
    ([0.80, 0.60], True),                        # one 25% drop, no noise to judge: large enough
    ([0.80, 0.795], False),                      # one 0.6% drop: not a trend
    ([0.50, 0.40, 0.45], False),                 # the last value is not the best
])
def test_still_falling_means_a_drop_beyond_the_curve_noise(losses, falling):
    from harness.decision import val_trend

    assert val_trend(losses)["falling"] is falling


def test_a_plateau_is_not_called_undertrained():
    rows = table({"base": ones(0, 60), "fewshot": ones(1, 60), "a1": ones(5, 60)},
                 form={"base": ones(5, 60), "fewshot": ones(24, 60), "a1": ones(60, 60)})
    rv = runs(a1=0.0208)
    rv[0].curves = {"val": [{"step": s, "loss": v} for s, v in ((10, 0.025), (20, 0.0215), (30, 0.0209), (40, 0.0208))]}
    _, d = run(rows, rv, target=0.9)
    assert d.outcome == "keep_training"
    steps = " ".join(d.next_steps)
    assert "undertrained" not in steps and "flattened" in steps and "0.0209 -> 0.0208" in steps
