"""Sweep report: leaderboard with CIs, paired comparisons, plots, a verdict, and how to reproduce.

`harness report SWEEP_DIR` reads the sweep directory contract (sweep.json, runs/*, scores/*) and writes
  report/report.md     Markdown (plots as report/plots/*.png next to it)
  report/report.html   one self-contained file: inline CSS, plots as base64 PNG, no JS, no external URLs
  report/verdict.json  the structured verdict
Everything is deterministic for the same inputs (fixed bootstrap seeds, no timestamps), so two reports
of the same directory are byte-identical.

The analysis (analyze()) is shared with `harness gate`, so the gate judges exactly the numbers the
report shows. Statistical choices are documented in harness/stats.py; in short:
- each task metric gets a 95% percentile-bootstrap CI over items;
- each adapter is compared with base and with few-shot on the same sample_ids: paired bootstrap on
  the per-item difference (CI + p-value), and for pass/fail metrics (every value 0 or 1) McNemar's
  test supplies the p-value; p-values are Holm-adjusted over the adapters compared (one family per
  reference model and metric);
- "beats X with confidence" = Holm-adjusted p < alpha AND the CI of the difference is above 0;
- a forgetting-probe family "regressed" when the adapter's drop vs base is significant (CI of the
  difference below 0 and p < alpha) or larger than forgetting_threshold (raw p: flagging forgetting
  errs on the side of caution).
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.io import UserError, atomic_write_bytes, atomic_write_text, read_json, read_jsonl, sha256_file, write_json
from harness.metrics import FORMAT_DEVIATIONS
from harness.stats import bootstrap_ci, holm, is_binary, mcnemar, paired_bootstrap

BASELINES = ("base", "fewshot")
BASELINE_LABEL = {"base": "base (zero-shot)", "fewshot": "base + few-shot prompt"}


@dataclass
class VerdictConfig:
    alpha: float = 0.05                 # significance level after Holm correction
    forgetting_threshold: float = 0.10  # a probe family dropping more than this (absolute) counts as regressed
    form_gain_min: float = 0.10         # "form learned": primary metric on non-knowledge items up by >= this vs base
    knowledge_gain_max: float = 0.05    # "facts not learned": knowledge items up by less than this (or not significantly) ...
    knowledge_low: float = 0.50         # ... and still below this
    n_boot: int = 2000
    seed: int = 0


@dataclass
class Sweep:
    dir: Path
    meta: dict
    runs: list[dict]
    rows: list[dict]
    summary: dict
    judge: dict | None
    scores_sha256: str | None = None
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- loading

def _read_json_or_error(path: Path, what: str) -> Any:
    try:
        return read_json(path)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: {what} is not valid JSON: {exc.msg}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what}: {exc.strerror}") from None


def load_sweep(sweep_dir: str | Path, *, require_scores: bool = False) -> Sweep:
    """Read a sweep directory. Missing dir / sweep.json -> UserError; missing scores -> UserError if required."""
    d = Path(sweep_dir)
    if not d.is_dir():
        raise UserError(f"{d}: sweep directory not found")
    meta_path = d / "sweep.json"
    if not meta_path.is_file():
        raise UserError(f"{meta_path}: not a sweep directory (no sweep.json); run `harness sweep` first")
    meta = _read_json_or_error(meta_path, "sweep.json")
    if not isinstance(meta, dict):
        raise UserError(f"{meta_path}:1: expected a JSON object")
    runs = []
    for i, r in enumerate(meta.get("runs") or []):
        if not isinstance(r, dict) or "run_id" not in r:
            raise UserError(f"{meta_path}: runs[{i}]: expected an object with a run_id")
        run_dir = d / (r.get("run_dir") or f"runs/{r['run_id']}")
        info = dict(r)
        info["path"] = run_dir
        info["hparams"] = dict(r.get("hparams") or {})
        for name in ("metrics", "curves", "manifest", "status"):
            p = run_dir / f"{name}.json"
            info[name] = _read_json_or_error(p, f"{name}.json") if p.is_file() else {}
        cfg = run_dir / "config.yaml"
        info["config_text"] = cfg.read_text(encoding="utf-8") if cfg.is_file() else None
        info["config_sha256"] = sha256_file(cfg) if cfg.is_file() else None
        st = info["status"].get("status") if info["status"] else None
        info["status"] = r.get("status") or st or "missing"
        if info["status"] != "complete" and not info.get("error"):
            info["error"] = (info.get("error") or (read_json(run_dir / "status.json").get("error")
                                                   if (run_dir / "status.json").is_file() else None))
        runs.append(info)
    scores = d / "scores" / "scores.jsonl"
    rows: list[dict] = []
    sha = None
    if scores.is_file():
        rows = [r for r in read_jsonl(scores) if isinstance(r, dict) and "model" in r and "sample_id" in r]
        sha = sha256_file(scores)
    if require_scores and not rows:
        raise UserError(f"{scores}: no scores (missing or empty); run `harness eval {d}` first")
    summary_p = d / "scores" / "summary.json"
    summary = _read_json_or_error(summary_p, "summary.json") if summary_p.is_file() else {}
    judge_p = d / "scores" / "judge_summary.json"
    judge = _read_json_or_error(judge_p, "judge_summary.json") if judge_p.is_file() else None
    return Sweep(d, meta, runs, rows, summary or {}, judge, sha)


# --------------------------------------------------------------------------------------------- analysis

def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _probe_value(row: dict, primary: str | None) -> float | None:
    m = row.get("metrics") or {}
    if "score" in m and _num(m["score"]) is not None:
        return _num(m["score"])
    vals = {k: _num(v) for k, v in m.items() if _num(v) is not None}
    if len(vals) == 1:
        return next(iter(vals.values()))
    if primary in vals:
        return vals[primary]
    return sum(vals.values()) / len(vals) if vals else None


def _ci_dict(values: list[float], cfg: VerdictConfig) -> dict:
    mean, lo, hi = bootstrap_ci(values, n_boot=cfg.n_boot, alpha=cfg.alpha, seed=cfg.seed)
    return {"mean": mean, "lo": lo, "hi": hi, "n": sum(1 for v in values if v is not None)}


def _paired(a: dict[str, float | None], b: dict[str, float | None], cfg: VerdictConfig) -> dict | None:
    ids = sorted(set(a) & set(b))
    xs = [a[i] for i in ids]
    ys = [b[i] for i in ids]
    keep = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
    if not keep:
        return None
    xs, ys = [k[0] for k in keep], [k[1] for k in keep]
    res = paired_bootstrap(xs, ys, n_boot=cfg.n_boot, alpha=cfg.alpha, seed=cfg.seed)
    res["test"] = "paired bootstrap"
    if is_binary(xs) and is_binary(ys):
        mc = mcnemar(xs, ys)
        res["mcnemar"] = mc
        res["p_bootstrap"] = res["p_value"]
        res["p_value"] = mc["p_value"]
        res["test"] = f"McNemar ({mc['method']})"
    return res


def _hp_str(hp: dict) -> str:
    return ", ".join(f"{k}={_fmt_hp(v)}" for k, v in sorted(hp.items()))


def _fmt_hp(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def analyze(sweep: Sweep, cfg: VerdictConfig | None = None) -> dict:
    """All numbers the report and the gate use. Pure function of the sweep's files and cfg."""
    cfg = cfg or VerdictConfig()
    rows = sweep.rows
    summary_models = (sweep.summary.get("models") or {}) if isinstance(sweep.summary, dict) else {}
    task_rows = [r for r in rows if r.get("split", "task") == "task"]
    probe_rows = [r for r in rows if r.get("split") == "probe"]

    metric_names = sorted({k for r in task_rows for k, v in (r.get("metrics") or {}).items() if _num(v) is not None})
    primary = sweep.summary.get("primary_metric") or sweep.meta.get("primary_metric")
    if primary not in metric_names:
        primary = metric_names[0] if metric_names else primary
    if primary in metric_names:
        metric_names = [primary] + [m for m in metric_names if m != primary]

    models_in_rows = sorted({r["model"] for r in rows})
    run_by_id = {r["run_id"]: r for r in sweep.runs}
    adapters = sorted(m for m in models_in_rows if m not in BASELINES)
    baselines = [b for b in BASELINES if b in models_in_rows]

    # per-model, per-metric item values keyed by sample_id (last row wins on duplicates)
    item: dict[str, dict[str, dict[str, float | None]]] = {}
    know: dict[str, dict[str, bool]] = {}
    for r in task_rows:
        per = item.setdefault(r["model"], {})
        for m in metric_names:
            per.setdefault(m, {})[str(r["sample_id"])] = _num((r.get("metrics") or {}).get(m))
        know.setdefault(r["model"], {})[str(r["sample_id"])] = bool(r.get("knowledge"))
    probe_item: dict[str, dict[str, dict[str, float | None]]] = {}
    for r in probe_rows:
        fam = r.get("family") or "probe"
        probe_item.setdefault(r["model"], {}).setdefault(fam, {})[str(r["sample_id"])] = _probe_value(r, primary)
    families = sorted({f for per in probe_item.values() for f in per})

    models: dict[str, dict] = {}
    for m in models_in_rows:
        sm = summary_models.get(m, {})
        entry = {"kind": "baseline" if m in BASELINES else "adapter",
                 "n": len(know.get(m, {})),
                 "metrics": {k: _ci_dict(list(item.get(m, {}).get(k, {}).values()), cfg) for k in metric_names},
                 "probes": {f: _ci_dict(list(probe_item.get(m, {}).get(f, {}).values()), cfg)
                            for f in families if f in probe_item.get(m, {})}}
        # fall back on summary.json probe means when the rows have none
        for f, v in (sm.get("probes") or {}).items():
            if f not in entry["probes"] and _num(v) is not None:
                entry["probes"][f] = {"mean": _num(v), "lo": math.nan, "hi": math.nan, "n": 0}
        # form vs knowledge
        kn = None
        if primary and any(know.get(m, {}).values()):
            vals = item.get(m, {}).get(primary, {})
            form = [v for s, v in vals.items() if not know[m].get(s) and v is not None]
            kno = [v for s, v in vals.items() if know[m].get(s) and v is not None]
            kn = {"form": sum(form) / len(form) if form else None, "knowledge": sum(kno) / len(kno) if kno else None,
                  "n_form": len(form), "n_knowledge": len(kno)}
        elif isinstance(sm.get("knowledge"), dict):
            kn = {"form": _num(sm["knowledge"].get("form")), "knowledge": _num(sm["knowledge"].get("knowledge")),
                  "n_form": None, "n_knowledge": None}
        entry["knowledge"] = kn
        models[m] = entry

    # paired comparisons with Holm over adapters, per (reference, metric)
    comparisons: dict[str, dict[str, dict[str, dict]]] = {}
    for ref in baselines:
        comp: dict[str, dict[str, dict]] = {a: {} for a in adapters}
        for k in metric_names:
            res = {a: _paired(item.get(a, {}).get(k, {}), item.get(ref, {}).get(k, {}), cfg) for a in adapters}
            names = [a for a in adapters if res[a] is not None]
            adj = holm([res[a]["p_value"] for a in names])
            for a, p in zip(names, adj):
                r = res[a]
                r["p_holm"] = p
                r["significant"] = bool(p < cfg.alpha and r["lo"] > 0)
                r["significantly_worse"] = bool(p < cfg.alpha and r["hi"] < 0)
                comp[a][k] = r
        comparisons[ref] = comp

    # forgetting: each adapter (and few-shot) vs base, per probe family
    probe_deltas: dict[str, dict[str, dict]] = {}
    if "base" in models:
        for m in [x for x in models_in_rows if x != "base"]:
            per = {}
            for f in families:
                a = probe_item.get(m, {}).get(f)
                b = probe_item.get("base", {}).get(f)
                res = _paired(a, b, cfg) if a and b else None
                if res is None:
                    ma, mb = models[m]["probes"].get(f), models["base"]["probes"].get(f)
                    if ma and mb:
                        res = {"diff": ma["mean"] - mb["mean"], "lo": math.nan, "hi": math.nan,
                               "p_value": math.nan, "n": 0, "test": "means only (no per-item rows)"}
                if res is None:
                    continue
                sig_drop = bool(not math.isnan(res["hi"]) and res["hi"] < 0 and res["p_value"] < cfg.alpha)
                res["regressed"] = bool(sig_drop or -res["diff"] > cfg.forgetting_threshold)
                res["significant_drop"] = sig_drop
                per[f] = res
            # pooled over all probe items
            a_all = {f"{f}/{s}": v for f in families for s, v in probe_item.get(m, {}).get(f, {}).items()}
            b_all = {f"{f}/{s}": v for f in families for s, v in probe_item.get("base", {}).get(f, {}).items()}
            pooled = _paired(a_all, b_all, cfg) if a_all and b_all else None
            if pooled is not None:
                sig_drop = bool(pooled["hi"] < 0 and pooled["p_value"] < cfg.alpha)
                pooled["regressed"] = bool(sig_drop or -pooled["diff"] > cfg.forgetting_threshold)
                pooled["significant_drop"] = sig_drop
            probe_deltas[m] = {"families": per, "overall": pooled}

    # form vs knowledge items, each adapter vs base, paired on the primary metric
    knowledge_vs_base: dict[str, dict] = {}
    if "base" in models and primary:
        for a in adapters:
            per = {}
            for part, want in (("form", False), ("knowledge", True)):
                av = {s: v for s, v in item.get(a, {}).get(primary, {}).items() if know.get(a, {}).get(s) is want}
                bv = {s: v for s, v in item.get("base", {}).get(primary, {}).items() if know.get("base", {}).get(s) is want}
                res = _paired(av, bv, cfg) if av and bv else None
                if res is not None:
                    res["significant"] = bool(res["p_value"] < cfg.alpha and res["lo"] > 0)
                per[part] = res
            knowledge_vs_base[a] = per

    judge = _judge_view(sweep.judge)
    analysis = {
        "knowledge_vs_base": knowledge_vs_base,
        "primary": primary, "metrics": metric_names, "families": families, "models": models,
        "adapters": adapters, "baselines": baselines, "comparisons": comparisons, "probe_deltas": probe_deltas,
        "judge": judge, "config": asdict(cfg),
        "failed_runs": [{"run_id": r["run_id"], "hparams": r["hparams"], "error": r.get("error") or "unknown error"}
                        for r in sweep.runs if r["status"] != "complete"],
        "unscored_runs": [r["run_id"] for r in sweep.runs if r["status"] == "complete" and r["run_id"] not in models],
        "runs": {r["run_id"]: {"hparams": r["hparams"], "status": r["status"], "metrics": r["metrics"]}
                 for r in sweep.runs},
    }
    analysis["verdict"] = _verdict(analysis, run_by_id, cfg)
    return analysis


def _judge_view(js: dict | None) -> dict | None:
    if not isinstance(js, dict):
        return None
    calib = js.get("calibration") if isinstance(js.get("calibration"), dict) else None
    return {"judge_model": js.get("judge_model"), "rubric": js.get("rubric"), "calibration": calib,
            "reliable": bool(calib and calib.get("reliable") is True),
            "pointwise": js.get("pointwise") or {}, "pairwise": js.get("pairwise") or []}


def _verdict(an: dict, run_by_id: dict, cfg: VerdictConfig) -> dict:
    primary, models, adapters = an["primary"], an["models"], an["adapters"]
    v: dict[str, Any] = {"best": None, "primary_metric": primary, "best_value": None, "runner_up": None,
                         "margin_vs_runner_up": None, "vs_base": None, "vs_fewshot": None,
                         "beats_base": None, "beats_fewshot": None, "forgetting_regressed": None,
                         "regressed_families": [], "form_not_facts": False, "recommendation": "no_adapter",
                         "sentences": []}
    s = v["sentences"]
    if not adapters or primary is None:
        n_failed = len(an["failed_runs"])
        s.append("No adapter finished training and scoring, so there is nothing to recommend"
                 + (f" ({n_failed} run(s) failed: see Failed runs)." if n_failed else "."))
        v["text"] = " ".join(s)
        return v

    def key(a: str) -> tuple:
        mean = models[a]["metrics"][primary]["mean"]
        return (-(mean if not math.isnan(mean) else -1e9), a)

    ranked = sorted(adapters, key=key)
    best = ranked[0]
    bm = models[best]["metrics"][primary]
    v.update(best=best, best_value=bm["mean"], best_ci=[bm["lo"], bm["hi"]])
    hp = run_by_id.get(best, {}).get("hparams") or {}
    sent = f"Best configuration: `{best}`" + (f" ({_hp_str(hp)})" if hp else "") + \
        f" with {primary} = {bm['mean']:.3f} [95% CI {bm['lo']:.3f}, {bm['hi']:.3f}]"
    if len(ranked) > 1:
        ru = ranked[1]
        margin = bm["mean"] - models[ru]["metrics"][primary]["mean"]
        v.update(runner_up=ru, margin_vs_runner_up=margin)
        sent += f", {margin:+.3f} ahead of the runner-up `{ru}`"
    s.append(sent + ".")

    for ref in ("base", "fewshot"):
        comp = an["comparisons"].get(ref, {}).get(best, {}).get(primary)
        label = "the base model" if ref == "base" else "the few-shot prompt"
        if comp is None:
            s.append(f"No {ref} scores to compare with.")
            continue
        v[f"vs_{ref}"] = {k: comp[k] for k in ("diff", "lo", "hi", "p_value", "p_holm", "n", "test")}
        v[f"beats_{ref}"] = comp["significant"]
        stats_txt = (f"{comp['diff']:+.3f} {primary}, 95% CI [{comp['lo']:+.3f}, {comp['hi']:+.3f}], "
                     f"Holm-adjusted p {_fmt_p_eq(comp['p_holm'])}, n = {comp['n']}")
        if comp["significant"]:
            s.append(f"It beats {label} with confidence ({stats_txt}).")
        elif comp["significantly_worse"]:
            s.append(f"It is significantly WORSE than {label} ({stats_txt}).")
        else:
            s.append(f"It does not beat {label} with confidence ({stats_txt}).")

    # the primary metric decides; but say which other metrics moved with confidence (form gains, e.g. schema_valid)
    for ref in ("base", "fewshot"):
        gains = {m: c for m, c in (an["comparisons"].get(ref, {}).get(best) or {}).items()
                 if m != primary and m not in FORMAT_DEVIATIONS and c and c.get("significant")}
        v[f"other_gains_vs_{ref}"] = {m: round(c["diff"], 6) for m, c in sorted(gains.items())}
        if gains and v[f"beats_{ref}"] is False:
            label = "the base model" if ref == "base" else "the few-shot prompt"
            s.append(f"Other metrics where it does beat {label} with confidence: "
                     + ", ".join(f"{m} {c['diff']:+.3f} [{c['lo']:+.3f}, {c['hi']:+.3f}]" for m, c in sorted(gains.items()))
                     + ".")

    pd = an["probe_deltas"].get(best)
    if pd is None or not pd["families"]:
        s.append("Forgetting probes: not measured (no probe scores for base and the best adapter).")
    else:
        bad = sorted(f for f, r in pd["families"].items() if r["regressed"])
        if pd.get("overall") and pd["overall"]["regressed"]:
            bad = bad or ["overall"]
        v["forgetting_regressed"] = bool(bad)
        v["regressed_families"] = bad
        if bad:
            parts = []
            for f in bad:
                r = pd["families"].get(f) or pd["overall"]
                parts.append(f"{f} {r['diff']:+.3f}" + ("" if math.isnan(r["lo"]) else f" [{r['lo']:+.3f}, {r['hi']:+.3f}]"))
            s.append("Forgetting probes REGRESSED vs base: " + "; ".join(parts)
                     + f" (regressed = significant drop or a drop larger than {cfg.forgetting_threshold:.2f}).")
        else:
            s.append(f"Forgetting probes: no regression vs base (no significant drop, none larger than "
                     f"{cfg.forgetting_threshold:.2f}).")

    kb, ka = (models.get("base") or {}).get("knowledge"), models[best].get("knowledge")
    form_not_facts = False
    if kb and ka and None not in (kb.get("form"), ka.get("form"), kb.get("knowledge"), ka.get("knowledge")):
        form_gain = ka["form"] - kb["form"]
        know_gain = ka["knowledge"] - kb["knowledge"]
        kvb = an.get("knowledge_vs_base", {}).get(best) or {}
        form_test, know_test = kvb.get("form"), kvb.get("knowledge")
        # form learned: a real gain on items that need no knowledge (significant when per-item data exists)
        form_learned = form_gain >= cfg.form_gain_min and (form_test is None or form_test["significant"])
        # facts not learned: knowledge items still low, and their gain small or not significant
        facts_missing = ka["knowledge"] < cfg.knowledge_low and (
            know_gain < cfg.knowledge_gain_max or (know_test is not None and not know_test["significant"]))
        form_not_facts = bool(form_learned and facts_missing)
        v["knowledge"] = {"form_adapter": ka["form"], "form_base": kb["form"], "knowledge_adapter": ka["knowledge"],
                          "knowledge_base": kb["knowledge"], "form_gain": form_gain, "knowledge_gain": know_gain}
    v["form_not_facts"] = form_not_facts

    if form_not_facts:
        k = v["knowledge"]
        s.append(f"Fine-tuning taught the format, not the facts: use retrieval (RAG) for the facts "
                 f"({primary} on items not needing knowledge {k['form_base']:.2f} -> {k['form_adapter']:.2f}, "
                 f"on knowledge items {k['knowledge_base']:.2f} -> {k['knowledge_adapter']:.2f}).")
        v["recommendation"] = "rag"
    if v["beats_fewshot"] is False:
        s.append("Prompting was enough: use the few-shot prompt (the best adapter shows no significant gain over it).")
        if not form_not_facts:
            v["recommendation"] = "prompting"
    if v["recommendation"] == "no_adapter":
        if v["beats_base"] is False:
            s.append("Fine-tuning did not beat the base model with confidence: keep the base model.")
            v["recommendation"] = "base"
        elif v["forgetting_regressed"]:
            s.append(f"Use the adapter `{best}` with care: it regressed on forgetting probes "
                     "(try a lower learning rate or rank, fewer epochs, or mix general data into training).")
            v["recommendation"] = "adapter_with_care"
        else:
            s.append(f"Recommendation: use the adapter `{best}`.")
            v["recommendation"] = "adapter"
    v["text"] = " ".join(s)
    return v


# ------------------------------------------------------------------------------------------- formatting

def _fmt_p(p: float | None) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3f}"


def _fmt_p_eq(p: float | None) -> str:
    t = _fmt_p(p)
    return t if t.startswith("<") else f"= {t}"


def _fmt_ci(d: dict | None) -> str:
    if not d or d.get("mean") is None or math.isnan(d["mean"]):
        return "—"
    if math.isnan(d.get("lo", math.nan)):
        return f"{d['mean']:.3f}"
    return f"{d['mean']:.3f} [{d['lo']:.3f}, {d['hi']:.3f}]"


def _fmt_diff(d: dict | None) -> str:
    if not d or d.get("diff") is None or math.isnan(d["diff"]):
        return "—"
    if math.isnan(d.get("lo", math.nan)):
        return f"{d['diff']:+.3f}"
    return f"{d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"


def _fmt_bytes(n: Any) -> str:
    n = _num(n)
    if n is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "—"


def _fmt_num(v: Any, spec: str = ".1f") -> str:
    n = _num(v)
    return "—" if n is None else format(n, spec)


@dataclass
class Cell:
    text: str
    cls: str = ""


# Blocks: ("h", level, text, id) ("p", text) ("verdict", sentences) ("table", id, headers, rows)
#         ("img", alt, filename, png) ("code", lang, text) ("details", summary, lang, text) ("ul", items)

def _plots(sweep: Sweep, an: dict) -> list[tuple[str, str, bytes]]:
    """[(filename, alt, png_bytes)] rendered with matplotlib Agg, deterministic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "figure.dpi": 100, "svg.hashsalt": "report",
                         "path.simplify": True})
    out: list[tuple[str, str, bytes]] = []

    def save(fig, name: str, alt: str) -> None:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
        plt.close(fig)
        out.append((name, alt, buf.getvalue()))

    # 1. loss curves, one panel per run
    runs = [r for r in sweep.runs if r["curves"] and (r["curves"].get("train") or r["curves"].get("val"))]
    if runs:
        cols = min(3, len(runs))
        nrows = math.ceil(len(runs) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 2.8 * nrows), squeeze=False)
        for ax, r in zip(axes.flat, runs):
            c = r["curves"]
            if c.get("train"):
                ax.plot([p["step"] for p in c["train"]], [p["loss"] for p in c["train"]], label="train", alpha=0.8)
            if c.get("val"):
                ax.plot([p["step"] for p in c["val"]], [p["loss"] for p in c["val"]], "o-", label="val")
            bs = (r["metrics"] or {}).get("best_step")
            if bs is not None:
                ax.axvline(bs, color="grey", ls=":", lw=1, label="best step")
            ax.set_title(r["run_id"] + ("" if r["status"] == "complete" else f" ({r['status']})"))
            ax.set_xlabel("step")
            ax.set_ylabel("loss")
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(runs):]:
            ax.axis("off")
        save(fig, "loss_curves.png", "Train and validation loss per run")

    primary = an["primary"]
    adapters = [a for a in an["adapters"] if a in an["runs"]]
    models = an["models"]
    colors = {a: f"C{i % 10}" for i, a in enumerate(adapters)}

    def baselines_hlines(ax, metric: str) -> None:
        for b, style in (("base", "--"), ("fewshot", ":")):
            if b in models and metric in models[b]["metrics"] and not math.isnan(models[b]["metrics"][metric]["mean"]):
                ax.axhline(models[b]["metrics"][metric]["mean"], color="black" if b == "base" else "tab:red",
                           ls=style, lw=1, label=b)

    # 2. each metric against each swept hyperparameter
    grid = sweep.meta.get("grid") or {}
    swept = [k for k in sorted(grid) if len(set(map(str, grid[k] if isinstance(grid[k], list) else [grid[k]]))) > 1]
    if not swept:
        keys = sorted({k for a in adapters for k in an["runs"][a]["hparams"]})
        swept = [k for k in keys if len({str(an["runs"][a]["hparams"].get(k)) for a in adapters}) > 1]
    if adapters and swept and an["metrics"]:
        metrics = an["metrics"]
        for hp in swept:
            fig, axes = plt.subplots(1, len(metrics), figsize=(4.0 * len(metrics), 3.0), squeeze=False)
            vals = [an["runs"][a]["hparams"].get(hp) for a in adapters]
            numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vals)
            cats = sorted({x for x in vals}, key=lambda x: (0, x, "") if numeric else (1, 0, str(x)))
            categorical = not numeric or len(cats) <= 6
            logx = numeric and not categorical and min(vals) > 0 and max(vals) / min(vals) >= 10
            for ax, metric in zip(axes[0], metrics):
                seen: dict[Any, int] = {}
                for a, x in zip(adapters, vals):
                    d = models[a]["metrics"][metric]
                    k = seen.get(x, 0)
                    seen[x] = k + 1
                    xx = (cats.index(x) + 0.08 * k) if categorical else x
                    ax.errorbar([xx], [d["mean"]], yerr=[[d["mean"] - d["lo"]], [d["hi"] - d["mean"]]], fmt="o",
                                capsize=3, color=colors[a])
                    ax.annotate(a, (xx, d["mean"]), textcoords="offset points", xytext=(5, 3), fontsize=6)
                baselines_hlines(ax, metric)
                if logx:
                    ax.set_xscale("log")
                if categorical:
                    ax.set_xticks(range(len(cats)), [_fmt_hp(c) for c in cats])
                    ax.set_xlim(-0.5, len(cats) - 0.2)
                ax.set_xlabel(hp)
                ax.set_title(metric)
                if all(0 <= models[a]["metrics"][metric]["mean"] <= 1 for a in adapters):
                    ax.set_ylim(-0.05, 1.05)
            axes[0][0].legend(fontsize=7, loc="best")
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", hp)
            save(fig, f"metrics_vs_{safe}.png", f"Task metrics against {hp}")

    # 3. quality against training cost
    costed = [a for a in adapters if _num((an["runs"][a]["metrics"] or {}).get("train_time_s")) is not None]
    if costed and primary:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for a in costed:
            d = models[a]["metrics"][primary]
            t = float(an["runs"][a]["metrics"]["train_time_s"])
            ax.errorbar([t], [d["mean"]], yerr=[[d["mean"] - d["lo"]], [d["hi"] - d["mean"]]], fmt="o", capsize=3,
                        color=colors[a])
            ax.annotate(a, (t, d["mean"]), textcoords="offset points", xytext=(4, 3), fontsize=7)
        baselines_hlines(ax, primary)
        ax.set_xlabel("train time (s)")
        ax.set_ylabel(primary)
        ax.set_title(f"{primary} against training cost")
        ax.legend(fontsize=7, loc="best")
        save(fig, "quality_vs_cost.png", f"{primary} against train time")
    return out


def _parse_override(o: str) -> tuple[str, str]:
    k, _, v = o.partition("=")
    return k.lstrip("+~"), v


def reproduce_command(sweep: Sweep, run: dict) -> str:
    """`harness train` command line reproducing one run: the sweep's fixed overrides, then the run's
    grid-point overrides (sweep.json runs[].overrides) or, without those, its hparams; then the seed."""
    merged: dict[str, str] = {}
    for o in sweep.meta.get("overrides") or []:
        if isinstance(o, str) and "=" in o:
            k, v = _parse_override(o)
            merged[k] = v
    point = [o for o in (run.get("overrides") or []) if isinstance(o, str) and "=" in o]
    if point:  # the exact grid-point overrides `harness sweep` recorded for this run
        for o in point:
            k, v = _parse_override(o)
            merged[k] = v
    else:
        for k, v in sorted(run["hparams"].items()):
            merged[k] = _fmt_hp(v) if not isinstance(v, (list, dict)) else json.dumps(v)
    # a grid axis the run did not pin (comma list) cannot be reproduced as is: use the run's value
    for k, v in list(merged.items()):
        if "," in v and k in run["hparams"]:
            merged[k] = _fmt_hp(run["hparams"][k])
    seed = (run.get("manifest") or {}).get("seed")
    if seed is not None and "seed" not in merged:
        merged["seed"] = str(seed)
    return "harness train " + " ".join(f"{k}={v}" for k, v in merged.items())


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = d
    return out


_PROVENANCE = re.compile(r"(identity|sha256|hash|commit|seed|^task\.|quant|device)", re.I)


def _blocks(sweep: Sweep, an: dict, plots: list[tuple[str, str, bytes]]) -> list[tuple]:
    B: list[tuple] = []
    name = sweep.meta.get("name") or sweep.dir.name
    primary = an["primary"]
    v = an["verdict"]
    models = an["models"]
    runs = {r["run_id"]: r for r in sweep.runs}
    B.append(("h", 1, f"LoRA sweep report: {name}", "top"))
    facts = [f"task `{sweep.meta.get('task') or sweep.summary.get('task') or '?'}`"]
    if sweep.summary.get("task_version"):
        facts[-1] += f" (version {sweep.summary['task_version']})"
    facts.append(f"base model `{sweep.meta.get('model') or '?'}`")
    facts.append(f"primary metric `{primary}`")
    facts.append(f"{len(sweep.runs)} runs ({len(an['adapters'])} adapters scored, {len(an['failed_runs'])} failed)")
    B.append(("p", "; ".join(facts) + "."))

    B.append(("h", 2, "Verdict", "verdict-h"))
    B.append(("verdict", v["sentences"]))
    B.append(("p", f"Structured verdict: `report/verdict.json` (recommendation: `{v['recommendation']}`)."))

    # leaderboard
    B.append(("h", 2, "Leaderboard", "leaderboard-h"))
    if not an["models"]:
        B.append(("p", "No scores yet: run `harness eval` on this sweep directory, then re-run `harness report`."))
    judge = an["judge"]
    fams = an["families"]
    headers = ["#", "model", "hyperparameters"] + [f"{m} (95% CI)" for m in an["metrics"]]
    if judge:
        headers.append("judge")
    headers += [f"Δ probe {f}" for f in fams]
    headers += ["train time (s)", "tokens/s", "adapter size", "best step", "best val loss"]

    def sort_key(m: str) -> tuple:
        d = models[m]["metrics"].get(primary) if primary else None
        mean = d["mean"] if d and not math.isnan(d["mean"]) else -1e9
        return (-mean, m)

    rows = []
    for i, m in enumerate(sorted(models, key=sort_key), 1):
        run = runs.get(m, {})
        rm = run.get("metrics") or {}
        label = BASELINE_LABEL.get(m, m)
        cells: list[Any] = [str(i), Cell(label, "best" if m == v.get("best") else ""),
                            _hp_str(run.get("hparams") or {}) or ("—" if m not in BASELINES else "prompt only")]
        cells += [_fmt_ci(models[m]["metrics"].get(k)) for k in an["metrics"]]
        if judge:
            pw = judge["pointwise"].get(m)
            if pw and _num(pw.get("mean")) is not None:
                cal = judge["calibration"]
                kappa = f"κ {cal['kappa']:.2f}" if cal and _num(cal.get("kappa")) is not None else "no calibration"
                txt = f"{pw['mean']:.2f} (n={pw.get('n', '?')}, {kappa})"
                cells.append(Cell(txt, "") if judge["reliable"] else Cell(txt + " UNRELIABLE", "warn"))
            else:
                cells.append("—")
        pd = an["probe_deltas"].get(m, {}).get("families", {})
        for f in fams:
            if m == "base":
                cells.append(_fmt_ci(models[m]["probes"].get(f)) + " (abs)")
            elif f in pd:
                cells.append(Cell(_fmt_diff(pd[f]) + (" REGRESSED" if pd[f]["regressed"] else ""),
                                  "warn" if pd[f]["regressed"] else ""))
            else:
                cells.append("—")
        cells += [_fmt_num(rm.get("train_time_s")), _fmt_num(rm.get("tokens_per_s"), ".0f"),
                  _fmt_bytes(rm.get("adapter_bytes")), _fmt_num(rm.get("best_step"), ".0f"),
                  _fmt_num(rm.get("best_val_loss"), ".4f")]
        rows.append(cells)
    if rows:
        B.append(("table", "leaderboard", headers, rows))
        B.append(("p", "Metric cells: mean over eval items [95% bootstrap CI]. Δ probe: adapter minus base on the "
                       "forgetting-probe family, paired on the same items [95% CI]; the base row shows its absolute "
                       f"score. REGRESSED = significant drop or a drop larger than {an['config']['forgetting_threshold']:.2f}."))
    if judge:
        cal = judge["calibration"]
        if cal:
            ctext = (f"kappa {_fmt_num(cal.get('kappa'), '.2f')} (minimum {_fmt_num(cal.get('min_kappa'), '.2f')}), "
                     f"accuracy {_fmt_num(cal.get('accuracy'), '.2f')}, position consistency "
                     f"{_fmt_num(cal.get('position_consistency'), '.2f')}, n = {cal.get('n', '?')}")
        else:
            ctext = "not calibrated"
        status = "reliable" if judge["reliable"] else "UNRELIABLE: do not trust its scores"
        B.append(("p", f"Judge `{judge['judge_model']}` with rubric `{judge['rubric']}`: calibration {ctext}: **{status}**."))
        if judge["pairwise"]:
            prow = []
            for p in judge["pairwise"]:
                prow.append([str(p.get("a")), str(p.get("b")), str(p.get("wins")), str(p.get("losses")), str(p.get("ties")),
                             _fmt_num(p.get("position_consistency"), ".2f"), str(p.get("n"))])
            B.append(("h", 3, "Judge pairwise", "judge-pairwise"))
            B.append(("table", "judge-pairwise-table", ["a", "b", "a wins", "a losses", "ties", "position consistency", "n"], prow))
    if an["failed_runs"]:
        B.append(("h", 3, "Failed runs", "failed"))
        B.append(("table", "failed-runs", ["run", "hyperparameters", "error"],
                  [[f["run_id"], _hp_str(f["hparams"]), Cell(str(f["error"]), "warn")] for f in an["failed_runs"]]))
    if an["unscored_runs"]:
        B.append(("p", "Complete but not scored (run `harness eval` again): "
                       + ", ".join(f"`{r}`" for r in an["unscored_runs"]) + "."))

    # knowledge split
    kn_rows = []
    for m in sorted(models, key=sort_key):
        k = models[m].get("knowledge")
        if k and (k.get("form") is not None or k.get("knowledge") is not None):
            kn_rows.append([BASELINE_LABEL.get(m, m), _fmt_num(k.get("form"), ".3f"), _fmt_num(k.get("knowledge"), ".3f")])
    if kn_rows:
        B.append(("h", 3, "Form vs knowledge", "knowledge"))
        B.append(("table", "knowledge-table", ["model", f"{primary}: items not needing knowledge (form)",
                                               f"{primary}: knowledge items"], kn_rows))

    # paired comparisons
    B.append(("h", 2, "Paired comparisons", "comparisons"))
    B.append(("p", "Each adapter against a baseline on the same sample_ids. diff = adapter minus baseline "
                   "[95% paired-bootstrap CI]. p: McNemar (pass/fail metrics) or paired bootstrap (others); "
                   f"p (Holm): adjusted over the {len(an['adapters'])} adapters compared. "
                   f"✓ = Holm-adjusted p < {an['config']['alpha']} and CI above 0."))
    for ref in an["baselines"]:
        crow = []
        for a in sorted(an["adapters"], key=sort_key):
            for k in an["metrics"]:
                r = an["comparisons"][ref].get(a, {}).get(k)
                if not r:
                    continue
                mc = r.get("mcnemar")
                counts = f"{mc['b10']} / {mc['b01']}" if mc else "—"
                mark = "✓" if r["significant"] else ("worse" if r["significantly_worse"] else "")
                crow.append([a, k, Cell(_fmt_diff(r), "good" if r["significant"] else ("warn" if r["significantly_worse"] else "")),
                             r["test"], counts, _fmt_p(r["p_value"]), _fmt_p(r["p_holm"]), str(r["n"]), mark])
        if crow:
            B.append(("h", 3, f"vs {BASELINE_LABEL[ref]}", f"vs-{ref}"))
            B.append(("table", f"comparisons-{ref}", ["adapter", "metric", "diff [95% CI]", "test",
                                                       "adapter-only / baseline-only passes", "p", "p (Holm)", "n", "beats"], crow))
    if not an["baselines"]:
        B.append(("p", "No base or few-shot scores: nothing to compare with."))

    # plots
    B.append(("h", 2, "Plots", "plots"))
    if plots:
        for fname, alt, png in plots:
            B.append(("img", alt, fname, png))
    else:
        B.append(("p", "Nothing to plot (no curves and no scored adapters)."))

    # reproduce
    B.append(("h", 2, "Reproduce", "reproduce"))
    if sweep.meta.get("command"):
        B.append(("p", "The whole sweep:"))
        B.append(("code", "bash", str(sweep.meta["command"])))
    B.append(("p", f"Scores: `harness eval {sweep.dir.name}` (scores/scores.jsonl sha256 `{sweep.scores_sha256 or 'n/a'}`); "
                   f"this report: `harness report {sweep.dir.name}`."))
    rrows = [[r["run_id"], r["status"], Cell(reproduce_command(sweep, r), "mono"), r["config_sha256"] or "—"]
             for r in sweep.runs]
    if rrows:
        B.append(("table", "reproduce-table", ["run", "status", "command", "config.yaml sha256"], rrows))
    # manifest provenance: values common to all runs once, differing ones per run
    flats = {r["run_id"]: {k: v for k, v in _flatten(r.get("manifest") or {}).items()
                           if _PROVENANCE.search(k) and not isinstance(v, (dict, list))} for r in sweep.runs}
    keys = sorted({k for f in flats.values() for k in f})
    if keys:
        common = [k for k in keys if len({json.dumps(f.get(k)) for f in flats.values()}) == 1]
        differ = [k for k in keys if k not in common]
        B.append(("h", 3, "Manifest hashes", "manifest"))
        some = next(iter(flats.values()))
        B.append(("table", "manifest-common", ["manifest key (same for every run)", "value"],
                  [[k, Cell(str(some.get(k)), "mono")] for k in common]))
        if differ:
            B.append(("table", "manifest-differ", ["run"] + differ,
                      [[rid] + [Cell(str(f.get(k, "—")), "mono") for k in differ] for rid, f in flats.items()]))
    for r in sweep.runs:
        if r["config_text"]:
            B.append(("details", f"{r['run_id']}: config.yaml", "yaml", r["config_text"].rstrip("\n")))
    return B


# ---------------------------------------------------------------------------------------------- renderers

def _md_cell(c: Any) -> str:
    t = c.text if isinstance(c, Cell) else str(c)
    t = t.replace("|", "\\|").replace("\n", " ")
    if isinstance(c, Cell) and c.cls == "mono":
        t = f"`{t}`"
    if isinstance(c, Cell) and c.cls == "best":
        t = f"**{t}**"
    return t


def render_md(blocks: list[tuple]) -> str:
    out: list[str] = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out.append("#" * b[1] + " " + b[2])
        elif kind == "p":
            out.append(b[1])
        elif kind == "verdict":
            out.append("\n".join(f"> {s}" if i == 0 else f">\n> {s}" for i, s in enumerate(b[1])))
        elif kind == "table":
            _, _id, headers, rows = b
            lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |",
                     "|" + "|".join("---" for _ in headers) + "|"]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{b[1]}](plots/{b[2]})")
        elif kind == "code":
            out.append(f"```{b[1]}\n{b[2]}\n```")
        elif kind == "details":
            out.append(f"<details><summary>{html.escape(b[1])}</summary>\n\n```{b[2]}\n{b[3]}\n```\n\n</details>")
        elif kind == "ul":
            out.append("\n".join(f"- {x}" for x in b[1]))
    return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    t = html.escape(text, quote=False)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)
    return t


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d2330;line-height:1.45}
main{max-width:1240px;margin:0 auto;padding:24px 28px 60px;background:#fff;min-height:100vh}
h1{font-size:1.6em;border-bottom:3px solid #3b6fd8;padding-bottom:6px}
h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #d8dce3;padding-bottom:4px}
h3{font-size:1.05em;margin-top:1.5em}
table{border-collapse:collapse;margin:10px 0;font-size:12.5px;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #d8dce3;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f6;font-weight:600}
tr:nth-child(even) td{background:#fafbfc}
td.best{font-weight:700;color:#1a4fb5}
td.warn{color:#a3231a;font-weight:600}
td.good{color:#1e6b2f;font-weight:600}
td.mono,code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
code{background:#f0f2f5;padding:1px 4px;border-radius:3px}
pre{background:#f0f2f5;padding:10px;overflow-x:auto;border-radius:4px}
pre code{background:none;padding:0}
#verdict{border-left:6px solid #3b6fd8;background:#f1f5fd;padding:10px 16px;margin:10px 0;font-size:14.5px}
#verdict p{margin:6px 0}
figure{margin:14px 0}
figure img{max-width:100%;border:1px solid #e1e4ea}
figcaption{font-size:12px;color:#5a6272}
details{margin:6px 0}
summary{cursor:pointer;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
"""


def render_html(blocks: list[tuple], title: str) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>", "<main>"]
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out.append(f'<h{b[1]} id="{b[3]}">{_inline_html(b[2])}</h{b[1]}>')
        elif kind == "p":
            out.append(f"<p>{_inline_html(b[1])}</p>")
        elif kind == "verdict":
            out.append('<section id="verdict">' + "".join(f"<p>{_inline_html(s)}</p>" for s in b[1]) + "</section>")
        elif kind == "table":
            _, tid, headers, rows = b
            h = "".join(f"<th>{_inline_html(str(x))}</th>" for x in headers)
            body = []
            for row in rows:
                tds = []
                for c in row:
                    if isinstance(c, Cell):
                        cls = f' class="{c.cls}"' if c.cls else ""
                        tds.append(f"<td{cls}>{html.escape(c.text, quote=False)}</td>")
                    else:
                        tds.append(f"<td>{_inline_html(str(c))}</td>")
                body.append("<tr>" + "".join(tds) + "</tr>")
            idattr = f' id="{tid}"' if tid else ""
            out.append(f"<table{idattr}><thead><tr>{h}</tr></thead><tbody>" + "".join(body) + "</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(b[3]).decode("ascii")
            out.append(f'<figure><img alt="{html.escape(b[1])}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{html.escape(b[1])}</figcaption></figure>")
        elif kind == "code":
            out.append(f"<pre><code>{html.escape(b[2], quote=False)}</code></pre>")
        elif kind == "details":
            out.append(f"<details><summary>{html.escape(b[1])}</summary><pre><code>"
                       f"{html.escape(b[3], quote=False)}</code></pre></details>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline_html(x)}</li>" for x in b[1]) + "</ul>")
    out += ["</main>", "</body>", "</html>"]
    return "\n".join(out) + "\n"


def _jsonable(o: Any) -> Any:
    if isinstance(o, float):
        return None if math.isnan(o) or math.isinf(o) else round(o, 6)
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    return o


def write_report(sweep_dir: str | Path, cfg: VerdictConfig | None = None, *, out_dir: str | Path | None = None,
                 plots: bool = True) -> dict:
    """Write report.md, report.html, plots/ and verdict.json under SWEEP_DIR/report (or out_dir).

    Returns {"report_md", "report_html", "verdict_json", "verdict": {...}}.
    """
    cfg = cfg or VerdictConfig()
    sweep = load_sweep(sweep_dir)
    an = analyze(sweep, cfg)
    plots = _plots(sweep, an) if plots else []
    blocks = _blocks(sweep, an, plots)
    out = Path(out_dir) if out_dir else sweep.dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    plot_dir = out / "plots"
    for fname, _alt, png in plots:
        atomic_write_bytes(plot_dir / fname, png)
    md = render_md(blocks)
    page = render_html(blocks, f"LoRA sweep report: {sweep.meta.get('name') or sweep.dir.name}")
    atomic_write_text(out / "report.md", md)
    atomic_write_text(out / "report.html", page)
    verdict = {k: v for k, v in an["verdict"].items() if k != "sentences"}
    verdict = _jsonable(verdict)
    write_json(out / "verdict.json", verdict)
    write_json(out / "analysis.json", _jsonable({k: an[k] for k in ("primary", "metrics", "families", "models",
                                                                    "comparisons", "probe_deltas", "failed_runs")}))
    return {"report_md": out / "report.md", "report_html": out / "report.html", "verdict_json": out / "verdict.json",
            "verdict": verdict}
