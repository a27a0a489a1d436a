"""Replay (train.replay) on the demo: format bleed, probe pass rates per family and the task score, with and
without replay, trained for the same number of steps on this machine.

Both adapters train on the same data with the same settings except train.replay (the demo's winning point by
default: SmolLM2-135M, rank 16, lr 1e-3, 32 steps of 8, validation every 8), then ONE evaluation scores base and
both adapters on the task's eval split and the forgetting probes (harness.evaluate.evaluate_models, the path the
sweep uses), with drift (KL to base along the base's own probe answers) and the multiple-choice probes where that
evaluation measures them (harness.likelihood). Bleed is a probe answer in the task's output form that the probe did not ask for (scores.jsonl's
`bleed`; harness.bleed); the replay-vs-plain difference on the same probes gets an exact McNemar p-value.

  python bench/replay.py                        # the demo measurement (minutes: two SmolLM2 trainings + evaluation)
  python bench/replay.py --small                # the tiny model on tests/test_replay.py's JSON task (seconds)
  python bench/replay.py --replay 0.2 --steps 32 --probes default --out bench/results/replay-demo.txt
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_flags  # noqa: E402

DEMO = ["task=demo", "lora.r=16", "train.lr=1e-3", "train.eval_every=8"]
# tests/test_replay.py's headline setting: a JSON task the tiny model over-learns (it bleeds on most probes)
SMALL = ["model=tiny_random", "model.init_std=0.5", "lora.r=16", "train.lr=2e-2", "train.eval_every=10",
         "train.patience=0"]
FAMILIES = ("ifeval", "arithmetic", "general", "reading")


def _bleed(row: dict) -> float | None:
    """scores.jsonl's bleed (harness.bleed); before that column existed: the answer parses as a JSON object."""
    if "bleed" in row["metrics"]:
        return row["metrics"]["bleed"]
    from harness.metrics import extract_json

    return float(isinstance(extract_json(row["output"]).value, dict))


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def measure(work: Path, overrides: list[str], shares: tuple[float, float], steps: int, probes: str) -> dict:
    from harness.config import compose, to_dict
    from harness.evaluate import evaluate_models
    from harness.tasks import load_task
    from harness.train import train

    runs, info = {}, {}
    for share in shares:
        name = f"replay{share:g}"
        cfg = to_dict(compose([*overrides, "tracking.wandb=disabled", f"train.max_steps={steps}",
                               f"train.replay={share}"]))
        t0 = time.perf_counter()
        res = train(cfg, work / "runs" / name, quiet=True)
        info[name] = {"share": share, "train_s": round(time.perf_counter() - t0, 1), **{
            k: res.metrics.get(k) for k in ("best_val_loss", "best_step", "final_step", "replay_examples",
                                            "train_examples", "tokens_per_s")}}
        runs[name] = res.run_dir / "adapter"
    task = load_task(cfg["task"].get("path") or cfg["task"]["name"])
    t0 = time.perf_counter()
    evaluate_models(work / "scores", task, cfg["model"], dict(cfg["backend"]), runs,
                    eval_cfg={**cfg["eval"], "probes": probes, "few_shot_k": 0}, quiet=True)
    eval_s = round(time.perf_counter() - t0, 1)
    rows = [json.loads(x) for x in (work / "scores" / "scores.jsonl").read_text().splitlines()]
    # drift (KL to base along its own probe answers) and MC probes, where the evaluation measured them
    lik = json.loads((work / "scores" / "drift.json").read_text()) if (work / "scores" / "drift.json").is_file() else {}
    out: dict = {"eval_s": eval_s, "models": {}}
    for m in ["base", *runs]:
        mine = [r for r in rows if r["model"] == m]
        probe = [r for r in mine if r["split"] == "probe"]
        bleed = [_bleed(r) for r in probe]
        out["models"][m] = {
            **info.get(m, {}),
            "task": _mean([r["metrics"].get(task.primary_metric) for r in mine if r["split"] == "task"]),
            "probes": _mean([r["metrics"].get("pass") for r in probe]),
            "families": {f: _mean([r["metrics"].get("pass") for r in probe if r["family"] == f]) for f in FAMILIES},
            "bleed": sum(b or 0 for b in bleed), "bleed_n": sum(b is not None for b in bleed),
            "drift": {k: v for k, v in ((lik.get("drift") or {}).get(m) or {}).get("all", {}).items()},
            "mc": (((lik.get("mc") or {}).get(m) or {}).get("all") or {}).get("pass"),
            "_bleed_by_id": {r["sample_id"]: b for r, b in zip(probe, bleed)},
            "bleed_examples": [{"id": r["sample_id"], "output": r["output"][:80]} for r, b in zip(probe, bleed) if b][:3],
        }
    out["primary_metric"] = task.primary_metric
    return out


def report(res: dict, shares: tuple[float, float], steps: int, setting: str, probes: str) -> str:
    from harness.stats import mcnemar

    models = res["models"]
    plain, replay = (f"replay{s:g}" for s in shares)
    ids = sorted(set(models[plain]["_bleed_by_id"]) & set(models[replay]["_bleed_by_id"]))
    pairs = [(models[plain]["_bleed_by_id"][i], models[replay]["_bleed_by_id"][i]) for i in ids]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    test = mcnemar([a for a, _ in pairs], [b for _, b in pairs])
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [f"replay bench ({setting}): {steps} steps, train.replay {shares[0]:g} vs {shares[1]:g}, probes {probes}; "
             f"{os.cpu_count()} CPUs; flags {cpu_flags()}; load {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d %H:%M')}",
             f"{'model':<12} {'replay ex':>9} {'train_s':>8} {'val loss':>9} {res['primary_metric'][:12]:>12} "
             f"{'probes':>7} " + " ".join(f"{f[:10]:>10}" for f in FAMILIES) + f" {'bleed':>9} {'MC':>6}  drift KL [CI]"]
    for m, r in models.items():
        lines.append(f"{m:<12} {str(r.get('replay_examples', '-')):>9} {str(r.get('train_s', '-')):>8} "
                     f"{fmt(r.get('best_val_loss')):>9} {fmt(r['task']):>12} {fmt(r['probes']):>7} "
                     + " ".join(f"{fmt(r['families'][f]):>10}" for f in FAMILIES)
                     + f" {int(r['bleed']):>3}/{r['bleed_n']:<5} {fmt(r['mc']):>6}  "
                     + (f"{r['drift']['mean']:.4f} [{r['drift']['lo']:.4f}, {r['drift']['hi']:.4f}]" if r["drift"] else "-"))
    lines.append(f"bleed {plain} -> {replay}: {int(models[plain]['bleed'])} -> {int(models[replay]['bleed'])} of "
                 f"{len(pairs)} paired probes (McNemar {test['method']}: p = {test['p_value']:.3g}); evaluation "
                 f"{res['eval_s']} s")
    for m in (plain, replay):
        for ex in models[m]["bleed_examples"]:
            lines.append(f"  bleed example ({m}) {ex['id']}: {ex['output']!r}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from harness.cli import ArgumentParser

    ap = ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="tiny model on a JSON toy task instead of SmolLM2 on the demo")
    ap.add_argument("--replay", type=float, default=0.1, help="train.replay of the replay adapter (default 0.1)")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps of both adapters (demo 32, small 60)")
    ap.add_argument("--probes", default="fast", help="probe set name or .jsonl path (default fast: 160 probes)")
    ap.add_argument("--out", default=None, help="also write the table here (and the numbers as JSON beside it)")
    a = ap.parse_args(argv)
    steps = a.steps or (60 if a.small else 32)
    shares = (0.0, a.replay)
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        work = Path(tmp)
        if a.small:
            from tests.test_replay import write_json_task

            overrides = [*SMALL, f"task.path={write_json_task(work / 'task')}"]
            setting = "tiny_random, JSON toy task"
        else:
            overrides, setting = DEMO, "SmolLM2-135M, demo task, r16 lr 1e-3"
        res = measure(work, overrides, shares, steps, a.probes)
    text = report(res, shares, steps, setting, a.probes)
    print(text)
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        for m in res["models"].values():
            m.pop("_bleed_by_id")
        out.with_suffix(".json").write_text(json.dumps({"setting": setting, "steps": steps, "shares": shares,
                                                        "cpu_flags": cpu_flags(), **res}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
