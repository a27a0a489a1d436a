"""Early stopping of losing grid points: wall time of a 12-point tiny-model sweep with and without successive
halving (sweep.prune.enabled), run one after the other on this machine, and whether both choose the same winner.

Both sweeps train the same grid (lora.r x train.lr, 12 points, sequential launcher) on the same toy task, then
evaluate and report; the pruned one stops a point at a rung (steps min_step * eta^k) when its validation loss is
clearly worse than the best 1/eta recorded there. Printed: train / eval / total seconds, points pruned, steps
trained, and the winner each report chose (verdict.json "chosen", picked on validation loss); the last line is
the ratio of total wall times. Timings on a shared machine are noisy: the ratio from one run is what counts.

  python bench/early_stopping.py [--steps 12] [--out bench/results/early_stopping.txt]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_flags  # noqa: E402

GRID = ["lora.r=4,8,16", "train.lr=1e-3,3e-3,1e-4,3e-4"]  # 12 points, lr varies fastest, not sorted


def _sweep(root: Path, toy: Path, steps: int, prune: bool, eta: int) -> dict:
    args = [sys.executable, "-m", "harness.cli", "sweep", "model=tiny_random", "tracking.wandb=disabled", "sweep=none",
            f"task.path={toy}", f"output_root={root}", "sweep_name=bench", "train.batch_size=8",
            f"train.max_steps={steps}", "train.eval_every=2", "train.patience=0", "train.precision=fp32",
            "eval.probes=null", "gate=none", *GRID, f"sweep.prune.enabled={str(prune).lower()}",
            f"sweep.prune.eta={eta}", "sweep.prune.min_peers=2"]
    t0 = time.perf_counter()
    res = subprocess.run(args, env={**os.environ, "HARNESS_QUIET": "1"}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"sweep failed ({res.returncode}):\n{res.stderr[-3000:]}")
    sweep = root / "bench"
    doc = json.loads((sweep / "sweep.json").read_text())
    verdict = json.loads((sweep / "report" / "verdict.json").read_text())
    steps_trained = sum(len(json.loads((sweep / r["run_dir"] / "curves.json").read_text())["train"]) for r in doc["runs"])
    best = min((r for r in doc["runs"] if r["status"] == "complete"), key=lambda r: r["best_val_loss"])
    return {"wall_s": wall, **json.loads((sweep / "timings.json").read_text()), "runs": len(doc["runs"]),
            "pruned": sum(r["status"] == "pruned" for r in doc["runs"]), "steps": steps_trained,
            "chosen": verdict.get("chosen_name") or verdict.get("chosen"), "best_val": best["name"],
            "best_val_loss": best["best_val_loss"]}


def main(argv: list[str] | None = None) -> int:
    from harness.cli import ArgumentParser
    from tests.toy_task import write_toy_task

    ap = ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=12, help="optimizer steps per grid point (validation every 2)")
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "early_stopping.txt"))
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-es-") as tmp:
        toy = write_toy_task(Path(tmp) / "toy", n_train=48, n_val=16, n_eval=12)
        full = _sweep(Path(tmp) / "full", toy, a.steps, False, a.eta)
        pruned = _sweep(Path(tmp) / "pruned", toy, a.steps, True, a.eta)
    lines = [f"early stopping bench: 12-point tiny_random sweep ({' '.join(GRID)}), {a.steps} steps/point, "
             f"val every 2, eta={a.eta}; {os.cpu_count()} CPUs; flags {cpu_flags()}; "
             f"{time.strftime('%Y-%m-%d %H:%M')}",
             f"{'variant':<8} {'train_s':>8} {'eval_s':>7} {'total_s':>8} {'runs':>5} {'pruned':>6} {'steps':>6}  "
             f"winner (report)  best val (complete runs)"]
    for name, r in (("full", full), ("pruned", pruned)):
        lines.append(f"{name:<8} {r['train_s']:>8.1f} {r['eval_s']:>7.1f} {r['total_s']:>8.1f} {r['runs']:>5} "
                     f"{r['pruned']:>6} {r['steps']:>6}  {str(r['chosen']):<16} {r['best_val']} ({r['best_val_loss']:.4f})")
    same = full["chosen"] == pruned["chosen"] and full["best_val"] == pruned["best_val"]
    lines.append(f"same winner: {'yes' if same else 'NO'}")
    lines.append(f"pruned/full total wall time: {pruned['total_s'] / full['total_s']:.2f} "
                 f"(train {pruned['train_s'] / full['train_s']:.2f}; saved {full['total_s'] - pruned['total_s']:.0f} s)")
    text = "\n".join(lines)
    print(text)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
