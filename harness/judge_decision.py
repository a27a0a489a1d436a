"""The judge as the primary metric: task.yaml `primary_metric: judge:pairwise` or `judge:<rubric>` (issue #24).

Tasks without one right answer (a brand voice, a tone) have no exact metric; a judge decides, or the decision
says it cannot. This module turns the judge's files into the Analysis the decision reads, and says when the
judge may not be trusted. Pure functions (the files are read by harness.report.load); decision.py imports it.

- `judge:<rubric>` (pointwise, e.g. voice 1-5): each item's judge score becomes the task metric `judge:<rubric>`
  on its score row, so the decision compares models with the same paired bootstrap of means as any metric, and
  `target:` is a mean score (e.g. 4).
- `judge:pairwise`: adapter vs few-shot and vs base, judged in both orders; an order-inconsistent pair is a tie
  (harness.judge.core.combine_orders). The comparison is the win rate (ties half) against 0.5: its CI is a
  bootstrap over items, its p-value the sign test over wins and losses (both from judge_summary.json, computed
  once by harness.judge.run.pairwise_summary). When length explains the preference (harness.judge.length), the
  length-controlled win rate, its CI and its Wald p decide instead, and the decision says so. `target:` is the
  win rate over the few-shot prompt (over base when there is no few-shot baseline).
- Trust (`untrusted`): no decision rests on a judge without a calibration on this task's own labels (review.html
  -> `harness judge calibrate --sweep`), with kappa below judge.min_kappa (or a CI reaching 0), made with another
  judge model or task, or whose verdicts flip when the two answers swap places more often than
  decision.min_judge_consistency allows. A generic calibration (LLMBar) is shown, never enough to ship.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from harness.analysis import BASE, FEWSHOT, Analysis, Comparison, Interval, RunView, Settings, analyze, set_verdict
from harness.judge.agreement import labels_needed
from harness.stats import holm, sign_test

JUDGE_PREFIX = "judge:"
PAIRWISE = "judge:pairwise"


def is_judge_metric(name: str | None) -> bool:
    return isinstance(name, str) and name.startswith(JUDGE_PREFIX)


def rubric_of(metric: str) -> str:
    """`judge:voice` -> `voice`."""
    return metric[len(JUDGE_PREFIX):]


def with_judge_scores(rows: list[dict], judge_rows: list[dict], rubric: str) -> list[dict]:
    """Task score rows with each item's pointwise judge score under `judge:<rubric>` (None when the judge gave no
    verdict: a missing value, never a zero). Judge rows of other rubrics are ignored."""
    scores = {(str(j.get("model")), str(j.get("sample_id"))): j.get("score") for j in judge_rows
              if j.get("kind") == "pointwise" and str(j.get("rubric") or "").split("@")[0] == rubric}
    out = []
    for r in rows:
        key = (str(r.get("model")), str(r.get("sample_id")))
        if r.get("split", "task") == "task" and key in scores:
            s = scores[key]
            value = float(s) if isinstance(s, (int, float)) and not isinstance(s, bool) else None
            r = {**r, "metrics": {**(r.get("metrics") or {}), JUDGE_PREFIX + rubric: value}}
        out.append(r)
    return out


def analyze_judged(rows: list[dict], runs: list[RunView], s: Settings, *, primary: str | None, judge: dict | None,
                   judge_rows: list[dict] | None = None, **kw: Any) -> Analysis:
    """harness.analysis.analyze, with a judge primary metric made a metric like any other (see module doc). The one
    entry point of report and gate; a judge primary that has no numbers stays the primary (the decision then says
    the judge cannot decide), it never silently falls back to another metric."""
    if not is_judge_metric(primary):
        return analyze(rows, runs, s, primary=primary, judge=judge, **kw)
    if primary != PAIRWISE:
        an = analyze(with_judge_scores(rows, judge_rows or [], rubric_of(primary)), runs, s, primary=primary,
                     judge=judge, **kw)
        return an if an.primary == primary else dataclasses.replace(an, primary=primary, n_items=0)
    an = analyze(rows, runs, s, primary=None, judge=judge, **kw)
    return _with_pairwise(an)


def pairwise_entry(an: Analysis, a: str, ref: str) -> dict | None:
    for p in (an.judge or {}).get("pairwise") or []:
        if isinstance(p, dict) and p.get("a") == a and p.get("b") == ref:
            return p
    return None


def pairwise_comparison(p: dict, s: Settings) -> Comparison | None:
    """One judge_summary pairwise entry as a Comparison of win rate - 0.5: raw (sign test), or length-controlled
    when length explains the preference. a_only / b_only are the wins and losses."""
    controlled = bool(p.get("length_explained")) and p.get("lc_win_rate_ci") is not None
    rate = p.get("lc_win_rate") if controlled else p.get("win_rate")
    ci = p.get("lc_win_rate_ci") if controlled else p.get("win_rate_ci")
    if rate is None or not ci or None in ci:
        return None
    wins, losses, ties = int(p.get("wins") or 0), int(p.get("losses") or 0), int(p.get("ties") or 0)
    if controlled:
        pv, test = p.get("lc_p"), "length-controlled win rate (logistic on length difference, Wald)"
    else:
        pv, test = p.get("sign_p"), "sign test"
    if pv is None:
        pv = sign_test(wins, losses)
    c = Comparison(str(p.get("a")), str(p.get("b")), PAIRWISE, rate - 0.5, ci[0] - 0.5, ci[1] - 0.5, float(pv), test,
                   wins + losses + ties, float(p.get("outcome_sd") or 0.0), a_only=wins, b_only=losses)
    set_verdict(c, s.alpha)
    return c


def _with_pairwise(an: Analysis) -> Analysis:
    """The Analysis with judge:pairwise as its primary: comparisons vs base and few-shot from the judge summary
    (exploratory adapters Holm-adjusted, as analyze does), and each adapter's number = its win rate over the
    few-shot prompt (over base without one)."""
    s, chosen = an.settings, an.selection.chosen
    comparisons = {ref: {a: dict(per) for a, per in by_a.items()} for ref, by_a in an.comparisons.items()}
    models = {m: dataclasses.replace(st, metrics=dict(st.metrics)) for m, st in an.models.items()}
    for ref in (BASE, FEWSHOT):
        got = {a: c for a in an.adapters if (p := pairwise_entry(an, a, ref)) and (c := pairwise_comparison(p, s))}
        family = [a for a in got if not (a == chosen and an.selection.unbiased)]
        for a, padj in zip(family, holm([got[a].p_value for a in family])):
            got[a].p_adjusted, got[a].adjusted_over = padj, len(family)
            set_verdict(got[a], s.alpha)
        for a, c in got.items():
            comparisons.setdefault(ref, {}).setdefault(a, {})[PAIRWISE] = c
    for a in an.adapters:
        c = comparisons.get(FEWSHOT, {}).get(a, {}).get(PAIRWISE) or comparisons.get(BASE, {}).get(a, {}).get(PAIRWISE)
        if c is not None and a in models:
            models[a].metrics[PAIRWISE] = Interval(c.diff + 0.5, c.lo + 0.5, c.hi + 0.5, c.n)
    cb = comparisons.get(BASE, {}).get(chosen, {}).get(PAIRWISE) if chosen else None
    return dataclasses.replace(an, primary=PAIRWISE, comparisons=comparisons, models=models,
                               n_items=cb.n if cb is not None else 0)


# ------------------------------------------------------------------------------------------------- trust

def untrusted(an: Analysis) -> tuple[str, list[str]] | None:
    """(why, next steps) when the judge may not decide this task; None when it may. See module doc."""
    j, s = an.judge, an.settings
    fix = "point judge=openai at a stronger model (`judge.model=... judge.backend.base_url=...`)"
    if not j:
        return ("the primary metric is the judge, and the judge did not run (no judge_summary.json)",
                ["Judge the sweep: `harness judge run SWEEP judge=openai ...` (or judge=local), then label items in "
                 "report/review.html and run `harness judge calibrate --data labels.jsonl --sweep SWEEP`."])
    if j.get("status") != "ok":
        return (f"the primary metric is the judge, and the judge did not finish ({j.get('status')}: {j.get('error')})",
                ["Re-run the same command once the judge's endpoint answers: what it judged is cached."])
    cal = j.get("calibration")
    label_step = "label items in report/review.html and run `harness judge calibrate --data labels.jsonl --sweep SWEEP`"
    if not cal:
        need = labels_needed([], [], None)
        return (f"the judge has no calibration on this task's labels, so its verdicts cannot be trusted yet: label "
                f"about {need} items in review.html", [label_step[0].upper() + label_step[1:] + "."])
    if cal.get("source") != "task":
        return (f"the judge is calibrated only on generic labels ({_kappa_text(cal)}): generic agreement informs, "
                f"it cannot stand in for this task's labels", [label_step[0].upper() + label_step[1:] + "."])
    if not cal.get("matches_judge", True) or not cal.get("matches_task", True):
        other = "another judge model" if not cal.get("matches_judge", True) else f"task {cal.get('task')!r}"
        return (f"the task calibration was made with {other}: it says nothing about this judge on this task",
                [f"Re-run `harness judge calibrate --data labels.jsonl --sweep SWEEP` with this judge."])
    if not cal.get("reliable"):
        need = cal.get("labels_needed")
        more = f"label about {need} more items in review.html or {fix}" if need else f"{fix}"
        return (f"the judge agrees with your labels at {_kappa_text(cal)}, below judge.min_kappa "
                f"{cal.get('min_kappa')} (or not above chance): {more}", [more[0].upper() + more[1:] + "."])
    if j.get("too_many_missing"):
        return (f"the judge gave no verdict on too many items ({', '.join(j['too_many_missing'])})",
                ["Check the judge's raw replies in judge.jsonl; " + fix + "."])
    flips = _flip_rates(an, cal)
    bad = [(w, v) for w, v in flips if v is not None and v < s.min_judge_consistency]
    if bad:
        what = ", ".join(f"{w} {v:.2f}" for w, v in bad)
        return (f"the judge's verdicts change when the answers swap places (position consistency {what}, below "
                f"{s.min_judge_consistency:.2f}): its preferences are about order, not answers",
                [f"{fix[0].upper() + fix[1:]}; a stronger judge keeps its verdict when the order swaps."])
    return None


def _flip_rates(an: Analysis, cal: dict) -> list[tuple[str, float | None]]:
    out = [("on your labels", cal.get("position_consistency"))]
    a = an.selection.chosen
    if an.primary == PAIRWISE and a:
        for ref in (BASE, FEWSHOT):
            p = pairwise_entry(an, a, ref)
            if p is not None:
                out.append((f"{an.name(a)} vs {an.name(ref)}", p.get("position_consistency")))
    return out


def _kappa_text(cal: dict) -> str:
    k, ci = cal.get("kappa"), cal.get("kappa_ci")
    kt = "n/a (undefined)" if k is None else f"{k:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
    miss = cal.get("missing") or 0
    return f"kappa {kt} (n = {cal.get('n')}" + (f", no verdict on {miss}: unparseable replies count as ties)" if miss
                                                else ")")


# ------------------------------------------------------------------------------------------------ reasons

def judge_reasons(an: Analysis) -> list[str]:
    """The judge's evidence as the decision's reasons list it: who judged, its agreement with the labels, and
    each pairwise comparison of the chosen adapter with raw and length-controlled win rates."""
    j, a = an.judge or {}, an.selection.chosen
    out = []
    cal = j.get("calibration")
    if cal:
        out.append(f"Judge `{j.get('judge_model')}` ({cal.get('source')} calibration): {_kappa_text(cal)}, position "
                   f"consistency {_num(cal.get('position_consistency'))}, min_kappa {cal.get('min_kappa')}.")
    elif j:
        out.append(f"Judge `{j.get('judge_model')}` has not been checked against your labels on this task: its "
                   f"scores above are shown, not used to decide.")
    if an.primary != PAIRWISE or not a:
        return out
    for ref in (FEWSHOT, BASE):
        p = pairwise_entry(an, a, ref)
        if p is None:
            continue
        lc = p.get("lc_win_rate")
        why = (" — length explains the preference, so the length-controlled rate decides." if p.get("length_explained")
               else ".")
        out.append(f"Judge pairwise {an.name(a)} vs {an.name(ref)} (both orders): {p.get('wins')} wins, "
                   f"{p.get('losses')} loss{'' if p.get('losses') == 1 else 'es'}, {p.get('ties')} tie{'' if p.get('ties') == 1 else 's'} ({p.get('inconsistent') or 0} order-inconsistent "
                   f"pairs counted as ties), {p.get('missing') or 0} missing; win rate {_num(p.get('win_rate'))} "
                   f"{_ci(p.get('win_rate_ci'))}, sign test p = {_num(p.get('sign_p'), '.3g')}; length-controlled "
                   f"{_num(lc)} {_ci(p.get('lc_win_rate_ci'))}{why}")
    return out


def length_note(an: Analysis) -> str | None:
    """The clause a headline carries when length explains the judge's preference for the chosen adapter."""
    a = an.selection.chosen
    if an.primary != PAIRWISE or not a:
        return None
    parts = [f"vs {an.name(ref)} raw {_num(p.get('win_rate'))}, length-controlled {_num(p.get('lc_win_rate'))}"
             for ref in (FEWSHOT, BASE) if (p := pairwise_entry(an, a, ref)) and p.get("length_explained")]
    return ("length explains the judge's preference (" + "; ".join(parts) + "), so the length-controlled win rate "
            "decides") if parts else None


def _num(v: Any, spec: str = ".2f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _ci(ci: Any) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci and None not in ci else ""
