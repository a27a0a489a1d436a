"""Write a realistic synthetic sweep directory (the sweep directory contract) for report/gate tests.

write_sweep(root, scenario) -> sweep dir with 3 complete adapters + 1 failed run, base and few-shot
baselines, curves, metrics, manifests, per-item scores (task + forgetting probes), summary.json and
judge_summary.json. Everything is deterministic for a given (scenario, seed).

Scenarios (primary metric all_fields_correct; json_valid is the "form" metric):
  clear_win       the best adapter is clearly better than base and few-shot on everything
  prompting       few-shot does as well as the adapters: prompting was enough
  form_not_facts  adapters learn the JSON form but knowledge items stay as bad as base
  form_only       adapters learn the JSON form, the primary metric does not beat few-shot
  weak_prompt     few-shot ~0.02 and the adapter ~0.08 on the primary metric, JSON validity 0.4 -> 1.0
  no_gain         adapters score like the base model; the prompt does not help either
  knowledge_only  (use with knowledge_share=1.0) nothing improves on items that all need knowledge
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import yaml

MODELS_BASELINE = ("base", "fewshot")
RUNS = [  # run_id, lora.r, train.lr, status
    ("r4-lr0.0002", 4, 0.0002, "complete"),
    ("r8-lr0.0002", 8, 0.0002, "complete"),
    ("r4-lr0.001", 4, 0.001, "complete"),
    ("r8-lr0.001", 8, 0.001, "failed"),
]
FAILED_ERROR = "RuntimeError: loss became NaN at step 12 (lr too high?)"
PROBE_FAMILIES = ("arithmetic", "general_knowledge")

# (p json_valid, p all_fields_correct on form items, p all_fields_correct on knowledge items)
SCENARIOS: dict[str, dict[str, tuple[float, float, float]]] = {
    "clear_win": {
        "base": (0.35, 0.15, 0.10), "fewshot": (0.60, 0.35, 0.20),
        "r4-lr0.0002": (0.90, 0.70, 0.55), "r8-lr0.0002": (0.99, 0.92, 0.85), "r4-lr0.001": (0.85, 0.60, 0.45),
    },
    "prompting": {
        "base": (0.35, 0.15, 0.10), "fewshot": (0.97, 0.85, 0.75),
        "r4-lr0.0002": (0.93, 0.80, 0.70), "r8-lr0.0002": (0.97, 0.86, 0.76), "r4-lr0.001": (0.90, 0.75, 0.65),
    },
    "form_only": {  # adapters fix the JSON form, but the primary metric barely moves over few-shot
        "base": (0.05, 0.15, 0.10), "fewshot": (0.40, 0.20, 0.15),
        "r4-lr0.0002": (0.99, 0.22, 0.15), "r8-lr0.0002": (0.99, 0.23, 0.16), "r4-lr0.001": (0.98, 0.21, 0.15),
    },
    "form_not_facts": {
        "base": (0.35, 0.15, 0.05), "fewshot": (0.55, 0.35, 0.05),
        "r4-lr0.0002": (0.95, 0.85, 0.05), "r8-lr0.0002": (0.99, 0.95, 0.07), "r4-lr0.001": (0.90, 0.80, 0.05),
    },
}
SCENARIOS.update({
    "weak_prompt": {
        "base": (0.05, 0.0, 0.0), "fewshot": (0.40, 0.02, 0.02),
        "r4-lr0.0002": (1.0, 0.08, 0.08), "r8-lr0.0002": (1.0, 0.09, 0.09), "r4-lr0.001": (0.99, 0.07, 0.07),
    },
    "no_gain": {
        "base": (0.60, 0.30, 0.30), "fewshot": (0.60, 0.30, 0.30),
        "r4-lr0.0002": (0.60, 0.30, 0.30), "r8-lr0.0002": (0.60, 0.30, 0.30), "r4-lr0.001": (0.60, 0.30, 0.30),
    },
    "knowledge_only": {
        "base": (0.90, 0.10, 0.10), "fewshot": (0.95, 0.10, 0.10),
        "r4-lr0.0002": (1.0, 0.11, 0.11), "r8-lr0.0002": (1.0, 0.12, 0.12), "r4-lr0.001": (1.0, 0.10, 0.10),
    },
})
PROBE_P = {"arithmetic": 0.55, "general_knowledge": 0.6}


def _draw(u: float, rng: random.Random, p: float) -> float:
    """Correlated pass/fail: mostly driven by the shared item difficulty u, sometimes independent."""
    return 1.0 if (u if rng.random() < 0.85 else rng.random()) < p else 0.0


def _curves(seed: int, steps: int = 40, final: float = 0.8) -> dict:
    rng = random.Random(seed)
    train = [{"step": s, "loss": round(final + 1.8 * math.exp(-s / 10) + rng.uniform(-0.05, 0.05), 4)}
             for s in range(1, steps + 1)]
    val = [{"step": s, "loss": round(final + 0.1 + 1.6 * math.exp(-s / 12) + rng.uniform(-0.02, 0.02), 4)}
           for s in range(10, steps + 1, 10)]
    return {"train": train, "val": val}


def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def write_sweep(root: str | Path, scenario: str = "clear_win", *, n_items: int = 60, n_probe: int = 40,
                judge: str | None = "reliable", probe_drop: dict[str, float] | None = None,
                seed: int = 0, name: str | None = None, target: float | None = None,
                knowledge_share: float = 0.3, error_rate: dict[str, float] | None = None,
                bleed: dict[str, float] | None = None) -> Path:
    """Write sweeps/<name>/ under `root` and return its path.

    judge: "reliable" | "unreliable" | "uncalibrated" (calibration null) | None (no judge files).
    probe_drop: {family: drop in pass probability} applied to every adapter (forgetting).
    target: the task's target for the primary metric (recorded in sweep.json `decision`).
    knowledge_share: share of eval items marked as needing knowledge.
    error_rate: {model: share of its task requests that failed in the backend} (rows with `error`).
    bleed: {family: share of every adapter's probe answers given as the task's JSON} (format bleed); with it,
      every probe row carries metrics.bleed (base never bleeds); without it, bleed is not measured.
    """
    probs = SCENARIOS[scenario]
    probe_drop = probe_drop or {}
    name = name or f"demo-{scenario}"
    sweep = Path(root) / name
    (sweep / "runs").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)

    sweep_json = {
        "name": name, "task": "demo", "model": "smollm2_135m",
        "grid": {"lora.r": [4, 8], "train.lr": [0.0002, 0.001]},
        "overrides": ["task=demo", "model=smollm2_135m", "train.epochs=1"],
        "command": f"harness sweep task=demo model=smollm2_135m train.epochs=1 sweep_name={name} "
                   "lora.r=4,8 train.lr=0.0002,0.001",
        "runs": [],
    }
    if target is not None:
        sweep_json["decision"] = {"target": target}
    for i, (run_id, r, lr, status) in enumerate(RUNS):
        hp = {"lora.r": r, "lora.alpha": 2 * r, "train.lr": lr, "train.epochs": 1}
        run_dir = sweep / "runs" / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg = {"seed": 0, "task": {"name": "demo"}, "model": {"name": "smollm2_135m"},
               "lora": {"r": r, "alpha": 2 * r, "dropout": 0.05, "target_modules": "all-linear"},
               "train": {"lr": lr, "epochs": 1, "batch_size": 8}}
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=True))
        manifest = {"run_id": run_id, "seed": 0, "git_commit": "0123456789abcdef0123456789abcdef01234567",
                    "base_model": {"name": "smollm2_135m", "path": "/cache/models/smollm2", "identity": "5f2b8c1d9e0a7b34"},
                    "task": {"name": "demo", "version": "1"},
                    "data": {"train": {"path": "evalsets/demo/train.jsonl", "sha256": "a" * 64},
                             "val": {"path": "evalsets/demo/val.jsonl", "sha256": "b" * 64}},
                    "packages": {"torch": "2.13.0", "peft": "0.21.2"}, "python": "3.11.2", "device": "cpu",
                    "quant": "none",
                    "command": f"harness train task=demo model=smollm2_135m train.epochs=1 lora.r={r} train.lr={lr}"}
        (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
        (run_dir / "curves.json").write_text(json.dumps(_curves(seed * 100 + i, 40 if status == "complete" else 12,
                                                                final=0.6 + 0.1 * i)))
        if status == "complete":
            (run_dir / "adapter").mkdir(exist_ok=True)
            (run_dir / "adapter" / "adapter_config.json").write_text(json.dumps({"r": r, "lora_alpha": 2 * r}))
            (run_dir / "adapter" / "adapter_model.safetensors").write_bytes(b"\0" * 64)
            metrics = {"best_val_loss": round(0.7 + 0.1 * i, 4), "best_step": 30 + i * 10,
                       "train_time_s": round(40.0 * r / 4 * (1 + i * 0.1), 1), "tokens_per_s": round(2500.0 / r * 4, 1),
                       "peak_mem_mb": 900 + 50 * r, "trainable_params": 115_200 * r, "adapter_bytes": 460_800 * r}
            (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
            (run_dir / "status.json").write_text(json.dumps({"status": "complete", "error": None}))
            err = None
        else:
            (run_dir / "status.json").write_text(json.dumps({"status": "failed", "error": FAILED_ERROR}))
            err = FAILED_ERROR
        sweep_json["runs"].append({"run_id": run_id, "run_dir": f"runs/{run_id}", "status": status,
                                   "hparams": hp, "error": err})
    (sweep / "sweep.json").write_text(json.dumps(sweep_json, indent=2))

    # ---- scores ----
    models = list(MODELS_BASELINE) + [rid for rid, _, _, st in RUNS if st == "complete"]
    items = [(f"demo-{k:03d}", (k % 10) < round(10 * knowledge_share)) for k in range(n_items)]
    u_jv = [rng.random() for _ in items]
    u_af = [rng.random() for _ in items]
    probes = [(fam, f"{fam}-{k:03d}", rng.random()) for fam in PROBE_FAMILIES for k in range(n_probe)]
    rows = []
    for m in models:
        mrng = random.Random(f"{seed}-{scenario}-{m}")
        p_jv, p_form, p_know = probs[m]
        erate = (error_rate or {}).get(m, 0.0)
        for k, ((sid, know), uj, ua) in enumerate(zip(items, u_jv, u_af)):
            jv = _draw(uj, mrng, p_jv)
            af = _draw(ua, mrng, p_know if know else p_form) if jv else 0.0
            f1 = 1.0 if af else (round(0.3 + 0.6 * mrng.random(), 2) if jv else 0.0)
            err = "HTTP 503: backend overloaded" if k < round(erate * n_items) else None
            metrics = {"json_valid": jv, "all_fields_correct": af, "field_f1": f1}
            rows.append({"model": m, "split": "task", "sample_id": sid, "family": None, "knowledge": know,
                         "prompt": [{"role": "user", "content": f"Extract the fields from item {sid}."}],
                         "output": "" if err else ('{"name": "x"}' if jv else "not json"), "reference": '{"name": "x"}',
                         "metrics": {k2: None for k2 in metrics} if err else metrics, "error": err,
                         "details": {"json_valid": "ok" if jv else "JSONDecodeError"}})
        for fam, sid, u in probes:
            p = PROBE_P[fam] - (probe_drop.get(fam, 0.0) if m not in MODELS_BASELINE else 0.0)
            em = _draw(u, mrng, p)
            metrics, out = {"exact_match": em}, "a"
            if bleed is not None:
                bled = m not in MODELS_BASELINE and int(sid.rsplit("-", 1)[1]) < round(bleed.get(fam, 0.0) * n_probe)
                metrics["bleed"] = float(bled)
                if bled:
                    metrics["exact_match"], out = 0.0, '{"product": "mobile-app", "severity": "low"}'
            rows.append({"model": m, "split": "probe", "sample_id": sid, "family": fam, "knowledge": False,
                         "prompt": [{"role": "user", "content": f"probe {sid}"}], "output": out, "reference": "a",
                         "metrics": metrics, "details": {}})
    (sweep / "scores").mkdir(exist_ok=True)
    (sweep / "scores" / "scores.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))

    summary = {"task": "demo", "task_version": "1", "primary_metric": "all_fields_correct", "models": {}}
    for m in models:
        task = [r for r in rows if r["model"] == m and r["split"] == "task"]
        summary["models"][m] = {
            "kind": "baseline" if m in MODELS_BASELINE else "adapter", "n": len(task),
            "metrics": {k: _mean([r["metrics"][k] for r in task]) for k in ("json_valid", "all_fields_correct", "field_f1")},
            "errors": sum(1 for r in task if r["error"]),
            "probes": {f: _mean([r["metrics"]["exact_match"] for r in rows
                                 if r["model"] == m and r["family"] == f]) for f in PROBE_FAMILIES},
            "knowledge": {"form": _mean([r["metrics"]["all_fields_correct"] for r in task if not r["knowledge"]]),
                          "knowledge": _mean([r["metrics"]["all_fields_correct"] for r in task if r["knowledge"]])},
        }
    (sweep / "scores" / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))

    if judge is not None:
        calib = None
        if judge in ("reliable", "unreliable"):
            ok = judge == "reliable"
            calib = {"kappa": 0.72 if ok else 0.21, "accuracy": 0.86 if ok else 0.55, "position_consistency": 0.9,
                     "n": 40, "reliable": ok, "min_kappa": 0.6}
        pointwise = {m: {"mean": round(2.0 + 7.0 * summary["models"][m]["metrics"]["all_fields_correct"], 3),
                         "n": n_items, "missing": 0} for m in models}
        pairwise = [{"a": "r8-lr0.0002", "b": "base", "wins": 40, "losses": 12, "ties": 8,
                     "position_consistency": 0.85, "n": 60},
                    {"a": "r8-lr0.0002", "b": "fewshot", "wins": 30, "losses": 20, "ties": 10,
                     "position_consistency": 0.8, "n": 60}]
        js = {"judge_model": "fake-judge-7b", "rubric": "demo_extraction", "calibration": calib,
              "pointwise": pointwise, "pairwise": pairwise}
        (sweep / "scores" / "judge_summary.json").write_text(json.dumps(js, indent=2, sort_keys=True))
    return sweep
