"""Judge calibration: agreement of the judge with human labels (accuracy, Cohen's kappa with a CI, position
consistency, length bias, how many more labels are needed), task-specific or generic.

Where calibrations live and which one a judge run uses (see `load_calibration`):
- task-specific: `harness judge calibrate --data labels.jsonl --sweep SWEEP` (labels from review.html) writes
  SWEEP/scores/judge_calibration/calibration.json with source "task" and the task's name;
- generic: `harness judge calibrate --data LLMBar/.../dataset.json --out DIR` (labels without a task), used when
  judge.calibration names DIR. A task calibration beats a generic one; one made with another judge model, or
  for another task, is reported but never reliable.

The agreement statistics themselves (kappa and its CI, labels needed, the reliability rule) are
harness.judge.agreement's; this module runs the judge on labels and reads and writes calibration files.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from harness.io import UserError, read_json, write_json, write_jsonl
from harness.judge.agreement import KAPPA_HALF_WIDTH, calibration_metrics, is_reliable, pointwise_metrics
from harness.judge.labels import load_labels
from harness.judge.rubrics import load_rubric
from harness.judge.settings import (DEFAULT_MIN_KAPPA, SMALL_JUDGE_NOTE, backend_cfg_of, judge_from_cfg,
                                    make_judge_backend, plain_cfg)

CALIBRATION_DIRNAME = "judge_calibration"


def find_sweep_task(sweep_dir: Path) -> str | None:
    sj = Path(sweep_dir) / "sweep.json"
    return (read_json(sj) or {}).get("task") if sj.is_file() else None


def calibrate(data: str | Path, judge_cfg: Any, out_dir: str | Path | None = None, *, limit: int | None = None,
              backend: Any = None, sweep_dir: str | Path | None = None,
              log: Callable[[str], None] = print) -> dict:
    """Run the judge on human-labelled pairs (and scores); write OUT/{calibration.json,judge.jsonl,judge_summary.json}.

    With `sweep_dir` the calibration is task-specific and goes to SWEEP/scores/judge_calibration/ (where
    run_judge finds it); the labels' task must be the sweep's. Labels with a "task" are task-specific too.
    """
    t0 = time.perf_counter()
    judge_cfg = plain_cfg(judge_cfg)
    items = load_labels(data, limit)
    task = next((it["task"] for it in items if it["task"]), None)
    if sweep_dir is not None:
        sweep_task = find_sweep_task(Path(sweep_dir))
        if task and sweep_task and task != sweep_task:
            raise UserError(f"{data}: key 'task': labels are for task {task!r}, the sweep {sweep_dir} is {sweep_task!r}")
        task = task or sweep_task
        out_dir = out_dir or Path(sweep_dir) / "scores" / CALIBRATION_DIRNAME
    if out_dir is None:
        raise UserError("judge calibrate: give --out DIR or --sweep SWEEP_DIR")
    out_dir = Path(out_dir)
    source = "task" if (task or sweep_dir is not None) else "generic"
    pairs = [it for it in items if it["output_2"] is not None]
    scored = [(it, k) for it in items for k in ("1", "2") if it[f"score_{k}"] is not None]
    min_kappa = float(judge_cfg.get("min_kappa", DEFAULT_MIN_KAPPA))
    rubric = load_rubric(judge_cfg.get("pairwise_rubric") or "pairwise")
    point_rubric = load_rubric(judge_cfg["rubric"]) if scored and judge_cfg.get("rubric") else None
    if point_rubric is not None:
        for it, k in scored:
            s = it[f"score_{k}"]
            if not point_rubric.scale_min <= s <= point_rubric.scale_max:
                raise UserError(f"{data}: item {it['id']}: key 'score_{k}': {s} outside the rubric "
                                f"{point_rubric.name}'s scale {point_rubric.scale_min}..{point_rubric.scale_max}")
    own_backend = backend is None
    if own_backend:
        backend = make_judge_backend(judge_cfg, Path(sweep_dir) if sweep_dir else None)
    # with a sweep: its judge cache, so labels on the sweep's own outputs reuse the verdicts the sweep paid for
    cache_dir = Path(sweep_dir) / "scores" if sweep_dir is not None else out_dir
    cache_path = Path(judge_cfg["cache"]) if judge_cfg.get("cache") else cache_dir / "judge_cache.jsonl"
    judge = judge_from_cfg(judge_cfg, backend, cache_path, log)
    try:
        results = judge.compare(rubric, [{"question": it["input"], "x": it["output_1"], "y": it["output_2"],
                                          "reference": it["reference"]} for it in pairs]) if pairs else []
        point = judge.score(point_rubric, [{"question": it["input"], "answer": it[f"output_{k}"],
                                            "reference": it["reference"]} for it, k in scored]) if point_rubric else []
    finally:
        if own_backend:
            judge.client.close()
    metrics = calibration_metrics(pairs, results, min_kappa) if pairs else _no_pairs(min_kappa)
    pointwise = pointwise_metrics([it[f"score_{k}"] for it, k in scored], [r["score"] for r in point]) if point else None
    judge.client.stats.wall_s = time.perf_counter() - t0
    identity = judge.client.identity
    cal = {**metrics, "source": source, "task": task, "judge_model": identity, "rubric": rubric.tag, "data": str(data),
           "backend": backend_cfg_of(judge_cfg).get("kind", "hf"), "pointwise": pointwise,
           "pointwise_rubric": point_rubric.tag if point_rubric else None}
    rows = [{"kind": "calibration", "id": it["id"], "sample_id": it["sample_id"], "a": it["model_1"], "b": it["model_2"],
             "label": it["label"], "verdict": r["verdict"], "consistent": r["consistent"],
             "order_ab": r["order_ab"], "order_ba": r["order_ba"]} for it, r in zip(pairs, results)]
    rows += [{"kind": "calibration_pointwise", "id": it["id"], "sample_id": it["sample_id"], "model": it[f"model_{k}"],
              "human_score": it[f"score_{k}"], **r} for (it, k), r in zip(scored, point)]
    write_json(out_dir / "calibration.json", cal)
    write_jsonl(out_dir / "judge.jsonl", rows)
    summary = {"status": "ok", "error": None, "judge_model": identity, "rubric": rubric.tag, "calibration": cal,
               "pointwise": {}, "pairwise": [], "cost": judge.client.stats.to_dict()}
    write_json(out_dir / "judge_summary.json", summary)
    log_calibration(cal, log)
    log(judge.client.stats.line())
    log(f"wrote {out_dir / 'calibration.json'}")
    if sweep_dir is not None:
        refresh_sweep_calibration(Path(sweep_dir) / "scores", judge_cfg, log)
    return cal


def refresh_sweep_calibration(scores_dir: Path, judge_cfg: dict, log: Callable[[str], None] = print) -> dict | None:
    """Put the calibration a judge run would now use into SCORES/judge_summary.json (when the sweep was judged),
    so the report, the decision and the gate use the new labels without re-judging anything."""
    path = scores_dir / "judge_summary.json"
    summary = read_json(path) if path.is_file() else None
    if not isinstance(summary, dict) or not summary.get("judge_model"):
        return None
    summary["calibration"] = load_calibration(judge_cfg, summary["judge_model"], scores_dir=scores_dir,
                                              task=find_sweep_task(scores_dir.parent))
    write_json(path, summary)
    cal = summary["calibration"] or {}
    log(f"updated {path}: calibration {cal.get('source')} (kappa {_fmt(cal.get('kappa'))}, "
        f"{'reliable' if cal.get('reliable') else 'NOT reliable'})")
    return summary


def _no_pairs(min_kappa: float) -> dict:
    return {"n": 0, "accuracy": None, "kappa": None, "kappa_ci": None, "labels_needed": None,
            "position_consistency": None, "length_bias": None, "length_bias_n": 0, "missing": 0, "ties": 0,
            "human_ties": 0, "min_kappa": min_kappa, "reliable": False}


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def log_calibration(cal: dict, log: Callable[[str], None]) -> None:
    where = f"task {cal['task']!r}" if cal.get("task") else "generic labels"
    ci = cal.get("kappa_ci")
    ci_s = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    log(f"calibration ({cal['source']}, {where}) on {cal['n']} labelled pairs from {cal['data']}: accuracy "
        f"{_fmt(cal['accuracy'])}, kappa {_fmt(cal['kappa'])}{ci_s}, position consistency "
        f"{_fmt(cal['position_consistency'])}, length bias {_fmt(cal['length_bias'])} (n={cal['length_bias_n']}), "
        f"missing {cal['missing']}")
    if cal.get("pointwise"):
        p = cal["pointwise"]
        log(f"pointwise ({cal['pointwise_rubric']}) on {p['n']} scores: exact {_fmt(p['exact'])}, within 1 "
            f"{_fmt(p['within_1'])}, kappa {_fmt(p['kappa'])}, missing {p['missing']}")
    if cal.get("labels_needed"):
        log(f"label {cal['labels_needed']} more pairs to know kappa within +-{KAPPA_HALF_WIDTH}")
    if cal["reliable"]:
        log(f"judge is reliable: kappa {_fmt(cal['kappa'])} >= min_kappa {cal['min_kappa']} and its CI is above 0")
    else:
        log(f"judge is NOT reliable: kappa {_fmt(cal['kappa'])}{ci_s} (needs >= min_kappa {cal['min_kappa']} with a "
            f"CI above 0). {SMALL_JUDGE_NOTE}")


CONTRACT_KEYS = ("source", "path", "n", "accuracy", "kappa", "kappa_ci", "position_consistency", "length_bias",
                 "reliable", "labels_needed")


def load_calibration(judge_cfg: dict, identity: str | None = None, min_kappa: float | None = None, *,
                     scores_dir: Path | None = None, task: str | None = None) -> dict | None:
    """The calibration a judge run uses: SCORES/judge_calibration/ (task) beats judge.calibration (a file or
    a dir holding calibration.json); among those, one made with this judge model and for this task first.
    Reliability is re-judged against this run's min_kappa, and never holds for another judge or task."""
    mk = float(min_kappa if min_kappa is not None else judge_cfg.get("min_kappa", DEFAULT_MIN_KAPPA))
    found = []
    for p in ([Path(scores_dir) / CALIBRATION_DIRNAME] if scores_dir else []) + \
             ([Path(judge_cfg["calibration"])] if judge_cfg.get("calibration") else []):
        p = p / "calibration.json" if p.is_dir() else p
        cal = read_json(p) if p.is_file() else None
        if isinstance(cal, dict):
            found.append(_as_used(cal, p, identity, task, mk))
    if not found:
        return None
    return sorted(found, key=lambda c: (not (c["matches_judge"] and c["matches_task"]), c["source"] != "task"))[0]


def _as_used(cal: dict, path: Path, identity: str | None, task: str | None, mk: float) -> dict:
    out = {k: cal.get(k) for k in CONTRACT_KEYS}
    out.update({"source": cal.get("source") or "generic", "path": str(path), "min_kappa": mk, "task": cal.get("task"),
                "judge_model": cal.get("judge_model"), "missing": cal.get("missing"), "data": cal.get("data"),
                "pointwise": cal.get("pointwise")})
    out["matches_judge"] = identity is None or cal.get("judge_model") in (None, identity)
    out["matches_task"] = out["source"] != "task" or task is None or cal.get("task") in (None, task)
    out["reliable"] = bool(out["matches_judge"] and out["matches_task"]
                           and is_reliable(cal.get("kappa"), cal.get("kappa_ci"), mk))
    return out
