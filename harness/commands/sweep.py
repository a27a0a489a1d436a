"""harness sweep [sweep=NAME] [KEY=V1,V2 ...] [hydra/launcher=joblib]: the main job."""
from __future__ import annotations

USAGE = """usage: harness sweep [KEY=VALUE ...] [KEY=V1,V2,...] [--no-gate]

Trains one adapter per grid point (Hydra multirun), then generates and scores the base model,
the few-shot prompted base model and every adapter together, judges (if judge=...), writes
sweeps/<sweep_name>/report/report.html and runs the gate (conf/gate/default.yaml).

  harness sweep sweep=demo                            # the grid in conf/sweep/demo.yaml
  harness sweep sweep=none lora.r=8,16 train.lr=1e-4,3e-4 sweep_name=rank_lr
  harness sweep sweep=demo hydra/launcher=joblib      # grid points in parallel processes
  harness sweep sweep=demo hydra/launcher=ray hydra.launcher.address=HOST:6379   # a Ray cluster
  harness sweep sweep=demo hydra/launcher=slurm hydra.launcher.partition=gpu     # a SLURM job array
  harness sweep sweep=rank_lr sweep.prune.enabled=true   # stop clearly losing points early (successive halving)
  harness sweep sweep=rank_lr sweep.seeds=3 sweep.seed_top_k=2   # top-2 configs (val loss) x 3 seeds
Re-running the same command skips finished runs and resumes interrupted ones.
Exit: 0 done, 1 gate failed or grid points unfinished (re-run resumes), 2 bad input or judge unavailable."""


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0
    from harness.sweep import run_sweep

    skip_gate = "--no-gate" in argv
    overrides = [a for a in argv if a != "--no-gate"]
    bad = [a for a in overrides if "=" not in a]
    if bad:
        print(f"error: expected KEY=VALUE overrides, got {bad[0]!r}\n\n{USAGE}")
        return 2
    return run_sweep(overrides, skip_gate=skip_gate)
