"""The decision: what a careful ML engineer would do with these numbers. Pure functions over an Analysis.

`decide(analysis) -> Decision`. The report leads with it; the gate turns it into an exit code. Outcomes,
checked in this order (the first that holds wins):

  unusable        backend errors above max_error_rate on a model the decision needs, or nothing scored
  inconclusive    fewer paired eval items than min_items: no decision is possible at this size
  ship            the chosen adapter beats base and the few-shot prompt with confidence on the primary
                  metric, meets the target (when there is one), is non-inferior on every probe family on its
                  own and on the pooled probes, and shows no format bleed (probes answered in the task's form)
  ship_with_care  as ship, but forgetting is shown or cannot be ruled out (in any family, or pooled), the
                  adapter bleeds the task's form into general answers, or forgetting was not measured
  use_prompt      the few-shot prompt (or the plain base) meets the target — or, without a target, beats
                  base with confidence — and the adapter is not better than it with confidence
  wrong_tool      items that need knowledge did not improve while form did (or nothing improved on a
                  knowledge-only eval set): fine-tune for form, retrieve for knowledge
  keep_training   the adapter shows it learns (it beats a baseline on the primary metric, or other task
                  metrics moved with confidence) but is not shippable yet: below the target or not yet
                  better than the prompt
  inconclusive    nothing moved with confidence, and the CIs cannot rule out a gain of min_effect
  no_gain         nothing moved, and the CIs rule out a gain worth having (or the adapter is worse)

With the judge as the primary metric (task.yaml `primary_metric: judge:pairwise | judge:<rubric>`,
harness.judge_decision) the same outcomes, after one more check: a judge not calibrated on the task's own labels,
below judge.min_kappa, or flipping its verdicts with the answers' order makes the outcome inconclusive.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.analysis import BASE, BETTER, FEWSHOT, WORSE, Analysis, Comparison, Interval, form_gains, sample_size
from harness.fmt import clip_line, fmt_comparison, fmt_num
from harness.judge_decision import PAIRWISE, is_judge_metric, judge_reasons, length_note, untrusted

OUTCOMES = {
    "ship": "SHIP",
    "ship_with_care": "SHIP WITH CARE",
    "use_prompt": "USE THE PROMPT",
    "keep_training": "KEEP TRAINING",
    "no_gain": "NO GAIN",
    "wrong_tool": "WRONG TOOL",
    "inconclusive": "INCONCLUSIVE",
    "unusable": "UNUSABLE",
}
SHIPPABLE = ("ship", "ship_with_care")
HEADLINE_METRICS = 3  # a headline names at most this many metrics; the reasons list them all


@dataclass
class Decision:
    outcome: str
    chosen: str | None             # run id of the adapter the decision is about
    chosen_name: str | None        # its hyperparameters, e.g. r16-lr2e-4
    headline: str
    reasons: list[str]
    next_steps: list[str]
    numbers: dict[str, Interval]   # base / fewshot / adapter on the primary metric
    primary: str | None
    target: float | None
    target_source: str | None
    meets_target: bool | None
    selection: str                 # how the adapter was chosen, in words
    forgetting: dict[str, str] = field(default_factory=dict)  # family -> pass | fail | inconclusive
    problems: list[str] = field(default_factory=list)  # why the input is unusable
    sample_size: dict = field(default_factory=dict)


def decide(an: Analysis) -> Decision:
    """The decision (see module doc). With the judge as the primary metric (harness.judge_decision) the same
    outcomes, after one more check: an untrusted judge makes the outcome inconclusive."""
    d = _decide(an)
    note = length_note(an) if is_judge_metric(an.primary) and not d.problems and untrusted(an) is None else None
    if note:
        d.headline = d.headline[:-1] + f"; {note}."
    return d


def _decide(an: Analysis) -> Decision:
    s, P = an.settings, an.primary
    chosen = an.selection.chosen
    name = an.name(chosen) if chosen else None
    numbers = {k: an.models[m].metrics[P] for k, m in (("base", BASE), ("fewshot", FEWSHOT), ("adapter", chosen))
               if m in an.models and P in an.models[m].metrics}
    d = Decision("no_gain", chosen, name, "", [], [], numbers, P, s.target, s.target_source, None,
                 _selection_text(an))
    R, N = d.reasons, d.next_steps
    if s.target is None:
        R.append("No target is set for the primary metric (task.yaml `target:`): judging relative gains only.")

    # 0. can these numbers be used at all?
    d.problems = _problems(an)
    if d.problems:
        return _done(d, "unusable", "the scores cannot support a decision: " + "; ".join(d.problems),
                     ["Fix the failing backend or data, then re-run: failed requests are generated again, "
                      "everything else comes from the cache."])
    if chosen is None:
        why = "; ".join(f"`{an.name(a)}` {w}" for a, w in an.selection.excluded.items())
        return _done(d, "no_gain", f"no adapter learned anything ({why})",
                     ["Check the data (`harness data check`), raise the learning rate or train longer: the "
                      "validation loss never went below its first value."])

    if is_judge_metric(P):
        blocked = untrusted(an)
        R += judge_reasons(an)
        if blocked:
            return _done(d, "inconclusive", blocked[0], blocked[1])
    cB, cF = an.comparison(chosen, BASE), an.comparison(chosen, FEWSHOT)
    if cB is None and is_judge_metric(P):
        return _done(d, "inconclusive", f"the judge has no verdicts on `{name}` vs base",
                     ["Judge the sweep again (`harness judge run SWEEP`): the chosen adapter was not judged."])
    mA, mB, mF = (_mean(an, m, P) for m in (chosen, BASE, FEWSHOT))
    d.sample_size = sample_size(an, FEWSHOT if cF is not None else BASE)
    n = an.n_items
    if n < s.min_items:
        ss = d.sample_size
        return _done(d, "inconclusive",
                     f"only {n} paired eval item{'s' if n != 1 else ''} (fewer than {s.min_items}): at this size the "
                     f"smallest difference a test could detect is about {fmt_num(ss['mde'], '.2f')}",
                     [f"Add eval items: about {ss['items_needed']} are needed to detect a {s.min_effect:.2f} gain on "
                      f"{P} (80% power)."])

    beats_base = cB is not None and cB.verdict == BETTER
    beats_fs = cF is None or cF.verdict == BETTER
    d.meets_target = None if s.target is None else mA >= s.target
    R.append(_vs_text(an, cB, "the base model"))
    if cF is not None:
        R.append(_vs_text(an, cF, "the few-shot prompt"))
    else:
        R.append("No few-shot baseline was scored (the task has no train split or few_shot.k is 0): "
                 "prompting first was not tested.")
    if s.target is not None:
        gap = mA - s.target
        R.append(f"Target {P} >= {s.target:g} ({s.target_source or 'task'}): the adapter "
                 + (f"meets it ({mA:.3f})." if gap >= 0 else f"misses it by {-gap:.3f} ({mA:.3f})."))

    # ship / ship with care (unless, short of a met target, the failures are facts the adapter cannot learn)
    per = an.forgetting.get(chosen, {})
    fam = {f: r.status for f, r in per.items() if f != "all"}
    d.forgetting = dict(fam, **({"all": per["all"].status} if "all" in per else {}))
    wt = _wrong_tool(an, chosen)
    if beats_base and beats_fs and (d.meets_target if s.target is not None else wt is None):
        if not per:
            R.append("Forgetting was not measured (no probe scores for base and the adapter).")
            return _done(d, "ship_with_care", "it beats both baselines, but forgetting was not measured",
                         ["Run the forgetting probes (eval.probes=default) before shipping."] + _export_steps(an))
        # "no forgetting" only when every family is non-inferior on its own, the pooled probes too, and the
        # adapter does not answer general requests in the task's form: pooling must not mask a family's drop
        R.append(_forgetting_text(an, chosen))
        if an.drift.get(chosen):
            R.append(_drift_text(an.drift[chosen]))
        bleed = an.bleed.get(chosen)
        R.append(_bleed_text(an, chosen) if bleed is not None else
                 "Format bleed: not measured (the task's answers have no fixed form; task.yaml `answer_pattern:` "
                 "names one).")
        fails = sorted((f for f, st in fam.items() if st == "fail"), key=lambda f: per[f].comparison.diff)
        unclear = sorted((f for f, st in fam.items() if st == "inconclusive"),
                         key=lambda f: per[f].comparison.diff if per[f].comparison else 0.0)
        pooled = per.get("all")
        what, steps = [], []
        if bleed is not None and bleed.status == "bleeds":
            what.append(_bleed_headline(bleed))
            steps.append("Against format bleed: mix the base model's own answers to general prompts into training "
                         "(`train.replay=0.1`), or lower the learning rate / train fewer steps.")
        if fails:
            what.append("it forgets on " + ", ".join(f"{f} ({_diff_ci(per[f].comparison)})" for f in fails))
        if pooled is not None and pooled.status == "fail":
            what.append(f"it forgets on the probes overall ({_diff_ci(pooled.comparison)})")
        if fails or (pooled is not None and pooled.status == "fail"):
            steps.append("Against forgetting: lower the learning rate or rank, train fewer epochs, or mix general "
                         "data into training (`train.replay=0.1`).")
        if unclear:
            what.append(f"a drop beyond {s.margin:.2f} cannot be ruled out on " + ", ".join(
                f"{f} ({_diff_ci(per[f].comparison)})" if per[f].comparison else f for f in unclear))
            steps += [_settle_step(f, per[f], s.margin) for f in unclear]
        if pooled is None or pooled.status == "inconclusive":
            n_pool = pooled.comparison.n if pooled is not None and pooled.comparison else 0
            what.append(f"forgetting cannot be ruled out on the {n_pool} probes pooled")
            if pooled is not None:
                steps.append(_settle_step("all probes pooled", pooled, s.margin))
        if what:
            return _done(d, "ship_with_care", "it beats both baselines" + (" and meets the target" if s.target is not None
                                                                         else "") + ", but " + "; ".join(what),
                         steps + _export_steps(an))
        if wt:
            R.append(wt)
        clean = "no format bleed" if bleed is not None else "format bleed not measured"
        return _done(d, "ship", "it beats the base model and the few-shot prompt with confidence"
                     + (" and meets the target" if s.target is not None else "")
                     + f", with no forgetting on any of the {len(fam)} probe families and {clean}", _export_steps(an))

    # use the prompt
    fB = an.baseline_comparisons.get("fewshot_vs_base")
    if P == PAIRWISE:  # the judge compares against the prompt directly: it prefers the prompt with confidence
        prompt_good = cF is not None and cF.verdict == WORSE
    else:
        prompt_good = (mF is not None and mF >= s.target) if s.target is not None else (fB is not None and fB.verdict == BETTER)
    base_good = s.target is not None and mB is not None and mB >= s.target and (cB is None or cB.verdict != BETTER)
    if (prompt_good and cF is not None and cF.verdict != BETTER) or base_good:
        which = "the plain base model (zero-shot)" if base_good and not prompt_good else "the few-shot prompt"
        value = mB if which.startswith("the plain") else mF
        if P == PAIRWISE and not base_good:
            why = f"the judge prefers the few-shot prompt's answers ({fmt_comparison(cF)}),"
        else:
            why = (f"{which} scores {value:.3f}, at or above the target {s.target:g}," if s.target is not None
                   else f"{which} beats the base model with confidence ({fB.diff:+.3f} on {P}),")
        return _done(d, "use_prompt", f"{why} and the best adapter (`{name}`) is not better than it with confidence",
                     [f"Use {which}: it needs no training, no adapter to serve and no forgetting risk.",
                      "Fine-tune only if you need the gain a larger eval set would have to show."])

    # wrong tool: form learned, facts not
    if wt:
        R.append(wt)
        return _done(d, "wrong_tool", "fine-tuning taught the form, not the facts",
                     ["Fine-tune for form, retrieve for knowledge: give the model the facts in its prompt (RAG) "
                      "and keep the adapter only for the output format."])

    # keep training: it learns, not enough yet
    gains = {**form_gains(an, chosen, BASE), **(form_gains(an, chosen, FEWSHOT) if cF is not None else {})}
    learns = beats_base or (cF is not None and cF.verdict == BETTER) or bool(gains)
    if learns:
        if gains:
            R.append("Other metrics that moved with confidence: " + ", ".join(
                f"{m} {c.diff:+.3f} [{c.lo:+.3f}, {c.hi:+.3f}] vs {an.name(c.b)}" for m, c in sorted(gains.items())) + ".")
        if cF is not None and cF.verdict == WORSE:
            R.append("The few-shot prompt is still better than the adapter.")
        short = (f"misses the target {s.target:g} by {s.target - mA:.3f}" if s.target is not None and not d.meets_target
                 else "is not yet better than both baselines with confidence")
        return _done(d, "keep_training", f"the adapter learns ({_learn_text(beats_base, cF, gains)}) but {short}",
                     _training_advice(an, chosen))

    # nothing moved: too small to tell, or no gain?
    refs = [c for c in (cB, cF) if c is not None]
    if any(c.verdict == WORSE for c in refs):
        return _done(d, "no_gain", "the adapter is worse than a baseline on the primary metric",
                     ["Keep the base model. Check the training data and prompt format match the eval set "
                      "(`harness data check --eval`), and try a lower learning rate."])
    if any(c.hi >= s.min_effect for c in refs):
        ss = d.sample_size
        return _done(d, "inconclusive",
                     f"no difference was shown, but at n = {n} the CIs still allow a gain of {s.min_effect:.2f} or more "
                     f"(minimum detectable effect {fmt_num(ss['mde'], '.2f')})",
                     [f"Add eval items: about {ss['items_needed']} are needed to detect a {s.min_effect:.2f} gain."]
                     + _training_advice(an, chosen))
    return _done(d, "no_gain", f"neither the adapter nor the prompt beats the base model, and the CIs rule out a "
                 f"gain of {s.min_effect:.2f}", ["Keep the base model; fine-tuning did not help this task as set up. "
                                                 "Check the data and the task's metric before trying bigger grids."])


# ------------------------------------------------------------------------------------------------- parts

def _mean(an: Analysis, m: str | None, metric: str) -> float | None:
    """A model's mean on the metric; None when it has none (a baseline under judge:pairwise, or not scored)."""
    st = an.models.get(m) if m else None
    i = st.metrics.get(metric) if st is not None else None
    return None if i is None else i.mean


def _done(d: Decision, outcome: str, why: str, steps: list[str]) -> Decision:
    d.outcome = outcome
    who = f" `{d.chosen_name}`" if d.chosen_name and outcome in ("ship", "ship_with_care", "keep_training") else ""
    d.headline = f"{OUTCOMES[outcome]}{who}: {why}."
    d.next_steps[:0] = steps
    return d


def _problems(an: Analysis) -> list[str]:
    s = an.settings
    out = []
    if not an.models or an.primary is None:
        return ["no task scores (run `harness eval` on this sweep first)"]
    if not an.adapters:
        return ["no adapter has scores (every run failed, or none was evaluated)"]
    if BASE not in an.models:
        out.append("the base model was not scored")
    for m in (an.selection.chosen, BASE, FEWSHOT):
        st = an.models.get(m) if m else None
        if st is not None and st.errors and st.error_rate > s.max_error_rate:
            ex = "; ".join(f"{sid}: {msg[:120]}" for sid, msg in st.error_examples[:3])
            out.append(f"{an.name(m)}: {st.errors} of {st.n} requests failed ({st.error_rate:.0%} > "
                       f"{s.max_error_rate:.0%}), e.g. {ex}")
    return out


def _settle_step(name: str, r, margin: float) -> str:
    beyond = r.comparison is not None and r.comparison.diff < -margin
    if r.comparison is not None and r.probes_needed and r.probes_needed > 20 * max(r.comparison.n, 1):
        return (f"Settle `{name}`: the observed change ({r.comparison.diff:+.3f}) sits close to the {margin:.2f} margin; "
                f"only about {r.probes_needed} probes could tell them apart, so treat it as a possible drop.")
    return (f"Settle `{name}`: about {r.probes_needed} probes would show "
            + ("whether this drop is real (it is beyond the margin but not significant)." if beyond
               else f"whether the drop stays within {margin:.2f}."))


def _selection_text(an: Analysis) -> str:
    sel = an.selection
    if sel.chosen is None:
        return "no adapter could be chosen"
    nm = f"`{an.name(sel.chosen)}`"
    if sel.method == "only adapter":
        others = [rv for rid, rv in an.runs.items() if rid != sel.chosen]
        why = {"pruned": "stopped early by successive halving", "failed": "failed", "incomplete": "did not finish"}
        told = [f"`{rv.name}` {why[rv.status]}" for rv in others if rv.status in why]
        told += [f"`{an.name(rid)}` did not learn" for rid in sel.excluded]
        if not others and not sel.excluded:
            return f"{nm} is the only adapter"
        return f"{nm} is the only adapter scored" + (f" ({'; '.join(told)})" if told else "")
    if sel.method == "val_loss":
        return f"{nm} has the lowest validation loss ({sel.values[sel.chosen]:.4f}) of {len(sel.values)} adapters; " \
               "the eval items played no part in choosing it"
    if sel.method.startswith("val:"):
        return f"{nm} scores highest on {sel.method[4:]} on the validation split ({sel.values[sel.chosen]:.3f}); " \
               "the eval items played no part in choosing it"
    return f"{nm} was chosen on the eval items themselves (no validation loss recorded), so its numbers are " \
           "optimistic; its comparisons are Holm-adjusted over all adapters"


def _vs_text(an: Analysis, c: Comparison | None, label: str) -> str:
    if c is None:
        return f"No paired scores against {label}."
    how = {BETTER: "beats", WORSE: "is WORSE than"}.get(c.verdict, "does not beat")
    return f"On {an.primary} it {how} {label}" + (" with confidence" if c.verdict == BETTER else "") + \
        f": {fmt_comparison(c)}."


def _forgetting_text(an: Analysis, a: str) -> str:
    parts = []
    for f, r in sorted(an.forgetting.get(a, {}).items()):
        if f == "all" or r.comparison is None:
            continue
        c = r.comparison
        parts.append(f"{f} {c.diff:+.3f} [{c.lo:+.3f}, {c.hi:+.3f}] n = {c.n}: {r.status}")
    return (f"Forgetting probes vs base (non-inferiority margin {an.settings.margin:.2f}): " + "; ".join(parts) + ".") \
        if parts else "Forgetting probes: not measured."


def _wrong_tool(an: Analysis, a: str) -> str | None:
    kn = an.knowledge.get(a) or {}
    k, f = kn.get("knowledge"), kn.get("form")
    if k is None or k.verdict == BETTER or k.n < 5:
        return None
    kA = an.models[a].knowledge.get("knowledge")
    low = an.settings.target if an.settings.target is not None else 0.5
    if kA is None or kA.mean >= low:
        return None
    form_learned = f is not None and f.verdict == BETTER  # items not needing knowledge improved with confidence
    knowledge_only = f is None
    if not (form_learned or knowledge_only):
        return None
    fA = an.models[a].knowledge.get("form")
    fB = an.models[BASE].knowledge.get("form")
    kB = an.models[BASE].knowledge.get("knowledge")
    form_txt = (f"items not needing knowledge {fB.mean:.2f} -> {fA.mean:.2f}" if f is not None and fA and fB
                else "every eval item needs knowledge")
    return (f"Form vs facts on {an.primary}: {form_txt}; knowledge items {kB.mean:.2f} -> {kA.mean:.2f} "
            f"({k.diff:+.3f} [{k.lo:+.3f}, {k.hi:+.3f}], n = {k.n}, not a confident gain).")


def _learn_text(beats_base: bool, cF: Comparison | None, gains: dict) -> str:
    bits = []
    if beats_base:
        bits.append("beats the base model on the primary metric")
    if cF is not None and cF.verdict == BETTER:
        bits.append("beats the few-shot prompt")
    if gains:
        top = sorted(gains, key=lambda m: (-gains[m].diff, m))[:HEADLINE_METRICS]
        rest = len(gains) - len(top)
        bits.append("gains on " + ", ".join(top) + (f" and {rest} more metric{'s' if rest > 1 else ''} (see the "
                                                     "reasons)" if rest else ""))
    return "; ".join(bits)


def _training_advice(an: Analysis, a: str) -> list[str]:
    """What to try next, read from the chosen run's curves and the grid."""
    rv = an.runs.get(a)
    out = []
    val = (rv.curves or {}).get("val") or [] if rv else []
    if len(val) >= 2:
        trend = val_trend([p["loss"] for p in val])
        losses = [p["loss"] for p in val]
        if trend["falling"]:
            out.append(f"Validation loss was still falling at the last evaluations ({_loss_path(losses)}: "
                       f"{trend['slope']:+.1%} per evaluation, beyond its step-to-step noise): the adapter is "
                       "undertrained — train more epochs.")
        elif losses[-1] <= min(losses) + 1e-12:
            out.append(f"Validation loss has flattened ({_loss_path(losses)}: {trend['slope']:+.1%} per evaluation, "
                       "within its step-to-step noise): more epochs of the same will gain little; add training "
                       "data, try a higher rank, or another learning rate.")
        else:
            best = min(losses)
            bstep = val[losses.index(best)]["step"]
            out.append(f"Validation loss bottomed at step {bstep} of {val[-1]['step']}: more epochs will not help; "
                       "add training data or lower the learning rate.")
    ranks = sorted({r.hparams.get("lora.r") for r in an.runs.values() if isinstance(r.hparams.get("lora.r"), int)})
    if rv and ranks and rv.hparams.get("lora.r") == ranks[-1] and len(ranks) > 1:
        out.append(f"The largest rank in the grid (r={ranks[-1]}) won: try a higher rank.")
    out.append("More (and more varied) training examples usually help most.")
    return out


FALLING_MIN_DROP = 0.01  # "still falling" needs at least a 1% drop per evaluation ...
FALLING_Z = 2.0          # ... that is at least 2 standard errors away from no change


def val_trend(losses: list[float], window: int = 4) -> dict:
    """Is the validation loss still falling? Judged on the relative changes between the last `window`
    evaluations (log loss, so the scale does not matter): falling when the last value is the best, the mean
    relative drop per evaluation is at least FALLING_MIN_DROP, and that mean is at least FALLING_Z standard
    errors below zero (the standard error from the spread of those changes; with a single change, which has no
    spread, the drop must be 2 x FALLING_MIN_DROP). A 0.5% wiggle is a plateau, not a trend."""
    xs = [math.log(max(v, 1e-12)) for v in losses[-window:]]
    steps = [b - a for a, b in zip(xs, xs[1:])]
    if not steps:
        return {"falling": False, "slope": 0.0, "n": 0}
    mean = sum(steps) / len(steps)
    slope = math.expm1(mean)
    if len(steps) == 1:
        falling = slope <= -2 * FALLING_MIN_DROP
    else:
        sd = (sum((x - mean) ** 2 for x in steps) / (len(steps) - 1)) ** 0.5
        se = sd / math.sqrt(len(steps))
        falling = slope <= -FALLING_MIN_DROP and (se == 0.0 or -mean / se >= FALLING_Z)
    falling = falling and losses[-1] <= min(losses)
    return {"falling": bool(falling), "slope": slope, "n": len(steps)}


def _loss_path(losses: list[float], k: int = 4) -> str:
    return " -> ".join(f"{v:.4f}" for v in losses[-k:])


def _diff_ci(c: Comparison | None) -> str:
    return "n/a" if c is None else f"{c.diff:+.3f} [{c.lo:+.3f}, {c.hi:+.3f}], n = {c.n}"


def _bleed_headline(b) -> str:
    """The bleed clause of a headline: how many probes, where most, and one example from there."""
    top = max(b.families, key=lambda f: (b.families[f][0], f)) if b.families else None
    ex = next((e for e in b.examples if e.get("family") == top), b.examples[0] if b.examples else None)
    eg = f', e.g. "{clip_line(ex["prompt"], 60)}" -> `{clip_line(ex["output"], 50)}`' if ex else ""
    k, kb, n = b.families[top] if top else (0, 0, 0)
    where = f"; {top} {k} of {n}" if top and k else ""
    return (f"it answers {b.count} of {b.n} probes in the task's output form though they did not ask for it "
            f"(base {b.base_count}{where}){eg}")


def _drift_text(drift: dict[str, Interval]) -> str:
    fams = "; ".join(f"{f} {i.mean:.3f} [{i.lo:.3f}, {i.hi:.3f}]" for f, i in sorted(drift.items()) if f != "all")
    allv = drift.get("all")
    pooled = f"; all {allv.mean:.3f} [{allv.lo:.3f}, {allv.hi:.3f}] over {allv.n} prompts" if allv else ""
    return ("Drift from base (mean per-token KL divergence along the base model's own probe answers, nats; no labels "
            f"needed, 0 = unchanged): {fams}{pooled}.")


def _bleed_text(an: Analysis, a: str) -> str:
    b = an.bleed[a]
    fams = "; ".join(f"{f} {k} of {n} (base {kb})" for f, (k, kb, n) in b.families.items())
    ci = f", paired change {_diff_ci(b.comparison)}" if b.comparison is not None else ""
    verdict = (f"above the {an.settings.max_bleed:.0%} allowed (decision.max_bleed)" if b.status == "bleeds"
               else f"within the {an.settings.max_bleed:.0%} allowed")
    return (f"Format bleed (probe answers in the task's output form, unasked): {b.count} of {b.n} "
            f"({b.rate.mean:.1%}) vs base {b.base_count}{ci}; {verdict}. By family: {fams}.")


def _export_steps(an: Analysis) -> list[str]:
    rv = an.runs.get(an.selection.chosen)
    where = f"runs/{rv.run_id}" if rv else "RUN_DIR"
    return [f"Ship it: `harness export {where} --format merged` (or `--format gguf` for llama.cpp / Ollama)."]
