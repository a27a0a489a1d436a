"""review.html: every eval item's outputs side by side, so a person can read what the models wrote.

`write_review(sweep_dir, chosen=..., primary=...)` writes SWEEP/report/review.html, one self-contained offline
file (inline CSS and JS, no external URL), byte-identical for the same inputs. The page shows, per task item,
the prompt, the reference and the output of base, few-shot and each adapter with a character diff (against the
reference or a baseline) and each metric's value; it filters to the discordant pairs that McNemar counts
(chosen adapter vs a baseline on the primary metric), failures, errors, knowledge items and judge order
disagreements; it lets a person label blind A/B/tie pairs with the keyboard and downloads them in the format
`harness judge calibrate --data` reads (.notes/labels_format.md). A second view shows the forgetting probes, base
vs each adapter per family, filtered to regressed / format bleed / improved; the report's forgetting table links
to it through #probes-FILTER/FAMILY anchors.

Why the data is computed here and not in JS: the discordant counts must be exactly the report's McNemar
b01/b10 (harness.stats.compare_paired), and the label question text must be exactly what the judge sees
(harness.judge.question_text). The page only filters, sorts, diffs and renders.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from harness.analysis import metric_value, probe_value
from harness.io import UserError, atomic_write_text, read_json, read_jsonl
from harness.judge import question_text
from harness.runs import display_name
from harness.stats import compare_paired

BASELINES = ("base", "fewshot")
BASELINE_NAMES = {"base": "base (zero-shot)", "fewshot": "few-shot prompt"}
LABEL_SEED = 0  # the blind A/B order of an item is a pure function of (seed, sweep, task, sample_id)
ASSETS = Path(__file__).with_name("review_assets")


def write_review(sweep_dir: Path, *, chosen: str | None, primary: str | None, names: dict[str, str] | None = None,
                 out_path: Path | None = None) -> Path:
    """Write SWEEP/report/review.html (or out_path) and return its path.

    chosen: the adapter the decision picked, marked and compared first (None or unscored: the first adapter is
        compared, none is marked); the page can switch to any adapter and either baseline.
    primary: the primary metric (None: summary.json's primary_metric, else the first metric).
    names: run_id -> person-readable name (None: sweep.json's names, else runs.display_name over the swept axes).
    """
    sweep_dir = Path(sweep_dir)
    data = review_data(sweep_dir, chosen=chosen, primary=primary, names=names)
    out = Path(out_path) if out_path is not None else sweep_dir / "report" / "review.html"
    atomic_write_text(out, render_review(data))
    return out


# ------------------------------------------------------------------------------------------------ loading

def _read_json(path: Path, what: str) -> Any:
    try:
        return read_json(path)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: {what} is not valid JSON: {exc.msg}") from None


def adapter_names(sweep_meta: dict, names: dict[str, str] | None = None) -> dict[str, str]:
    """run_id -> display name, unique: given names win, then sweep.json's `name`, then display_name over the
    swept axes (sweep.json `grid` keys, else the hparams that vary across runs)."""
    runs = [r for r in (sweep_meta.get("runs") or []) if isinstance(r, dict) and "run_id" in r]
    axes = list((sweep_meta.get("grid") or {}).keys())
    if not axes:
        keys = sorted({k for r in runs for k in (r.get("hparams") or {})})
        axes = [k for k in keys if len({json.dumps((r.get("hparams") or {}).get(k), sort_keys=True)
                                         for r in runs}) > 1]
    out: dict[str, str] = {}
    for r in runs:
        rid = str(r["run_id"])
        out[rid] = (names or {}).get(rid) or r.get("name") or display_name(r.get("hparams") or {}, axes or None)
    for rid, n in (names or {}).items():
        out.setdefault(rid, n)
    seen: dict[str, int] = {}
    for n in out.values():
        seen[n] = seen.get(n, 0) + 1
    return {rid: (n if seen[n] == 1 else f"{n} ({rid})") for rid, n in out.items()}


def blind_flip(sweep: str, task: str, sample_id: str, seed: int = LABEL_SEED) -> bool:
    """True when the baseline is shown as A (the adapter as B) for this item. Fixed per item, ~50/50."""
    digest = hashlib.sha256(f"{seed}\0{sweep}\0{task}\0{sample_id}".encode("utf-8")).digest()
    return bool(digest[0] & 1)


def _judge_rows(path: Path) -> tuple[list[dict], list[dict]]:
    """(pairwise, pointwise) rows of judge.jsonl, normalised: both orders as [{first, winner, preferred, reason,
    error}] where `first` is the model shown as A and `preferred` the model that order picked (or "tie"/None)."""
    if not path.is_file():
        return [], []
    pairwise, pointwise = [], []
    for r in read_jsonl(path):
        if not isinstance(r, dict) or r.get("kind") == "calibration":
            continue
        sid = r.get("sample_id", r.get("item_id"))
        if sid is None:
            continue
        sid = str(sid)
        if "a" in r and "b" in r and ("orders" in r or "order_ab" in r or "order_ba" in r):
            a, b = str(r["a"]), str(r["b"])
            raw = [r.get("order_ab"), r.get("order_ba")] if ("order_ab" in r or "order_ba" in r) else list(r["orders"])
            orders = []
            for k, o in enumerate(raw[:2]):
                o = o if isinstance(o, dict) else {}
                first, second = (a, b) if k == 0 else (b, a)
                winner = o.get("winner")
                mapped = o.get("mapped")
                if mapped in ("x", "y"):
                    preferred = a if mapped == "x" else b
                elif winner in ("A", "B"):
                    preferred = first if winner == "A" else second
                elif winner == "tie" or mapped == "tie":
                    preferred = "tie"
                else:
                    preferred = None
                orders.append({"first": first, "winner": winner, "preferred": preferred,
                               "reason": o.get("reason"), "error": o.get("backend_error") or o.get("error")})
            verdict = r.get("verdict")
            verdict = {"x": a, "y": b}.get(verdict, verdict)
            pairwise.append({"sample_id": sid, "a": a, "b": b, "verdict": verdict,
                             "consistent": r.get("consistent"), "orders": orders})
        elif "model" in r and ("score" in r or r.get("kind") == "pointwise"):
            pointwise.append({"sample_id": sid, "model": str(r["model"]), "score": metric_value(r.get("score")),
                              "reason": r.get("reason"), "rubric": r.get("rubric")})
    return pairwise, pointwise


# ------------------------------------------------------------------------------------------------ the data

def _ordered_models(models: set[str], chosen: str | None) -> list[str]:
    adapters = sorted(m for m in models if m not in BASELINES)
    if chosen in adapters:
        adapters = [chosen] + [a for a in adapters if a != chosen]
    return [b for b in BASELINES if b in models] + adapters


def discordance(a_values: dict[str, float | None], b_values: dict[str, float | None]) -> dict:
    """Per-item discordance of model a vs model b on one metric, and the counts the report shows.

    Items are paired exactly as harness.stats.compare_paired pairs them (both present and not None/NaN).
    Returns {"items": {sample_id: +1 (a better) | -1 (b better)}, "binary", "b10", "b01", "p_value", "n",
    "test"}: for pass/fail metrics b10/b01 are McNemar's counts (a passed & b failed / a failed & b passed),
    otherwise the number of items where a / b scored higher."""
    res = compare_paired(a_values, b_values, n_boot=200)
    if res is None:
        return {"items": {}, "binary": False, "b10": 0, "b01": 0, "p_value": None, "n": 0, "test": None}
    items: dict[str, int] = {}
    for sid in sorted(set(a_values) & set(b_values)):
        x, y = metric_value(a_values[sid]), metric_value(b_values[sid])
        if x is None or y is None:
            continue
        if "mcnemar" in res:
            x, y = float(bool(round(x))), float(bool(round(y)))
        if x != y:
            items[sid] = 1 if x > y else -1
    b10 = sum(1 for v in items.values() if v > 0)
    b01 = len(items) - b10
    mc = res.get("mcnemar")
    if mc is not None and (mc["b10"], mc["b01"]) != (b10, b01):  # one definition of a discordant pair
        raise AssertionError(f"review discordance {b10}/{b01} != McNemar {mc['b10']}/{mc['b01']}")
    return {"items": items, "binary": mc is not None, "b10": b10, "b01": b01,
            "p_value": mc["p_value"] if mc else None, "n": res["n"], "test": res["test"] if mc else None}


def review_data(sweep_dir: Path, *, chosen: str | None, primary: str | None,
                names: dict[str, str] | None = None) -> dict:
    """Everything the page shows, as one JSON-able dict (pure function of the sweep's files and the arguments)."""
    sweep_dir = Path(sweep_dir)
    meta_p = sweep_dir / "sweep.json"
    meta = _read_json(meta_p, "sweep.json") if meta_p.is_file() else {}
    scores_p = sweep_dir / "scores" / "scores.jsonl"
    if not scores_p.is_file():
        raise UserError(f"{scores_p}: no scores (run `harness eval {sweep_dir}` first)")
    summary_p = sweep_dir / "scores" / "summary.json"
    summary = _read_json(summary_p, "summary.json") if summary_p.is_file() else {}
    all_rows = [r for r in read_jsonl(scores_p) if isinstance(r, dict) and "model" in r and "sample_id" in r]
    rows = [r for r in all_rows if r.get("split", "task") == "task"]
    if not rows:
        raise UserError(f"{scores_p}: no task rows to review")

    by_model: dict[str, dict[str, dict]] = {}
    order: list[str] = []
    seen_ids: set[str] = set()
    for r in rows:  # the last row of a (model, sample_id) wins, as in the report
        sid = str(r["sample_id"])
        by_model.setdefault(str(r["model"]), {})[sid] = r
        if sid not in seen_ids:
            seen_ids.add(sid)
            order.append(sid)
    models = _ordered_models(set(by_model), chosen)
    adapters = [m for m in models if m not in BASELINES]
    baselines = [m for m in models if m in BASELINES]
    metrics = sorted({k for r in rows for k, v in (r.get("metrics") or {}).items() if metric_value(v) is not None})
    primary = primary or summary.get("primary_metric") or meta.get("primary_metric")
    if primary not in metrics:
        primary = metrics[0] if metrics else None
    if primary is not None:
        metrics = [primary] + [m for m in metrics if m != primary]
    chosen = chosen if chosen in adapters else None

    run_names = adapter_names(meta, names)
    model_info = [{"key": m, "name": BASELINE_NAMES.get(m) or run_names.get(m, m),
                   "kind": "baseline" if m in BASELINES else "adapter"} for m in models]

    # discordant pairs on the primary metric, every adapter vs every baseline
    values = {m: {sid: metric_value((r.get("metrics") or {}).get(primary)) for sid, r in per.items()}
              for m, per in by_model.items()}
    disc: dict[str, dict] = {}
    if primary is not None:
        for a in adapters:
            for b in baselines:
                disc[f"{a}|{b}"] = discordance(values[a], values[b])

    judge_pair, judge_point = _judge_rows(sweep_dir / "scores" / "judge.jsonl")
    pair_by_sid: dict[str, list[dict]] = {}
    for j in judge_pair:
        pair_by_sid.setdefault(j["sample_id"], []).append({k: v for k, v in j.items() if k != "sample_id"})
    point_by_sid: dict[str, dict[str, dict]] = {}
    for j in judge_point:
        point_by_sid.setdefault(j["sample_id"], {})[j["model"]] = {"score": j["score"], "reason": j["reason"]}

    sweep_name = str(meta.get("name") or sweep_dir.name)
    task = str(meta.get("task") or summary.get("task") or "")
    items = []
    for sid in order:
        canon = next((by_model[m][sid] for m in sorted(by_model, key=lambda k: (k == "fewshot", k != "base"))
                      if sid in by_model[m]), None)
        prompt = canon.get("prompt") if canon else None
        outs: dict[str, Any] = {}
        for m in models:
            r = by_model[m].get(sid)
            if r is None:
                continue
            out = r.get("output")
            outs[m] = {"text": "" if out is None else str(out), "error": r.get("error"),
                       "finish": r.get("finish_reason"), "tokens": r.get("completion_tokens"),
                       "metrics": [metric_value((r.get("metrics") or {}).get(k)) for k in metrics],
                       "details": r.get("details") or {}}
        ref = canon.get("reference") if canon else None
        items.append({
            "id": sid,
            "knowledge": any(bool(by_model[m][sid].get("knowledge")) for m in by_model if sid in by_model[m]),
            "family": canon.get("family") if canon else None,
            "messages": [{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))}
                         for m in (prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt or ""}])
                         if isinstance(m, dict)],
            "question": question_text(prompt),
            "reference": None if ref is None else (ref if isinstance(ref, str) else json.dumps(ref, sort_keys=True)),
            "outputs": outs,
            "disc": {k: d["items"][sid] for k, d in disc.items() if sid in d["items"]},
            "judge": pair_by_sid.get(sid, []),
            "judge_points": point_by_sid.get(sid, {}),
            "flip": blind_flip(sweep_name, task, sid),
        })
    return {
        "sweep": sweep_name, "task": task, "primary": primary, "metrics": metrics, "chosen": chosen,
        "adapter": chosen or (adapters[0] if adapters else None),  # the one compared with a baseline at first
        "models": model_info, "adapters": adapters, "baselines": baselines,
        "discordant": {k: {kk: vv for kk, vv in d.items() if kk != "items"} for k, d in disc.items()},
        "judge_ran": bool(judge_pair or judge_point),
        "storage_key": f"lora-harness-review:{sweep_name}:{task}",
        "items": items,
        "probes": probe_data([r for r in all_rows if r.get("split") == "probe"], chosen),
    }


def probe_data(rows: list[dict], chosen: str | None) -> dict:
    """The forgetting probes, base vs each adapter: per probe every model's output, pass and format bleed, and per
    adapter the flags the page filters on. Regressed / improved are discordance() of the adapter vs base on the
    probes pooled, the same pairs the report's McNemar counts; bleed is the row's metrics.bleed (harness.bleed).
    A row with an error has neither a pass nor a bleed value (an error is not a wrong answer)."""
    by_model: dict[str, dict[str, dict]] = {}
    family: dict[str, str] = {}  # key -> family, in file order
    for r in rows:  # the last row of a (model, family, sample_id) wins; keyed as the analysis keys probes
        fam = str(r.get("family") or "probe")
        key = f"{fam}/{r['sample_id']}"
        family.setdefault(key, fam)
        by_model.setdefault(str(r["model"]), {})[key] = r
    order = list(family)
    models = [m for m in _ordered_models(set(by_model), chosen) if m != "fewshot"]  # probes ask base and adapters
    adapters = [m for m in models if m not in BASELINES]

    def values(r: dict) -> tuple[float | None, float | None]:
        if r.get("error") or r.get("finish_reason") == "error":
            return None, None
        m = r.get("metrics") or {}
        return probe_value({k: v for k, v in m.items() if k != "bleed"}), metric_value(m.get("bleed"))

    vals = {m: {k: values(r) for k, r in per.items()} for m, per in by_model.items() if m in models}
    disc = {a: discordance({k: v[0] for k, v in vals[a].items()}, {k: v[0] for k, v in vals["base"].items()})["items"]
            for a in adapters} if "base" in vals else {}
    items = []
    pos = {k: i for i, k in enumerate(order)}
    for key in sorted(order, key=lambda k: (family[k], pos[k])):  # grouped by family, in file order
        canon = next(by_model[m][key] for m in ["base"] + sorted(by_model) if key in by_model.get(m, {}))
        outs = {}
        for m in models:
            r = by_model[m].get(key)
            if r is not None:
                out = r.get("output")
                p, b = vals[m][key]
                outs[m] = {"text": "" if out is None else str(out), "error": r.get("error"), "pass": p, "bleed": b,
                           "note": r["details"].get("pass") if isinstance(r.get("details"), dict) else None}
        if not outs:
            continue
        flags = {}
        for a in adapters:
            f = [name for name, on in (("regressed", disc.get(a, {}).get(key) == -1),
                                       ("bleed", (outs.get(a) or {}).get("bleed") == 1),
                                       ("improved", disc.get(a, {}).get(key) == 1)) if on]
            if f:
                flags[a] = f
        ref = canon.get("reference")
        items.append({"key": key, "id": str(canon["sample_id"]), "family": family[key],
                      "question": question_text(canon.get("prompt")),
                      "reference": None if ref in (None, "") else str(ref), "outputs": outs, "flags": flags})
    return {"models": models, "adapters": adapters, "families": sorted({it["family"] for it in items}),
            "bleed_measured": any(o["bleed"] is not None for it in items for o in it["outputs"].values()),
            "items": items}


# ------------------------------------------------------------------------------------------------ rendering

def _script_json(obj: Any) -> str:
    """JSON that is inert inside <script>: '<', '>', '&' and the JS line separators are \\u-escaped, so an output
    containing '</script><script>alert(1)</script>' stays data."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _html_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def render_review(data: dict) -> str:
    """The page: template + inline CSS + inline JS + the data as an inert JSON script block."""
    template = (ASSETS / "review.html").read_text(encoding="utf-8")
    css = (ASSETS / "review.css").read_text(encoding="utf-8")
    js = (ASSETS / "review.js").read_text(encoding="utf-8")
    title = f"Review: {data['sweep']}" + (f" · {data['task']}" if data["task"] else "")
    parts = {"/*CSS*/": css, "/*JS*/": js, "<!--TITLE-->": _html_text(title), "/*DATA*/": _script_json(data)}
    # one pass: inserted text is never scanned for markers again
    return re.sub("|".join(re.escape(k) for k in parts), lambda m: parts[m.group(0)], template)
