"""harness eval RUN_DIR_OR_SWEEP_DIR [KEY=VALUE ...]: generate and score base, few-shot and adapters."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.targets import load_target, task_ref

DESCRIPTION = """Score base (zero-shot), few-shot base and adapters on the task eval split and the forgetting probes.

A sweep dir (with sweep.json): every complete run is scored; output in <sweep>/scores/.
A run dir (with config.yaml): that run's adapter; output in <run>/scores/.
Model, task and eval settings come from the run's config.yaml; override with KEY=VALUE,
e.g. eval.max_eval=20 eval.few_shot_k=0 eval.probes=null task.name=other.
Re-running with unchanged inputs returns at once; generations are cached in the scores dir
(scores/generations.jsonl, the same cache the sweep uses).

The backend is always yours (conf/ defaults + backend=NAME / backend.KEY=VALUE here), never the
directory's: a run or sweep dir may come from someone else, so its backend (program, address, URL,
key) and its model.trust_remote_code are ignored, with a note (harness/targets.py)."""


def run_eval(cfg: dict, adapters: dict[str, Path], out_dir: Path, *, progress: bool = True, force: bool = False) -> dict:
    """Evaluate `adapters` under a run/sweep config dict through the one evaluation path."""
    from harness.evaluate import evaluate_models

    return evaluate_models(out_dir, task_ref(cfg), cfg["model"], dict(cfg.get("backend") or {"kind": "hf"}),
                           dict(adapters), eval_cfg=cfg.get("eval") or {}, force=force, quiet=not progress)


def format_summary(summary: dict) -> str:
    pm = summary["primary_metric"]
    lines = [f"task {summary['task']} v{summary['task_version']}  primary: {pm}  "
             f"(eval n={summary.get('n_eval')}, probes n={summary.get('n_probes')})",
             f"{'model':<28} {pm:>14} {'form':>6} {'knowl':>6} {'probes':>7} {'errors':>6}"]

    def f(x):
        return "   -  " if x is None else f"{x:6.3f}"

    for name, m in summary["models"].items():
        lines.append(f"{name:<28} {f(m['metrics'].get(pm)):>14} {f(m['knowledge']['form'])} "
                     f"{f(m['knowledge']['knowledge'])} {f(m['probes'].get('all')):>7} {m.get('errors', 0):>6}")
    for run_id, reason in (summary.get("not_learned_reasons") or {}).items():
        lines.append(f"{run_id:<28} did not learn: {reason}")
    if summary.get("errors"):
        lines.append(f"{summary['errors']} request(s) failed in the backend: counted as errors, not scored; "
                     "re-run to retry them")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    from harness.cli import ArgumentParser

    ap = ArgumentParser(prog="harness eval", description=DESCRIPTION,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", help="a sweep dir (sweep.json) or a run dir (config.yaml)")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides (eval.max_eval=20, backend.batch_size=8)")
    ap.add_argument("--force", action="store_true", help="re-score even when the inputs are unchanged")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_intermixed_args(argv)  # KEY=VALUE overrides may come after the flags too

    cfg, adapters, out_dir = load_target(Path(args.target), args.overrides,
                                         log=lambda m: print(m, file=sys.stderr))
    summary = run_eval(cfg, adapters, out_dir, progress=not args.no_progress, force=args.force)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(format_summary(summary))
        state = "up to date (skipped)" if summary.get("skipped") else "written"
        print(f"{out_dir / 'scores.jsonl'}, {out_dir / 'summary.json'}: {state}")
    return 1 if summary.get("errors") else 0
