"""Quality gate for CI: thresholds on one adapter of a scored sweep.

`harness gate SWEEP_DIR --config conf/gate/<name>.yaml [--adapter RUN_ID]`
  exit 0  every check passed
  exit 1  at least one check failed (including checks that could not be judged, e.g. an uncalibrated judge)
  exit 2  unusable input: missing sweep dir, no scores, bad gate YAML (message names the file, line and key),
          a metric / probe family / adapter the gate names that the scores do not have
Writes SWEEP_DIR/gate/gate.json, gate/junit.xml (one <testcase> per check, failures as <failure>) and gate/gate.md.

Gate YAML schema (every key validated; unknown keys are errors):

  adapter: best            # "best" = the report verdict's best adapter (highest primary metric), or a run_id
  alpha: 0.05              # optional: CIs are (1 - alpha) paired-bootstrap intervals, as in the report
  checks:                  # a list; each item is exactly one of:
    - metric: json_valid           # absolute minimum on the adapter's mean over eval items
      min: 0.8
    - metric: all_fields_correct   # improvement over a baseline, judged on the LOWER bound of the
      min_improvement_over: base   # (1 - alpha) paired-bootstrap CI of (adapter - baseline) on the same
      min_delta: 0.0               # sample_ids: passes when lower bound > min_delta (strictly), so 0.0
                                   # means "better with confidence". base | fewshot
    - forgetting: all              # forgetting probes: drop = base - adapter (point estimate, per family);
      max_drop: 0.15               # passes when drop <= max_drop. all = one check per family,
                                   # overall = all probe items pooled, or a family name
    - judge: pointwise             # LLM-judge mean score >= min, ONLY if the judge is calibrated:
      min: 6.0                     # calibration.reliable is true (or kappa >= min_kappa when given);
      min_kappa: 0.6               # optional. An uncalibrated/unreliable/missing judge makes the check
                                   # FAIL with "judge not calibrated: cannot gate on it" (a gate must not
                                   # pass on numbers nobody trusts, and must not silently skip a check).
    - judge: pairwise              # judge pairwise win rate of the adapter vs a baseline,
      vs: fewshot                  # (wins + ties/2) / n >= min_win_rate; same calibration rule
      min_win_rate: 0.5
  name: optional label for any check (shown in the table / junit)

Measurements that are missing where the sweep could have them (no probe rows, no judge summary)
make the check fail with a reason; names the scores never had (typos) are exit 2.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.io import UserError, atomic_write_text, write_json
from harness.report import VerdictConfig, _fmt_p_eq, analyze, load_sweep

TOP_KEYS = {"adapter", "alpha", "checks"}
CHECK_KEYS = {
    "metric": {"metric", "min", "min_improvement_over", "min_delta", "name"},
    "forgetting": {"forgetting", "max_drop", "name"},
    "judge": {"judge", "min", "min_kappa", "vs", "min_win_rate", "name"},
}
BASELINES = ("base", "fewshot")


@dataclass
class CheckResult:
    name: str
    kind: str
    value: float | None
    threshold: str
    passed: bool
    reason: str


# ----------------------------------------------------------------------------------- YAML with line numbers

def _line_map(node, path=(), out=None) -> dict:
    import yaml

    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[path + (key,)] = k.start_mark.line + 1
            _line_map(v, path + (key,), out)
            out[path + (key,)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, path + (i,), out)
    return out


def _path_str(path: tuple) -> str:
    s = ""
    for p in path:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s or "<top>"


class GateConfig:
    def __init__(self, path: Path, data: dict, lines: dict):
        self.path, self.data, self.lines = path, data, lines

    def err(self, path: tuple, msg: str) -> UserError:
        if not self.lines:  # a dict from the composed Hydra config: no file lines to point at
            return UserError(f"{self.path}: {_path_str(path)}: {msg}")
        line = self.lines.get(path)
        while line is None and path:
            path = path[:-1]
            line = self.lines.get(path)
        return UserError(f"{self.path}:{line or 1}: {_path_str(path)}: {msg}")


def load_gate_config(path: str | Path | dict) -> GateConfig:
    """Load and validate a gate YAML file (errors name file:line: key), or validate an already-loaded dict
    (e.g. the composed Hydra config's `gate` group; errors then name `config gate`)."""
    import yaml

    if isinstance(path, dict):
        cfg = GateConfig(Path("config gate (conf/gate/*.yaml via Hydra)"), dict(path), {})
        _validate(cfg)
        return cfg
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: gate config not found")
    text = p.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise UserError(f"{p}:{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}:1: expected a mapping with `checks:` (see harness/gate.py for the schema)")
    cfg = GateConfig(p, data, _line_map(node) if node is not None else {})
    _validate(cfg)
    return cfg


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(float(v))


def _validate(cfg: GateConfig) -> None:
    d = cfg.data
    for k in d:
        if k not in TOP_KEYS:
            raise cfg.err((k,), f"unknown key (allowed: {', '.join(sorted(TOP_KEYS))})")
    if "adapter" in d and (not isinstance(d["adapter"], str) or not d["adapter"]):
        raise cfg.err(("adapter",), "expected `best` or a run_id string")
    if "alpha" in d and not (_is_num(d["alpha"]) and 0 < d["alpha"] < 1):
        raise cfg.err(("alpha",), f"expected a number in (0, 1), got {d['alpha']!r}")
    checks = d.get("checks")
    if not isinstance(checks, list) or not checks:
        raise cfg.err(("checks",), "expected a non-empty list of checks")
    for i, c in enumerate(checks):
        at = ("checks", i)
        if not isinstance(c, dict):
            raise cfg.err(at, "expected a mapping (metric: / forgetting: / judge:)")
        kinds = [k for k in CHECK_KEYS if k in c]
        if len(kinds) != 1:
            raise cfg.err(at, "each check needs exactly one of `metric:`, `forgetting:`, `judge:`")
        kind = kinds[0]
        for k in c:
            if k not in CHECK_KEYS[kind]:
                raise cfg.err(at + (k,), f"unknown key for a {kind} check (allowed: {', '.join(sorted(CHECK_KEYS[kind]))})")
        if "name" in c and not isinstance(c["name"], str):
            raise cfg.err(at + ("name",), "expected a string")
        for k in ("min", "min_delta", "max_drop", "min_kappa", "min_win_rate"):
            if k in c and not _is_num(c[k]):
                raise cfg.err(at + (k,), f"expected a number, got {c[k]!r}")
        if kind == "metric":
            if not isinstance(c["metric"], str) or not c["metric"]:
                raise cfg.err(at + ("metric",), "expected a metric name")
            has_min, has_imp = "min" in c, "min_improvement_over" in c
            if has_min == has_imp:
                raise cfg.err(at, "a metric check needs exactly one of `min:` or `min_improvement_over:` (use two checks for both)")
            if has_imp and c["min_improvement_over"] not in BASELINES:
                raise cfg.err(at + ("min_improvement_over",), f"expected base or fewshot, got {c['min_improvement_over']!r}")
            if "min_delta" in c and not has_imp:
                raise cfg.err(at + ("min_delta",), "min_delta only goes with min_improvement_over")
        elif kind == "forgetting":
            if not isinstance(c["forgetting"], str) or not c["forgetting"]:
                raise cfg.err(at + ("forgetting",), "expected all, overall or a probe family name")
            if "max_drop" not in c:
                raise cfg.err(at, "a forgetting check needs `max_drop:`")
        else:
            mode = c["judge"]
            if mode == "pointwise":
                if "min" not in c or "vs" in c or "min_win_rate" in c:
                    raise cfg.err(at, "`judge: pointwise` takes `min:` (and optional `min_kappa:`)")
            elif mode == "pairwise":
                if c.get("vs") not in BASELINES or "min_win_rate" not in c or "min" in c:
                    raise cfg.err(at, "`judge: pairwise` takes `vs: base|fewshot` and `min_win_rate:` (and optional `min_kappa:`)")
            else:
                raise cfg.err(at + ("judge",), f"expected pointwise or pairwise, got {mode!r}")


# --------------------------------------------------------------------------------------------- evaluation

def _f(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def run_gate(sweep_dir: str | Path, config: str | Path | dict, *, adapter: str | None = None,
             out_dir: str | Path | None = None, quiet: bool = False) -> int:
    """Evaluate, print the table, write SWEEP_DIR/gate/{gate.json,junit.xml,gate.md}; return 0 (pass) or 1 (fail).

    Unusable input raises UserError (exit 2). `config`: a gate YAML path or an already-loaded dict.
    """
    res = evaluate_gate(sweep_dir, config, adapter=adapter)
    paths = write_gate_outputs(res, out_dir or Path(sweep_dir) / "gate")
    if quiet:
        print(f"{'PASSED' if res['passed'] else 'FAILED'}: {res['n_checks'] - res['n_failed']}/{res['n_checks']} checks")
    else:
        print_table(res)
        print(f"wrote {paths['gate_json']}, {paths['junit_xml']}, {paths['gate_md']}")
    return 0 if res["passed"] else 1


def evaluate_gate(sweep_dir: str | Path, config_path: str | Path | dict, *, adapter: str | None = None) -> dict:
    """Evaluate the gate; returns {"passed", "adapter", "checks": [CheckResult...], ...}. Raises UserError (exit 2)."""
    gc = load_gate_config(config_path)
    sweep = load_sweep(sweep_dir, require_scores=True)
    alpha = float(gc.data.get("alpha", 0.05))
    an = analyze(sweep, VerdictConfig(alpha=alpha))
    if not an["adapters"]:
        raise UserError(f"{sweep.dir}/scores/scores.jsonl: no adapter has scores; nothing to gate")
    want = adapter or gc.data.get("adapter") or "best"
    if want == "best":
        chosen = an["verdict"]["best"]
    elif want in an["adapters"]:
        chosen = want
    else:
        src = "--adapter" if adapter else (f"{gc.path}:{gc.lines.get(('adapter',), 1)}: adapter" if gc.lines
                                           else f"{gc.path}: adapter")
        raise UserError(f"{src}: no scores for adapter {want!r} (scored: {', '.join(an['adapters'])})")

    results: list[CheckResult] = []
    m = an["models"][chosen]
    for i, c in enumerate(gc.data["checks"]):
        at = ("checks", i)
        label = c.get("name")
        if "metric" in c:
            metric = c["metric"]
            if metric not in an["metrics"]:
                raise gc.err(at + ("metric",), f"unknown metric {metric!r} (scored: {', '.join(an['metrics'])})")
            if "min" in c:
                v = m["metrics"][metric]["mean"]
                ok = not math.isnan(v) and v >= c["min"]
                results.append(CheckResult(label or f"{metric} >= {c['min']}", "metric", v, f">= {c['min']}", ok,
                                           f"mean {_f(v)} [CI {_f(m['metrics'][metric]['lo'])}, {_f(m['metrics'][metric]['hi'])}]"))
            else:
                ref, delta = c["min_improvement_over"], float(c.get("min_delta", 0.0))
                name = label or f"{metric} improvement over {ref} > {delta}"
                comp = an["comparisons"].get(ref, {}).get(chosen, {}).get(metric)
                if comp is None:
                    results.append(CheckResult(name, "improvement", None, f"CI low > {delta}", False,
                                               f"no {ref} scores paired with {chosen} on {metric}"))
                else:
                    ok = comp["lo"] > delta
                    results.append(CheckResult(
                        name, "improvement", comp["lo"], f"CI low > {delta}", ok,
                        f"diff {comp['diff']:+.3f}, {int(round((1 - alpha) * 100))}% CI [{comp['lo']:+.3f}, {comp['hi']:+.3f}], "
                        f"n = {comp['n']}, {comp['test']} p {_fmt_p_eq(comp['p_value'])}"))
        elif "forgetting" in c:
            target, max_drop = c["forgetting"], float(c["max_drop"])
            pd = an["probe_deltas"].get(chosen)
            if target not in ("all", "overall") and target not in an["families"]:
                if an["families"]:
                    raise gc.err(at + ("forgetting",), f"unknown probe family {target!r} (scored: {', '.join(an['families'])})")
            if pd is None or not pd["families"]:
                results.append(CheckResult(label or f"forgetting {target} drop <= {max_drop}", "forgetting", None,
                                           f"drop <= {max_drop}", False,
                                           f"no forgetting-probe scores for base and {chosen}: cannot check"))
                continue
            items = ([(f, pd["families"][f]) for f in sorted(pd["families"])] if target == "all"
                     else [("overall", pd["overall"])] if target == "overall" else [(target, pd["families"].get(target))])
            for fam, r in items:
                name = (label + f" [{fam}]" if label and target == "all" else label) or f"forgetting {fam} drop <= {max_drop}"
                if r is None:
                    results.append(CheckResult(name, "forgetting", None, f"drop <= {max_drop}", False,
                                               f"no {fam} probe scores for {chosen}"))
                    continue
                drop = -r["diff"]
                ok = drop <= max_drop + 1e-12
                ci = "" if math.isnan(r["lo"]) else f", CI of the change [{r['lo']:+.3f}, {r['hi']:+.3f}]"
                results.append(CheckResult(name, "forgetting", drop, f"drop <= {max_drop}", ok,
                                           f"change vs base {r['diff']:+.3f}{ci}, n = {r['n']}"))
        else:
            results.append(_judge_check(c, label, an, chosen))

    passed = all(r.passed for r in results)
    return {"sweep": str(sweep.dir), "sweep_name": sweep.meta.get("name") or sweep.dir.name,
            "config": str(gc.path), "adapter": chosen, "adapter_selection": want, "alpha": alpha,
            "primary_metric": an["primary"], "passed": passed,
            "n_checks": len(results), "n_failed": sum(not r.passed for r in results),
            "checks": results}


def _judge_check(c: dict, label: str | None, an: dict, chosen: str) -> CheckResult:
    j = an["judge"]
    mode = c["judge"]
    if mode == "pointwise":
        name, thr = label or f"judge score >= {c['min']}", f">= {c['min']}"
    else:
        name, thr = label or f"judge win rate vs {c['vs']} >= {c['min_win_rate']}", f">= {c['min_win_rate']}"
    if j is None:
        return CheckResult(name, "judge", None, thr, False,
                           "judge not calibrated: cannot gate on it (no scores/judge_summary.json; run `harness judge`)")
    cal = j["calibration"]
    kappa = cal.get("kappa") if cal else None
    if "min_kappa" in c:
        calibrated = _is_num(kappa) and kappa >= c["min_kappa"]
        why = f"kappa {_f(kappa, '.2f')} < min_kappa {c['min_kappa']}" if cal else "no calibration run"
    else:
        calibrated = j["reliable"]
        why = (f"calibration says unreliable (kappa {_f(kappa, '.2f')}, min {_f(cal.get('min_kappa'), '.2f')})"
               if cal else "no calibration run")
    if not calibrated:
        return CheckResult(name, "judge", None, thr, False, f"judge not calibrated: cannot gate on it ({why})")
    if mode == "pointwise":
        pw = j["pointwise"].get(chosen) or {}
        v = pw.get("mean")
        if not _is_num(v):
            return CheckResult(name, "judge", None, thr, False, f"no judge pointwise score for {chosen}")
        return CheckResult(name, "judge", float(v), thr, float(v) >= c["min"],
                           f"judge mean {float(v):.3f} (n = {pw.get('n', '?')}, kappa {_f(kappa, '.2f')})")
    rec = next((p for p in j["pairwise"] if p.get("a") == chosen and p.get("b") == c["vs"]), None)
    flip = False
    if rec is None:
        rec = next((p for p in j["pairwise"] if p.get("b") == chosen and p.get("a") == c["vs"]), None)
        flip = True
    if rec is None:
        return CheckResult(name, "judge", None, thr, False, f"no judge pairwise comparison of {chosen} vs {c['vs']}")
    wins, losses, ties = (rec.get("losses", 0), rec.get("wins", 0), rec.get("ties", 0)) if flip else \
        (rec.get("wins", 0), rec.get("losses", 0), rec.get("ties", 0))
    n = rec.get("n") or (wins + losses + ties)
    rate = (wins + 0.5 * ties) / n if n else math.nan
    return CheckResult(name, "judge", rate, thr, bool(n) and rate >= c["min_win_rate"],
                       f"{wins} wins, {losses} losses, {ties} ties of {n} (kappa {_f(kappa, '.2f')})")


# ------------------------------------------------------------------------------------------------ outputs

def junit_xml(res: dict) -> str:
    suite_name = f"lora-gate.{res['sweep_name']}"
    root = ET.Element("testsuites", name="lora-gate", tests=str(res["n_checks"]), failures=str(res["n_failed"]),
                      errors="0", time="0")
    suite = ET.SubElement(root, "testsuite", name=suite_name, tests=str(res["n_checks"]),
                          failures=str(res["n_failed"]), errors="0", skipped="0", time="0")
    props = ET.SubElement(suite, "properties")
    for k in ("adapter", "adapter_selection", "config", "primary_metric", "alpha"):
        ET.SubElement(props, "property", name=k, value=str(res[k]))
    for r in res["checks"]:
        tc = ET.SubElement(suite, "testcase", classname=suite_name, name=r.name, time="0")
        if not r.passed:
            f = ET.SubElement(tc, "failure", message=r.reason, type=f"Gate{r.kind.capitalize()}Failure")
            f.text = f"value {_f(r.value)} (threshold {r.threshold}): {r.reason}"
        else:
            ET.SubElement(tc, "system-out").text = f"value {_f(r.value)} (threshold {r.threshold}): {r.reason}"
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def gate_md(res: dict) -> str:
    lines = [f"# Gate: {'PASSED' if res['passed'] else 'FAILED'}", "",
             f"Sweep `{res['sweep_name']}`, adapter `{res['adapter']}` (selection: {res['adapter_selection']}), "
             f"config `{res['config']}`: {res['n_checks'] - res['n_failed']}/{res['n_checks']} checks passed.", "",
             "| check | value | threshold | result | detail |", "|---|---|---|---|---|"]
    for r in res["checks"]:
        cells = [r.name, _f(r.value), r.threshold, "pass" if r.passed else "**FAIL**", r.reason]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_gate_outputs(res: dict, out_dir: str | Path) -> dict:
    out = Path(out_dir)
    payload = dict(res)
    payload["checks"] = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(r).items()}
                         for r in res["checks"]]
    write_json(out / "gate.json", payload)
    atomic_write_text(out / "junit.xml", junit_xml(res))
    atomic_write_text(out / "gate.md", gate_md(res))
    return {"gate_json": out / "gate.json", "junit_xml": out / "junit.xml", "gate_md": out / "gate.md"}


def print_table(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"gate: {res['sweep_name']} / adapter {res['adapter']}", show_lines=False)
    for col in ("check", "value", "threshold", "result", "detail"):
        t.add_column(col, overflow="fold")
    for r in res["checks"]:
        t.add_row(r.name, _f(r.value), r.threshold, "[green]pass[/]" if r.passed else "[bold red]FAIL[/]", r.reason)
    c = Console()
    c.print(t)
    c.print(f"[bold {'green' if res['passed'] else 'red'}]{'PASSED' if res['passed'] else 'FAILED'}[/]: "
            f"{res['n_checks'] - res['n_failed']}/{res['n_checks']} checks passed")
