"""Quality gate for CI: the report's decision and thresholds, turned into an exit code.

`harness gate SWEEP_DIR [--config conf/gate/<name>.yaml] [--adapter RUN_ID] [--against PREVIOUS]
                        [--inconclusive fail|pass]`
  exit 0  every check passed
  exit 1  a check failed
  exit 2  unusable input: bad gate YAML (file, line, key), no scores, names the scores do not have, backend
          errors above the decision's max_error_rate, a judge that did not run or lost too many verdicts
  exit 3  inconclusive: no check failed, but at least one could not be decided at this sample size
          (`--inconclusive fail` maps it to 1, `--inconclusive pass` to 0)
Writes SWEEP_DIR/gate/gate.json, junit.xml (inconclusive = skipped with the reason, unusable = error) and gate.md.
This module holds the checks and the exit code; harness.report.gate_view renders and writes the outputs and
has `run_gate` (evaluate, write, print).

Every check reads the SAME Analysis and Decision the report shows (harness.analysis / harness.decision): one
statistic per comparison, one verdict. The gate YAML (every key validated, unknown keys are errors):

  adapter: best                  # the decision's chosen adapter (picked on validation data), or a run id
  target: 0.9                    # optional: overrides the task's target for the decision (said in the output)
  checks:
    - decision: [ship, ship_with_care]   # the decision's outcome must be one of these
    - metric: json_valid                 # absolute level: pass when the CI's lower bound >= min,
      min: 0.8                           #   fail when its upper bound < min, else inconclusive
    - metric: all_fields_correct         # better than a baseline (base | fewshot | released): pass when the
      min_improvement_over: base         #   comparison's verdict is `better` and its CI's lower bound > min_delta,
      min_delta: 0.0                     #   fail when the upper bound <= min_delta, else inconclusive
    - metric: all_fields_correct         # non-inferiority to a baseline (typically `released`, see --against):
      not_worse_than: released           #   pass when the CI's lower bound > -margin, fail when significantly
      margin: 0.02                       #   worse beyond the margin, else inconclusive
    - forgetting: all                    # probe families (all | a family): non-inferiority vs base, as the
      margin: 0.10                       #   report's forgetting table (margin defaults to the decision's)
    - format_bleed: {max: 0.02}          # share of probes answered in the task's output form, unasked, in excess
                                         #   of base's (the decision's max_bleed when max is left out); not
                                         #   measured (free-text task) is inconclusive
    - metric: judge:voice                # the judge as the task's primary metric (judge:<rubric> or judge:pairwise):
      min: 4.0                           #   the decision's numbers and trust rule (an untrusted judge: inconclusive)
    - judge: pointwise                   # only for a calibrated, reliable judge (else the check FAILS: a gate
      min: 6.0                           #   must not pass on numbers nobody trusts); min_kappa optional
    - judge: pairwise                    # win rate of the adapter vs a baseline; CI-based when the judge gives one
      vs: fewshot
      min_win_rate: 0.5
  name: optional label for any check
A measurement the sweep lacks (no few-shot scores, no judge comparison for this adapter) fails its check with the
reason; a name the scores never had (a typo) is exit 2.
`--against PREVIOUS` (a previous sweep dir or an exported adapter) scores the released model on the same eval
items and adds `not_worse_than: released` on the primary metric (margin --against-margin) unless the config has one.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.analysis import BASELINES, BETTER, RELEASED, WORSE, Analysis, Comparison
from harness.decision import OUTCOMES, Decision, decide
from harness.fmt import fmt_comparison, fmt_interval, fmt_num
from harness.io import UserError, YamlLines, key_str, load_yaml_with_lines
from harness.judge.rubrics import judge_metric_range
from harness.judge_decision import is_judge_metric, pairwise_comparison, untrusted
from harness.report import analyze_sweep, jsonable, load_sweep, settings_for

PASS, FAIL, INCONCLUSIVE, UNUSABLE = "pass", "fail", "inconclusive", "unusable"
EXIT = {PASS: 0, FAIL: 1, UNUSABLE: 2, INCONCLUSIVE: 3}
TOP_KEYS = {"adapter", "target", "checks"}
CHECK_KEYS = {
    "decision": {"decision", "name"},
    "metric": {"metric", "min", "min_improvement_over", "min_delta", "not_worse_than", "margin", "name"},
    "forgetting": {"forgetting", "margin", "name"},
    "format_bleed": {"format_bleed", "name"},
    "judge": {"judge", "min", "min_kappa", "vs", "min_win_rate", "name"},
}
MOVED = {"max_drop": "forgetting is judged as non-inferiority now: use `margin:` (the largest acceptable drop)",
         "alpha": "alpha is set once for report and gate: `decision.alpha=` when you run the sweep "
                  "(or `harness report --alpha`)"}


@dataclass
class CheckResult:
    name: str
    kind: str
    value: float | None
    threshold: str
    status: str                    # pass | fail | inconclusive | unusable
    reason: str

    @property
    def passed(self) -> bool:
        return self.status == PASS


# ------------------------------------------------------------------------------------------------ config

class GateConfig:
    def __init__(self, path: Path, data: dict, lines: YamlLines):
        self.path, self.data, self.lines = path, data, lines

    def err(self, path: tuple, msg: str) -> UserError:
        where = f"{self.path}:{self.lines.get(path)}" if self.lines else f"{self.path}"
        return UserError(f"{where}: {key_str(path) or '<top>'}: {msg}")


def load_gate_config(path: str | Path | dict) -> GateConfig:
    """A gate YAML file (errors name file:line: key), or an already-loaded dict (the sweep's `gate` group)."""
    if isinstance(path, dict):
        cfg = GateConfig(Path("config gate (conf/gate/*.yaml via Hydra)"), dict(path), YamlLines())
    else:
        data, lines = load_yaml_with_lines(path)
        if not isinstance(data, dict):
            raise UserError(f"{path}:1: expected a mapping with `checks:` (schema: harness/gate.py)")
        cfg = GateConfig(Path(path), data, lines)
    _validate(cfg)
    return cfg


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(float(v))


def _validate(cfg: GateConfig) -> None:
    d = cfg.data
    for k in d:
        if k in MOVED:
            raise cfg.err((k,), MOVED[k])
        if k not in TOP_KEYS:
            raise cfg.err((k,), f"unknown key (allowed: {', '.join(sorted(TOP_KEYS))})")
    if "adapter" in d and (not isinstance(d["adapter"], str) or not d["adapter"]):
        raise cfg.err(("adapter",), "expected `best` or a run id")
    if "target" in d and d["target"] is not None and not (_is_num(d["target"]) and 0 <= d["target"] <= 1):
        raise cfg.err(("target",), f"expected a number in [0, 1], got {d['target']!r}")
    checks = d.get("checks")
    if not isinstance(checks, list) or not checks:
        raise cfg.err(("checks",), "expected a non-empty list of checks")
    for i, c in enumerate(checks):
        at = ("checks", i)
        if not isinstance(c, dict):
            raise cfg.err(at, "expected a mapping (decision: / metric: / forgetting: / format_bleed: / judge:)")
        kinds = [k for k in CHECK_KEYS if k in c]
        if len(kinds) != 1:
            raise cfg.err(at, "each check needs exactly one of `decision:`, `metric:`, `forgetting:`, "
                              "`format_bleed:`, `judge:`")
        kind = kinds[0]
        for k in c:
            if k in MOVED:
                raise cfg.err(at + (k,), MOVED[k])
            if k not in CHECK_KEYS[kind]:
                raise cfg.err(at + (k,), f"unknown key for a {kind} check (allowed: {', '.join(sorted(CHECK_KEYS[kind]))})")
        if "name" in c and not isinstance(c["name"], str):
            raise cfg.err(at + ("name",), "expected a string")
        for k in ("min", "min_delta", "margin", "min_kappa", "min_win_rate"):
            if k in c and not _is_num(c[k]):
                raise cfg.err(at + (k,), f"expected a number, got {c[k]!r}")
        if "margin" in c and c["margin"] < 0:
            raise cfg.err(at + ("margin",), "expected a number >= 0")
        scale = (0.0, 1.0)  # a judge:<rubric> metric is on its rubric's scale (e.g. 1-5)
        if kind == "metric" and is_judge_metric(c["metric"]):
            try:
                scale = judge_metric_range(c["metric"])
            except ValueError as exc:
                raise cfg.err(at + ("metric",), str(exc)) from None
        span = scale[1] - scale[0]
        for k in ("min_delta", "margin", "min_win_rate") + (("min",) if kind == "metric" else ()):
            lo, hi = {"min_delta": (-span, span), "margin": (0, span), "min": scale}.get(k, (0, 1))
            if k in c and not lo <= c[k] <= hi:
                raise cfg.err(at + (k,), f"expected a number in [{lo:g}, {hi:g}] (task metrics and win rates are "
                                         f"shares; a judge:<rubric> metric is on its scale), got {c[k]!r}")
        if kind == "decision":
            allowed = c["decision"] if isinstance(c["decision"], list) else [c["decision"]]
            bad = [o for o in allowed if o not in OUTCOMES]
            if not allowed or bad:
                raise cfg.err(at + ("decision",), f"unknown outcome {bad[0] if bad else None!r} "
                                                  f"(known: {', '.join(OUTCOMES)})")
        elif kind == "metric":
            if not isinstance(c["metric"], str) or not c["metric"]:
                raise cfg.err(at + ("metric",), "expected a metric name")
            modes = [k for k in ("min", "min_improvement_over", "not_worse_than") if k in c]
            if len(modes) != 1:
                raise cfg.err(at, "a metric check needs exactly one of `min:`, `min_improvement_over:`, "
                                  "`not_worse_than:` (use several checks for several)")
            for k in ("min_improvement_over", "not_worse_than"):
                if k in c and c[k] not in BASELINES:
                    raise cfg.err(at + (k,), f"expected one of {', '.join(BASELINES)}, got {c[k]!r}")
            if "min_delta" in c and "min_improvement_over" not in c:
                raise cfg.err(at + ("min_delta",), "min_delta only goes with min_improvement_over")
            if "margin" in c and "not_worse_than" not in c:
                raise cfg.err(at + ("margin",), "margin only goes with not_worse_than (or a forgetting check)")
        elif kind == "forgetting":
            if not isinstance(c["forgetting"], str) or not c["forgetting"]:
                raise cfg.err(at + ("forgetting",), "expected all, overall or a probe family name")
        elif kind == "format_bleed":
            fb = c["format_bleed"]
            if fb is None:
                fb = {}
            if not isinstance(fb, dict) or any(k != "max" for k in fb):
                raise cfg.err(at + ("format_bleed",), "expected a mapping {max: SHARE} (max optional)")
            if "max" in fb and not (_is_num(fb["max"]) and 0 <= fb["max"] <= 1):
                raise cfg.err(at + ("format_bleed", "max"), f"expected a number in [0, 1], got {fb['max']!r}")
        else:
            mode = c["judge"]
            if mode == "pointwise":
                if "min" not in c or "vs" in c or "min_win_rate" in c:
                    raise cfg.err(at, "`judge: pointwise` takes `min:` (and optional `min_kappa:`)")
            elif mode == "pairwise":
                if c.get("vs") not in BASELINES or "min_win_rate" not in c or "min" in c:
                    raise cfg.err(at, "`judge: pairwise` takes `vs: base|fewshot|released` and `min_win_rate:` "
                                      "(and optional `min_kappa:`)")
            else:
                raise cfg.err(at + ("judge",), f"expected pointwise or pairwise, got {mode!r}")


# -------------------------------------------------------------------------------------------- evaluation

def evaluate_gate(sweep_dir: str | Path, config: str | Path | dict, *, adapter: str | None = None,
                  target: float | None = None, against_margin: float | None = None) -> dict:
    """The gate's result: {"status", "exit_code", "adapter", "decision", "checks": [CheckResult], ...}.
    Raises UserError (exit 2) for input it cannot read."""
    gc = load_gate_config(config)
    sweep = load_sweep(sweep_dir, require_scores=True)
    gate_target = target if target is not None else gc.data.get("target")
    s = settings_for(sweep)
    report_target = s.target
    if gate_target is not None:
        s = dataclasses.replace(s, target=float(gate_target),
                                target_source="command line" if target is not None else f"gate config {gc.path}")
    an = analyze_sweep(sweep, s)
    d = decide(an)
    if not an.adapters:
        raise UserError(f"{sweep.dir}/scores/scores.jsonl: no adapter has scores; nothing to gate")
    want = adapter or gc.data.get("adapter") or "best"
    if want == "best":
        chosen = d.chosen
    elif want in an.adapters:
        chosen = want
    else:
        src = "--adapter" if adapter else f"{gc.path}:{gc.lines.get(('adapter',))}: adapter"
        known = ", ".join(f"{a} ({an.name(a)})" for a in an.adapters)
        raise UserError(f"{src}: no scores for adapter {want!r} (scored: {known})")

    checks = list(gc.data["checks"])
    if RELEASED in an.models and not any(c.get("not_worse_than") == RELEASED for c in checks):
        checks.append({"metric": an.primary, "not_worse_than": RELEASED,
                       "margin": 0.02 if against_margin is None else against_margin})
    results: list[CheckResult] = []
    for i, c in enumerate(checks):
        at = ("checks", i)
        label = c.get("name")
        if "decision" in c:
            results.append(_decision_check(c, label, d))
        elif "metric" in c:
            if c["metric"] not in an.metrics and c["metric"] != an.primary:  # judge:pairwise is no score-row metric
                raise gc.err(at + ("metric",), f"unknown metric {c['metric']!r} (scored: {', '.join(an.metrics)})")
            results.append(_metric_check(c, label, an, chosen))
        elif "forgetting" in c:
            fam = c["forgetting"]
            if fam not in ("all", "overall") and an.families and fam not in an.families:
                raise gc.err(at + ("forgetting",), f"unknown probe family {fam!r} (scored: {', '.join(an.families)})")
            results += _forgetting_checks(c, label, an, chosen)
        elif "format_bleed" in c:
            results.append(_bleed_check(c, label, an, chosen))
        else:
            results.append(_judge_check(c, label, an, chosen))
    if d.outcome == "unusable":  # errors, not answers: no check on these scores can stand
        results = [dataclasses.replace(r, status=UNUSABLE, reason=f"{r.reason} [unusable: {'; '.join(d.problems)}]")
                   if r.kind != "judge" else r for r in results]
    status = (UNUSABLE if any(r.status == UNUSABLE for r in results) else FAIL if any(r.status == FAIL for r in results)
              else INCONCLUSIVE if any(r.status == INCONCLUSIVE for r in results) else PASS)
    counts = {st: sum(r.status == st for r in results) for st in (PASS, FAIL, INCONCLUSIVE, UNUSABLE)}
    return {"sweep": str(sweep.dir), "sweep_name": sweep.name, "config": str(gc.path), "adapter": chosen,
            "adapter_name": an.name(chosen), "adapter_selection": want, "primary_metric": an.primary,
            "status": status, "passed": status == PASS, "counts": counts, "n_checks": len(results),
            "decision": {"outcome": d.outcome, "headline": d.headline, "chosen": d.chosen},
            "target": s.target, "target_source": s.target_source, "report_target": report_target,
            "settings": jsonable(s), "checks": results}


def _decision_check(c: dict, label: str | None, d: Decision) -> CheckResult:
    allowed = c["decision"] if isinstance(c["decision"], list) else [c["decision"]]
    name = label or f"decision in {{{', '.join(allowed)}}}"
    st = PASS if d.outcome in allowed else UNUSABLE if d.outcome == "unusable" else \
        INCONCLUSIVE if d.outcome == "inconclusive" else FAIL
    return CheckResult(name, "decision", None, " | ".join(allowed), st, d.headline)


def _metric_check(c: dict, label: str | None, an: Analysis, a: str) -> CheckResult:
    metric = c["metric"]
    blocked = untrusted(an) if is_judge_metric(metric) else None
    if blocked:  # the decision's own trust rule: a judge that may not decide may not pass a gate either
        return CheckResult(label or f"{metric} ({_check_words(c)})", "metric", None, _check_words(c), INCONCLUSIVE,
                           f"the judge cannot decide: {blocked[0]}")
    if "min" in c:
        i = an.models[a].metrics[metric]
        lo_ok = not math.isnan(i.lo) and i.lo >= c["min"]
        st = PASS if lo_ok else FAIL if not math.isnan(i.hi) and i.hi < c["min"] else INCONCLUSIVE
        return CheckResult(label or f"{metric} >= {c['min']}", "metric", i.mean, f">= {c['min']} (95% CI)", st,
                           f"{an.name(a)}: {fmt_interval(i)}, n = {i.n}")
    ref = c.get("min_improvement_over") or c["not_worse_than"]
    cmp: Comparison | None = an.comparison(a, ref, metric)
    if "min_improvement_over" in c:
        delta = float(c.get("min_delta", 0.0))
        name, thr = label or f"{metric} better than {ref} by > {delta}", f"better, CI low > {delta}"
        if cmp is None:
            return CheckResult(name, "improvement", None, thr, FAIL, f"no {ref} scores paired with {an.name(a)}")
        st = PASS if cmp.verdict == BETTER and cmp.lo > delta else FAIL if cmp.hi <= delta else INCONCLUSIVE
        return CheckResult(name, "improvement", cmp.diff, thr, st, f"{cmp.verdict}: {fmt_comparison(cmp)}")
    margin = float(c.get("margin", an.settings.margin))
    name, thr = label or f"{metric} not worse than {ref} by more than {margin}", f"CI low > -{margin}"
    if cmp is None:
        return CheckResult(name, "non-inferiority", None, thr, FAIL, f"no {ref} scores paired with {an.name(a)}")
    st = PASS if cmp.lo > -margin else FAIL if cmp.verdict == WORSE and cmp.diff < -margin else INCONCLUSIVE
    return CheckResult(name, "non-inferiority", cmp.diff, thr, st, f"{cmp.verdict}: {fmt_comparison(cmp)}")


def _forgetting_checks(c: dict, label: str | None, an: Analysis, a: str) -> list[CheckResult]:
    from harness.analysis import forgetting_status

    target = c["forgetting"]
    margin = float(c.get("margin", an.settings.margin))
    per = an.forgetting.get(a) or {}
    fams = [f for f in sorted(per) if f != "all"] if target == "all" else ["all" if target == "overall" else target]
    if not per:
        return [CheckResult(label or f"forgetting {target}", "forgetting", None, f"CI low > -{margin}", INCONCLUSIVE,
                            f"no forgetting-probe scores for base and {an.name(a)}: not measured")]
    out = []
    for f in fams:
        name = (f"{label} [{f}]" if label and target == "all" else label) or f"forgetting {f} within {margin}"
        r = per.get(f)
        if r is None or r.comparison is None:
            out.append(CheckResult(name, "forgetting", None, f"CI low > -{margin}", INCONCLUSIVE, f"no {f} probe scores"))
            continue
        st, need = forgetting_status(r.comparison, margin, an.settings)
        more = f"; about {need} probes would settle it" if need else ""
        out.append(CheckResult(name, "forgetting", r.comparison.diff, f"CI low > -{margin}", st,
                               f"change vs base {fmt_comparison(r.comparison)}{more}"))
    return out


def _bleed_check(c: dict, label: str | None, an: Analysis, a: str) -> CheckResult:
    """Format bleed of the gated adapter, the same Bleed the decision reads: its excess over base <= max."""
    mx = float((c["format_bleed"] or {}).get("max", an.settings.max_bleed))
    name, thr = label or f"format bleed <= {mx:g}", f"excess over base <= {mx:g}"
    b = an.bleed.get(a)
    if b is None:
        return CheckResult(name, "format_bleed", None, thr, INCONCLUSIVE,
                           f"not measured for {an.name(a)} (no probe scores, or the task's answers have no fixed form)")
    eg = (f"; e.g. {b.examples[0]['prompt'][:60]!r} -> {b.examples[0]['output'][:50]!r}" if b.examples else "")
    return CheckResult(name, "format_bleed", b.excess, thr, PASS if b.excess <= mx else FAIL,
                       f"{b.count} of {b.n} probes in the task's output form vs base {b.base_count}{eg}")


def _check_words(c: dict) -> str:
    return (f">= {c['min']}" if "min" in c else f"better than {c['min_improvement_over']}" if "min_improvement_over" in c
            else f"not worse than {c.get('not_worse_than')}")


def _judge_check(c: dict, label: str | None, an: Analysis, a: str) -> CheckResult:
    j, mode = an.judge, c["judge"]
    if mode == "pointwise":
        name, thr = label or f"judge score >= {c['min']}", f">= {c['min']}"
    else:
        name, thr = label or f"judge win rate vs {c['vs']} >= {c['min_win_rate']}", f">= {c['min_win_rate']}"
    if j is None:
        return CheckResult(name, "judge", None, thr, FAIL, "judge not run: cannot gate on it (no judge_summary.json)")
    if j["status"] == "unavailable":
        return CheckResult(name, "judge", None, thr, UNUSABLE, f"the judge did not run: {j.get('error')}")
    cal = j["calibration"]
    kappa = cal.get("kappa") if cal else None
    if "min_kappa" in c:
        calibrated = _is_num(kappa) and kappa >= c["min_kappa"]
        why = f"kappa {fmt_num(kappa, '.2f')} < min_kappa {c['min_kappa']}" if cal else "no calibration run"
    else:
        calibrated = j["reliable"]
        why = f"calibration says unreliable (kappa {fmt_num(kappa, '.2f')})" if cal else "no calibration run"
    if not calibrated:
        return CheckResult(name, "judge", None, thr, FAIL, f"judge not calibrated: cannot gate on it ({why})")
    src = f"{j['calibration_source']} calibration, kappa {fmt_num(kappa, '.2f')}"
    if mode == "pointwise":
        pw = j["pointwise"].get(a) or {}
        if a in j["too_many_missing"]:
            return CheckResult(name, "judge", None, thr, UNUSABLE, f"too many missing verdicts for {an.name(a)}")
        v = pw.get("mean")
        if not _is_num(v):
            return CheckResult(name, "judge", None, thr, FAIL, f"no judge score for {an.name(a)}")
        return CheckResult(name, "judge", float(v), thr, PASS if v >= c["min"] else FAIL,
                           f"mean {float(v):.3f}, n = {pw.get('n', '?')}, missing {pw.get('missing', 0)} ({src})")
    rec, flip = None, False
    for p in j["pairwise"]:
        if p.get("a") == a and p.get("b") == c["vs"]:
            rec = p
        elif p.get("b") == a and p.get("a") == c["vs"]:
            rec, flip = p, True
    if rec is None:
        return CheckResult(name, "judge", None, thr, FAIL, f"no judge comparison of {an.name(a)} vs {c['vs']}")
    if f"{rec.get('a')} vs {rec.get('b')}" in j["too_many_missing"]:
        return CheckResult(name, "judge", None, thr, UNUSABLE, "too many missing verdicts")
    cmp = None if flip else pairwise_comparison(rec, an.settings)  # the decision's number: length-controlled
    if cmp is not None and cmp.test.startswith("length-controlled"):  # when length explains the preference
        rate, lo, hi = cmp.diff + 0.5, cmp.lo + 0.5, cmp.hi + 0.5
        st = PASS if lo >= c["min_win_rate"] else FAIL if hi < c["min_win_rate"] else INCONCLUSIVE
        return CheckResult(name, "judge", rate, thr, st, f"length explains the preference: length-controlled win rate "
                           f"{rate:.2f} [{lo:.2f}, {hi:.2f}] (raw {fmt_num(rec.get('win_rate'), '.2f')}) ({src})")
    wins, losses, ties = rec.get("wins", 0), rec.get("losses", 0), rec.get("ties", 0)
    if flip:
        wins, losses = losses, wins
    n = wins + losses + ties
    rate = (wins + 0.5 * ties) / n if n else math.nan
    ci = rec.get("win_rate_ci")
    st = FAIL if not n or rate < c["min_win_rate"] else PASS
    if isinstance(ci, list) and len(ci) == 2 and all(_is_num(x) for x in ci) and n:
        lo, hi = (1 - ci[1], 1 - ci[0]) if flip else (ci[0], ci[1])
        st = PASS if lo >= c["min_win_rate"] else FAIL if hi < c["min_win_rate"] else INCONCLUSIVE
    lc = f", length-controlled {fmt_num(rec.get('lc_win_rate'), '.2f')}" if rec.get("lc_win_rate") is not None else ""
    return CheckResult(name, "judge", rate, thr, st, f"{wins} wins, {losses} losses, {ties} ties of {n}{lc} ({src})")


# ------------------------------------------------------------------------------------------------ exit code

def exit_code(res: dict, inconclusive: str | None = None) -> int:
    if res["status"] == INCONCLUSIVE and inconclusive in ("fail", "pass"):
        return 1 if inconclusive == "fail" else 0
    return EXIT[res["status"]]
