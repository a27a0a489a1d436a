"""Judging a sweep's outputs (`harness judge run`, `harness sweep`): pointwise per model, pairwise adapter vs baselines.

Writes SCORES/judge.jsonl and SCORES/judge_summary.json (COMMON.md contract 4). Nothing is lost and nothing
is silently dropped: every verdict the judge gave is in the cache (a re-run pays only for the rest); an item
without a verdict (unparseable, backend error, no output to judge) counts as `missing` in every tally; an
endpoint that is down gives status "unavailable" (nothing judged) or "partial", the error (credentials
masked) and then JudgeUnavailable, after the summary is written.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from harness.backends.base import BackendError
from harness.config import redact_text
from harness.io import UserError, read_json, read_jsonl, write_json, write_jsonl
from harness.judge.calibration import find_sweep_task, load_calibration
from harness.judge.core import pairwise_tally
from harness.judge.length import OUTCOME, length_controlled, length_explained
from harness.judge.prompting import question_text, system_text
from harness.judge.rubrics import load_rubric
from harness.judge.settings import SMALL_JUDGE_NOTE, backend_cfg_of, judge_from_cfg, make_judge_backend, plain_cfg
from harness.stats import bootstrap_ci, sign_test

BASELINES = ("base", "fewshot")


class JudgeUnavailable(UserError):
    """The judge endpoint did not answer (at all, or for part of the items). What it did answer is cached and
    counted in judge_summary.json (status "unavailable" or "partial"); a re-run fills in the rest."""

    def __init__(self, message: str, summary: dict | None = None):
        super().__init__(message, exit_code=2)
        self.summary = summary


def task_rows(scores_path: Path) -> list[dict]:
    if not scores_path.is_file():
        raise UserError(f"{scores_path}: no scores.jsonl (run `harness eval` first)")
    return [r for r in read_jsonl(scores_path) if r.get("split", "task") == "task"]


def default_pairs(models: Iterable[str]) -> list[tuple[str, str]]:
    """Every adapter against each baseline present."""
    models = list(models)
    return [(a, b) for a in models if a not in BASELINES for b in BASELINES if b in models]


def no_output(row: dict) -> dict:
    """The result for an item the judge cannot see: its generation failed (scores row with an error)."""
    return {"score": None, "weighted_score": None, "reason": None, "missing": True, "attempts": 0, "raw": [],
            "error": f"no output to judge: generation failed: {row.get('error')}", "backend_error": False}


def pair_result(ra: dict, rb: dict) -> dict:
    bad = ra if ra.get("error") else rb
    err = f"no output to judge: generation failed for {bad.get('model')}: {bad.get('error')}"
    empty = {"winner": None, "mapped": None, "reason": None, "attempts": 0, "raw": [], "error": err, "backend_error": False}
    return {"verdict": None, "consistent": None, "missing": True, "order_ab": {"a": "x", "b": "y", **empty},
            "order_ba": {"a": "y", "b": "x", **empty}}


def pairwise_summary(a: str, b: str, results: Sequence[dict], len_a: Sequence[int], len_b: Sequence[int]) -> dict:
    """Tally, raw win rate (ties count half, an order-inconsistent pair is a tie) with a bootstrap CI over items and
    the sign test's p (wins vs losses), and the length-controlled win rate of a over b with its Wald p."""
    t = pairwise_tally(results)
    outcomes = [OUTCOME.get(r["verdict"]) for r in results]
    judged = [o for o in outcomes if o is not None]
    wr, lo, hi = bootstrap_ci(judged) if judged else (None, None, None)
    lc = length_controlled(outcomes, len_a, len_b)
    wr_ci = [lo, hi] if judged else None
    return {"a": a, "b": b, "wins": t["wins"], "losses": t["losses"], "ties": t["ties"], "n": t["n"],
            "missing": t["missing"], "inconsistent": t["inconsistent"], "position_consistency": t["position_consistency"],
            "win_rate": wr, "win_rate_ci": wr_ci, "sign_p": sign_test(t["wins"], t["losses"]),
            "outcome_sd": float(np.std(judged, ddof=1)) if len(judged) > 1 else 0.0,
            "lc_win_rate": lc["lc_win_rate"],
            "lc_win_rate_ci": lc["lc_win_rate_ci"] if lc["length_coef"] is not None else wr_ci,
            "lc_p": lc["lc_p"] if lc["length_coef"] is not None else sign_test(t["wins"], t["losses"]),
            "length_coef": lc["length_coef"], "length_p": lc["length_p"],
            "length_explained": length_explained(wr_ci, lc["lc_win_rate_ci"], lc["length_p"])}


def run_judge(sweep_scores_dir: Path, judge_cfg: Any, *, pairs: Sequence[tuple[str, str]] | None = None,
              backend: Any = None, model_cfg: dict | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Judge a sweep's task outputs: pointwise rubric per model, pairwise adapter-vs-baseline.

    Reads <scores>/scores.jsonl; writes <scores>/judge.jsonl and <scores>/judge_summary.json and returns the
    summary. `backend` (optional) is an already-built judge backend (else built from judge_cfg["backend"] with
    the judge model: judge_cfg["model"], else `model_cfg` (the sweep's base model config), else the base
    model found in the sweep dir). Raises JudgeUnavailable (after writing both files) when the judge's
    endpoint failed for some or all items.
    """
    log = log or (lambda s: print(s, file=sys.stderr))
    judge_cfg = plain_cfg(judge_cfg)
    scores_dir = Path(sweep_scores_dir)
    if not judge_cfg.get("enabled", True):
        return {"enabled": False}
    t0 = time.perf_counter()
    rows = task_rows(scores_dir / "scores.jsonl")
    by_model: dict[str, dict[str, dict]] = {}
    order: list[str] = []
    for r in rows:
        sid = str(r.get("sample_id"))
        by_model.setdefault(r["model"], {})[sid] = r
        if sid not in order:
            order.append(sid)
    # The question shown to the judge comes from the zero-shot prompt of the item (the base row, else
    # an adapter's row): the few-shot baseline's prompt carries demonstration turns that are not the question.
    canon: dict[str, list] = {}
    for m in sorted(by_model, key=lambda k: (k == "fewshot", k != "base")):
        for sid, r in by_model[m].items():
            canon.setdefault(sid, r.get("prompt"))
    max_items = judge_cfg.get("max_items")
    max_items = int(max_items) if max_items not in (None, "", 0) else None
    models = list(by_model)
    if pairs is None:
        pairs = default_pairs(models) if judge_cfg.get("pairwise", True) else []
    pairs = [tuple(p) for p in pairs]
    for a, b in pairs:
        for m in (a, b):
            if m not in by_model:
                raise UserError(f"{scores_dir / 'scores.jsonl'}: judge pair ({a}, {b}): no task outputs for model {m!r}")

    rubric_name = judge_cfg.get("rubric", "helpfulness")  # null: no pointwise scoring
    task_rubric = _task_judge_rubric(scores_dir)
    if task_rubric and task_rubric != rubric_name:  # the task decides on judge:<rubric>: score that rubric
        log(f"judge: the task's primary metric is judge:{task_rubric}: scoring with rubric {task_rubric!r} "
            f"(not judge.rubric {rubric_name!r})")
        rubric_name = task_rubric
    rubric = load_rubric(rubric_name) if rubric_name else None
    if rubric is not None and rubric.type != "pointwise":
        raise UserError(f"{rubric.path}: key 'type': judge.rubric must be a pointwise rubric")
    pair_rubric = load_rubric(judge_cfg.get("pairwise_rubric") or "pairwise") if pairs else None
    fmt_cfg = judge_cfg.get("format")
    backend_kind = backend_cfg_of(judge_cfg).get("kind", "hf")

    # what to ask: (model, sample) for pointwise, (a, b, sample) for pairwise; failed generations are not asked
    keys = [(m, s) for m in models for s in [s for s in order if s in by_model[m]][:max_items]]
    pkeys = [(a, b, s) for a, b in pairs
             for s in [s for s in order if s in by_model[a] and s in by_model[b]][:max_items]]
    point_res: dict[tuple, dict] = {k: no_output(by_model[k[0]][k[1]]) for k in keys if by_model[k[0]][k[1]].get("error")}
    pair_res: dict[tuple, dict] = {(a, b, s): pair_result(by_model[a][s], by_model[b][s]) for a, b, s in pkeys
                                   if by_model[a][s].get("error") or by_model[b][s].get("error")}
    failure: str | None = None
    identity: str | None = None
    judge = None
    own_backend = backend is None
    try:
        if own_backend:
            jc = judge_cfg if judge_cfg.get("model") or model_cfg is None else {**judge_cfg, "model": plain_cfg(model_cfg)}
            backend = make_judge_backend(jc, scores_dir.parent)
        cache_path = Path(judge_cfg["cache"]) if judge_cfg.get("cache") else scores_dir / "judge_cache.jsonl"
        judge = judge_from_cfg(judge_cfg, backend, cache_path, log)
        identity = judge.client.identity
        todo = [k for k in keys if k not in point_res] if rubric is not None else []
        if todo:  # one batch over every model (a backend batches across models; retries are batched too)
            res = judge.score(rubric, [_point_item(by_model[m][s], canon[s], fmt_cfg) for m, s in todo])
            point_res.update(zip(todo, res))
        todo = [k for k in pkeys if k not in pair_res]
        if todo:
            res = judge.compare(pair_rubric, [_pair_item(by_model[a][s], by_model[b][s], canon[s]) for a, b, s in todo])
            pair_res.update(zip(todo, res))
        failure = judge.client.failure
    except BackendError as exc:  # the judge backend could not even start (server down, unreachable /models)
        failure = redact_text(str(exc))
    finally:
        if own_backend and judge is not None:
            judge.client.close()
        elif own_backend and backend is not None:
            backend.close()

    out_rows: list[dict] = []
    pointwise: dict[str, dict] = {}
    if rubric is not None:
        for m in models:
            mk = [k for k in keys if k[0] == m]
            res = [point_res[k] for k in mk if k in point_res]
            scores = [x["score"] for x in res if x["score"] is not None]
            wscores = [x["weighted_score"] for x in res if x["weighted_score"] is not None]
            pointwise[m] = {"mean": (sum(scores) / len(scores)) if scores else None,
                            "weighted_mean": (sum(wscores) / len(wscores)) if wscores else None,
                            "n": len(mk), "missing": len(mk) - len(scores)}
        out_rows += [{"kind": "pointwise", "rubric": rubric.tag, "model": m, "sample_id": s, **point_res[(m, s)]}
                     for m, s in keys if (m, s) in point_res]
    pairwise = []
    for a, b in pairs:
        pk = [k for k in pkeys if k[:2] == (a, b)]
        res = [pair_res.get(k) or {"verdict": None, "consistent": None} for k in pk]
        pairwise.append(pairwise_summary(a, b, res, [len(by_model[a][s].get("output") or "") for _, _, s in pk],
                                         [len(by_model[b][s].get("output") or "") for _, _, s in pk]))
    for (a, b, s) in pkeys:
        if (a, b, s) in pair_res:
            x = pair_res[(a, b, s)]
            out_rows.append({"kind": "pairwise", "rubric": pair_rubric.tag, "a": a, "b": b, "sample_id": s,
                             "verdict": {"x": a, "y": b}.get(x["verdict"], x["verdict"]), "consistent": x["consistent"],
                             "missing": x["missing"], "order_ab": x["order_ab"], "order_ba": x["order_ba"]})

    backend_failed = sum(bool(r["backend_error"]) for r in point_res.values()) + \
        sum(bool(r["order_ab"]["backend_error"] or r["order_ba"]["backend_error"]) for r in pair_res.values())
    answered = sum(r["attempts"] > 0 and not r["backend_error"] for r in point_res.values()) + \
        sum(r["order_ab"]["attempts"] > 0 and not (r["order_ab"]["backend_error"] or r["order_ba"]["backend_error"])
            for r in pair_res.values())
    if failure is None and backend_failed:
        asked = len(keys) * (rubric is not None) + len(pkeys)
        failure = f"the judge backend failed for {backend_failed} of {asked} item(s) after retries"
    status = "ok" if failure is None else ("partial" if answered > 0 else "unavailable")
    stats = judge.client.stats if judge is not None else None
    if stats is not None:
        stats.wall_s = time.perf_counter() - t0
    calibration = load_calibration(judge_cfg, identity, scores_dir=scores_dir, task=find_sweep_task(scores_dir.parent))
    summary = {
        "status": status,
        "error": failure,
        "judge_model": identity,
        "judge_backend": backend_kind,
        "rubric": rubric.name if rubric else None,
        "rubric_version": rubric.version if rubric else None,
        "pairwise_rubric": pair_rubric.tag if pair_rubric else None,
        "calibration": calibration,
        "pointwise": pointwise,
        "pairwise": pairwise,
        "cost": stats.to_dict() if stats is not None else None,
    }
    write_jsonl(scores_dir / "judge.jsonl", out_rows)
    write_json(scores_dir / "judge_summary.json", summary)
    _log_summary(summary, log)
    if stats is not None:
        log(stats.line())
    if failure is not None:
        raise JudgeUnavailable(f"judge {status} ({backend_kind}): {failure}; what it answered is cached in "
                               f"{scores_dir}, a re-run fills in the rest once the endpoint answers", summary)
    return summary


def _task_judge_rubric(scores_dir: Path) -> str | None:
    """`voice` when the sweep's task decides on judge:voice (scores/summary.json primary_metric), else None."""
    p = scores_dir / "summary.json"
    primary = (read_json(p) or {}).get("primary_metric") if p.is_file() else None
    if isinstance(primary, str) and primary.startswith("judge:") and primary != "judge:pairwise":
        return primary.split(":", 1)[1]
    return None


def _point_item(row: dict, prompt: Any, fmt_cfg: str | None) -> dict:
    return {"question": question_text(prompt), "answer": row.get("output", ""), "reference": row.get("reference"),
            "format": fmt_cfg or system_text(prompt) or None}


def _pair_item(ra: dict, rb: dict, prompt: Any) -> dict:
    return {"question": question_text(prompt), "x": ra.get("output", ""), "y": rb.get("output", ""),
            "reference": ra.get("reference")}


def _f(v: float | None, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def _log_summary(summary: dict, log: Callable[[str], None]) -> None:
    for m, p in summary["pointwise"].items():
        log(f"judge {summary['rubric']}: {m}: mean {_f(p['mean'])} over {p['n'] - p['missing']}/{p['n']} "
            f"(missing {p['missing']})")
    for p in summary["pairwise"]:
        lc = f", length-controlled {_f(p['lc_win_rate'])}" + (" (length explains the preference)"
                                                               if p["length_explained"] else "")
        log(f"judge pairwise {p['a']} vs {p['b']}: {p['wins']} wins, {p['losses']} losses, {p['ties']} ties, "
            f"{p['missing']} missing of {p['n']}; win rate {_f(p['win_rate'])}{lc}; position consistency "
            f"{_f(p['position_consistency'])}")
    cal = summary["calibration"]
    if cal is None:
        log("judge calibration: none (label items on report/review.html and run `harness judge calibrate --data "
            "labels.jsonl --sweep SWEEP`, or set judge.calibration); " + SMALL_JUDGE_NOTE)
    elif not cal["reliable"]:
        why = ("" if cal["matches_judge"] else ", calibrated with a different judge model") + \
              ("" if cal["matches_task"] else f", calibrated for task {cal['task']!r}")
        log(f"judge calibration ({cal['source']}): NOT reliable (kappa {_f(cal.get('kappa'), '.3f')}, min "
            f"{cal['min_kappa']}{why}); " + SMALL_JUDGE_NOTE)
    if summary["status"] != "ok":
        log(f"judge {summary['status']}: {summary['error']}")
