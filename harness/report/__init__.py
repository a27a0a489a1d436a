"""Sweep report: the decision first, then the evidence.

`harness report SWEEP_DIR` reads the sweep directory contract (sweep.json, runs/*, scores/*) and writes
  report/report.md      Markdown (plots as report/plots/*.png next to it)
  report/report.html    one self-contained file: inline CSS, plots as base64 PNG, no JS, no external URLs
  report/verdict.json   the decision (outcome, chosen adapter, reasons, next steps, numbers, settings)
  report/analysis.json  every number behind it
  report/review.html    every output side by side (harness.report.review), linked from the headline
Deterministic for the same inputs (fixed bootstrap seeds, no timestamps).

Where things are: load.py reads the files; harness.analysis computes the numbers; harness.decision turns
them into an outcome; render.py and plots.py present them; harness.gate reads the same Analysis and Decision.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from harness.analysis import Analysis, Settings
from harness.config import redact_overrides, redact_text
from harness.decision import Decision, decide
from harness.io import atomic_write_bytes, atomic_write_text, write_json
from harness.report.load import Sweep, analyze_sweep, load_sweep, settings_for
from harness.report.plots import all_plots, headline_chart
from harness.report.render import blocks, render_html, render_md

__all__ = ["Sweep", "load_sweep", "settings_for", "analyze_sweep", "write_report", "reproduce_command",
           "decision_json"]


def _parse_override(o: str) -> tuple[str, str]:
    k, _, v = o.partition("=")
    return k.lstrip("+~"), v


def reproduce_command(sweep: Sweep, run: dict) -> str:
    """`harness train` command line reproducing one run: the sweep's fixed overrides, then the run's
    grid-point overrides (sweep.json runs[].overrides) or, without those, its hparams; then the seed."""
    merged: dict[str, str] = {}
    for o in redact_overrides([str(o) for o in sweep.meta.get("overrides") or []]):
        if isinstance(o, str) and "=" in o:
            k, v = _parse_override(o)
            merged[k] = v
    point = [o for o in redact_overrides([str(o) for o in run.get("overrides") or []]) if "=" in o]
    if point:  # the exact grid-point overrides `harness sweep` recorded for this run
        for o in point:
            k, v = _parse_override(o)
            merged[k] = v
    else:
        for k, v in sorted(run["hparams"].items()):
            merged[k] = _hp(v)
    # a grid axis the run did not pin (comma list) cannot be reproduced as is: use the run's value
    for k, v in list(merged.items()):
        if "," in v and k in run["hparams"]:
            merged[k] = _hp(run["hparams"][k])
    seed = (run.get("manifest") or {}).get("seed")
    if seed is not None and "seed" not in merged:
        merged["seed"] = str(seed)
    return "harness train " + " ".join(f"{k}={v}" for k, v in merged.items())


def _hp(v: Any) -> str:
    """One override value: floats short, lists and objects as compact JSON (also Hydra's list syntax)."""
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return f"{v:g}" if isinstance(v, float) else str(v)


def jsonable(o: Any) -> Any:
    """Dataclasses, NaN-free floats (None), rounded to 6 digits: what we write as JSON."""
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return jsonable(dataclasses.asdict(o))
    if isinstance(o, float):
        return None if math.isnan(o) or math.isinf(o) else round(o, 6)
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    return o


def decision_json(an: Analysis, d: Decision) -> dict:
    """verdict.json: the decision and the comparisons it rests on (the gate writes the same numbers)."""
    out = jsonable(d)
    out["comparisons"] = {ref: jsonable(an.comparisons.get(ref, {}).get(d.chosen, {})) for ref in an.baselines} \
        if d.chosen else {}
    out["settings"] = jsonable(an.settings)
    out["selection_values"] = jsonable(an.selection.values)
    out["not_learned"] = jsonable(an.selection.excluded)
    out["bleed"] = jsonable(an.bleed.get(d.chosen)) if d.chosen else None
    return out


def write_report(sweep_dir: str | Path, settings: Settings | None = None, *, out_dir: str | Path | None = None,
                 plots: bool = True, **overrides: Any) -> dict:
    """Write report.md, report.html, review.html, plots/, verdict.json and analysis.json under SWEEP_DIR/report.

    `settings` replaces the sweep's own decision settings; `overrides` (e.g. target=0.9) adjust them.
    Returns {"report_md", "report_html", "verdict_json", "review_html", "decision": Decision, "analysis": Analysis}.
    """
    sweep = load_sweep(sweep_dir)
    s = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None}) if settings \
        else settings_for(sweep, **overrides)
    an = analyze_sweep(sweep, s)
    d = decide(an)
    out = Path(out_dir) if out_dir else sweep.dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    chart = headline_chart(an) if plots else None
    train_times = {r["run_id"]: (r["metrics"] or {}).get("train_time_s") for r in sweep.runs}
    figs = all_plots(an, sweep.swept, {k: v for k, v in train_times.items() if v is not None}) if plots else []
    review = _write_review(sweep, an, d, out)
    command = redact_text(str(sweep.meta["command"])) if sweep.meta.get("command") else None
    repro = [(an.runs[r["run_id"]].name if r["run_id"] in an.runs else r["run_id"], r["status"],
              reproduce_command(sweep, r), r["config_sha256"] or "—") for r in sweep.runs]
    B = blocks(sweep, an, d, chart=chart, plots=figs, review=review.name if review else None, reproduce=repro,
               command=command)
    for fname, _alt, png in ([chart] if chart else []) + figs:
        atomic_write_bytes(out / "plots" / fname, png)
    atomic_write_text(out / "report.md", render_md(B))
    atomic_write_text(out / "report.html", render_html(B, f"LoRA sweep report: {sweep.name}"))
    write_json(out / "verdict.json", decision_json(an, d))
    write_json(out / "analysis.json", jsonable({
        "primary": an.primary, "metrics": an.metrics, "compared_metrics": an.compared_metrics,
        "families": an.families, "models": an.models, "comparisons": an.comparisons,
        "baseline_comparisons": an.baseline_comparisons, "forgetting": an.forgetting, "bleed": an.bleed,
        "knowledge": an.knowledge, "seeds": an.seeds, "seed_test": an.seed_test, "selection": an.selection, "settings": an.settings}))
    return {"report_md": out / "report.md", "report_html": out / "report.html", "verdict_json": out / "verdict.json",
            "review_html": review, "decision": d, "analysis": an}


def _write_review(sweep: Sweep, an: Analysis, d: Decision, out: Path) -> Path | None:
    """The side-by-side page, when its module is present and there is something to show."""
    if not sweep.rows:
        return None
    try:
        from harness.report.review import write_review
    except ImportError:
        return None
    names = {a: an.name(a) for a in an.runs}
    return write_review(sweep.dir, chosen=d.chosen, primary=an.primary, names=names, out_path=out / "review.html")
