"""Read a sweep directory (the contract in the README) into what the analysis needs. All report and gate I/O
on the input side lives here; analysis and decision are pure."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.analysis import Analysis, RunView, Settings
from harness.io import UserError, read_json, read_jsonl, sha256_file
from harness.judge_decision import analyze_judged
from harness.targets import sweep_runs


@dataclass
class Sweep:
    dir: Path
    meta: dict                     # sweep.json
    runs: list[dict]               # sweep.json runs[] + each run dir's metrics/curves/manifest/config
    rows: list[dict]               # scores/scores.jsonl
    summary: dict                  # scores/summary.json
    judge: dict | None             # scores/judge_summary.json
    scores_sha256: str | None = None
    drift: dict | None = None      # scores/drift.json (harness.likelihood): KL drift and the MC probes' summary
    judge_rows: list[dict] = dataclasses.field(default_factory=list)  # scores/judge.jsonl (per-item verdicts)

    @property
    def name(self) -> str:
        return self.meta.get("name") or self.dir.name

    @property
    def swept(self) -> list[str]:
        """The grid axes that take more than one value (what tells two adapters apart)."""
        grid = self.meta.get("grid") or {}
        axes = [k for k in sorted(grid) if len({str(v) for v in (grid[k] if isinstance(grid[k], list) else [grid[k]])}) > 1]
        if axes:
            return axes
        keys = sorted({k for r in self.runs for k in r["hparams"]})
        return [k for k in keys if len({json.dumps(r["hparams"].get(k)) for r in self.runs}) > 1]


def _read_json_or_error(path: Path, what: str) -> Any:
    try:
        return read_json(path)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: {what} is not valid JSON: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read {what}: {getattr(exc, 'strerror', None) or exc}") from None


def _obj(path: Path, what: str) -> dict:
    v = _read_json_or_error(path, what) if path.is_file() else {}
    if not isinstance(v, dict):
        raise UserError(f"{path}:1: {what}: expected a JSON object")
    return v


def load_sweep(sweep_dir: str | Path, *, require_scores: bool = False) -> Sweep:
    """Read a sweep directory. Missing dir / sweep.json -> UserError; missing scores -> UserError if required."""
    d = Path(sweep_dir)
    if not d.is_dir():
        raise UserError(f"{d}: sweep directory not found")
    meta_path = d / "sweep.json"
    if not meta_path.is_file():
        raise UserError(f"{meta_path}: not a sweep directory (no sweep.json); run `harness sweep` first")
    meta = _obj(meta_path, "sweep.json")
    runs = []
    for i, (r, run_dir) in enumerate(sweep_runs(d)):  # the one reader of run_dir: it stays inside the sweep
        if "run_id" not in r:
            raise UserError(f"{meta_path}: runs[{i}]: expected an object with a run_id")
        if not isinstance(r.get("hparams") or {}, dict):
            raise UserError(f"{meta_path}: runs[{i}].hparams: expected an object")
        info = dict(r)
        info["path"] = run_dir
        info["hparams"] = dict(r.get("hparams") or {})
        for name in ("metrics", "curves", "manifest", "status"):
            info[name] = _obj(run_dir / f"{name}.json", f"{name}.json")
        cfg = run_dir / "config.yaml"
        info["config_text"] = cfg.read_text(encoding="utf-8", errors="replace") if cfg.is_file() else None
        info["config_sha256"] = sha256_file(cfg) if cfg.is_file() else None
        st = info["status"].get("status")
        if not info.get("error"):
            info["error"] = info["status"].get("error")
        info["status"] = r.get("status") or st or "missing"
        runs.append(info)
    scores = d / "scores" / "scores.jsonl"
    rows: list[dict] = []
    sha = None
    if scores.is_file():
        for i, r in enumerate(read_jsonl(scores), 1):
            if not isinstance(r, dict) or "model" not in r or "sample_id" not in r:
                raise UserError(f"{scores}:{i}: expected a score row with model and sample_id")
            if not isinstance(r.get("metrics") or {}, dict):
                raise UserError(f"{scores}:{i}: metrics: expected an object")
            rows.append(r)
        sha = sha256_file(scores)
    drift = None
    mc = d / "scores" / "mc_scores.jsonl"  # multiple-choice probes (harness.likelihood): rows of split "mc"
    if mc.is_file() and (d / "scores" / "drift.json").is_file():
        for i, r in enumerate(read_jsonl(mc), 1):
            if not isinstance(r, dict) or "model" not in r or "sample_id" not in r or \
                    not isinstance(r.get("metrics") or {}, dict):
                raise UserError(f"{mc}:{i}: expected a score row with model, sample_id and metrics")
            rows.append({**r, "split": "mc"})
        drift = _obj(d / "scores" / "drift.json", "drift.json")
    if require_scores and not rows:
        raise UserError(f"{scores}: no scores (missing or empty); run `harness eval {d}` first")
    summary = _obj(d / "scores" / "summary.json", "summary.json")
    judge_p = d / "scores" / "judge_summary.json"
    judge = _obj(judge_p, "judge_summary.json") if judge_p.is_file() else None
    judge_rows_p = d / "scores" / "judge.jsonl"
    judge_rows = [r for r in read_jsonl(judge_rows_p) if isinstance(r, dict)] if judge and judge_rows_p.is_file() else []
    return Sweep(d, meta, runs, rows, summary, judge, sha, drift, judge_rows)


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def run_views(sweep: Sweep) -> list[RunView]:
    not_learned = set(sweep.summary.get("not_learned") or [])
    out = []
    for r in sweep.runs:
        m = r["metrics"] or {}
        improved = m.get("improved")
        if r["run_id"] in not_learned:
            improved = False
        out.append(RunView(r["run_id"], str(r.get("name") or ""), r["status"], r["hparams"],
                           _float(m.get("best_val_loss")), improved if isinstance(improved, bool) else None,
                           r["curves"] or {}, r.get("seed"), r.get("config_id"), r.get("error")))
    return out


SETTING_KEYS = {f.name for f in dataclasses.fields(Settings)}
_OPEN, _HALF = (0.0, 1.0, False), (0.0, 1.0, True)  # (lo, hi, lo allowed): (0, 1) and [0, 1)
# what a foreign sweep.json may hold for each Settings field: a number in a range, an integer in a range, a text
SETTING_RULES: dict[str, tuple] = {
    "alpha": ("p", _OPEN), "margin": ("p", _OPEN), "max_bleed": ("p", _HALF), "min_effect": ("p", _HALF),
    "max_error_rate": ("p", _HALF), "max_judge_missing": ("p", _HALF),
    "min_judge_consistency": ("p", _HALF), "power": ("p", _OPEN),
    "target": ("real", None), "min_items": ("int", (1, 10**9)), "min_events": ("int", (0, 10**9)),
    "n_boot": ("int", (100, 100_000)), "seed": ("int", (0, 2**32 - 1)),
    "target_source": ("text", None), "select_by": ("text", None),
}


def check_setting(key: str, v: Any, where: str) -> Any:
    """One decision setting read from a file, checked before it is used: a string alpha would be a TypeError deep
    in the statistics, n_boot 1e9 an allocation of hundreds of GiB. UserError `WHERE: KEY: ...` otherwise."""
    kind, rng = SETTING_RULES[key]
    if kind == "text":
        if not isinstance(v, str) or len(v) > 200:
            raise UserError(f"{where}: {key}: expected a short text, got {str(v)[:60]!r}")
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind == "int" and not isinstance(v, int)):
        want = "an integer" if kind == "int" else "a number"
        raise UserError(f"{where}: {key}: expected {want}, got {json.dumps(v, default=str)[:60]}")
    if not math.isfinite(v):
        raise UserError(f"{where}: {key}: expected a finite number, got {v}")
    if kind == "int" and not rng[0] <= v <= rng[1]:
        raise UserError(f"{where}: {key}: expected an integer from {rng[0]} to {rng[1]}, got {v}")
    if kind == "p" and not (rng[0] < v < rng[1] or (rng[2] and v == rng[0])):
        raise UserError(f"{where}: {key}: expected a number in {'[' if rng[2] else '('}0, 1), got {v}")
    return v


def settings_for(sweep: Sweep, **overrides: Any) -> Settings:
    """The sweep's decision settings (sweep.json `decision`, written from conf/decision), the task's target
    (recorded by the sweep), then explicit overrides (CLI flags, the gate config). None overrides are ignored.
    Values read from the sweep's files are checked (check_setting): the directory may be someone else's."""
    decision = sweep.meta.get("decision") or {}
    if not isinstance(decision, dict):
        raise UserError(f"{sweep.dir / 'sweep.json'}: decision: expected an object")
    base = {k: check_setting(k, v, f"{sweep.dir / 'sweep.json'}: decision")
            for k, v in decision.items() if k in SETTING_KEYS and v is not None}
    if base.get("target") is not None and not base.get("target_source"):
        base["target_source"] = "task"
    if "target" not in base and _float(sweep.summary.get("target")) is not None:
        target = check_setting("target", float(sweep.summary["target"]), f"{sweep.dir / 'scores' / 'summary.json'}")
        base.update(target=target, target_source="task")
    if "select_by" not in base and sweep.summary.get("select_by"):
        base["select_by"] = str(sweep.summary["select_by"])
    base.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**base)


def analyze_sweep(sweep: Sweep, settings: Settings) -> Analysis:
    primary = sweep.summary.get("primary_metric") or sweep.meta.get("primary_metric")
    return analyze_judged(sweep.rows, run_views(sweep), settings, primary=primary, judge=sweep.judge,
                          judge_rows=sweep.judge_rows, swept=sweep.swept, drift=(sweep.drift or {}).get("drift"))
