"""harness eval RUN_DIR_OR_SWEEP_DIR [KEY=VALUE ...]: generate and score base, few-shot and adapters."""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from harness.io import UserError, read_json

DESCRIPTION = """Score base (zero-shot), few-shot base and adapters on the task eval split and the forgetting probes.

A sweep dir (with sweep.json): every complete run is scored; output in <sweep>/scores/.
A run dir (with config.yaml): that run's adapter; output in <run>/scores/.
Settings come from the run's config.yaml (model, task, backend, eval); override with KEY=VALUE,
e.g. eval.max_eval=20 eval.few_shot_k=0 eval.probes=null backend.batch_size=8 task.name=other.
Re-running with unchanged inputs returns at once; generations are cached on disk (eval.cache)."""


def _set(cfg: dict, dotted: str, value: Any) -> None:
    cur = cfg
    parts = dotted.split(".")
    for p in parts[:-1]:
        if not isinstance(cur.get(p), dict):
            cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = value


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    cfg = copy.deepcopy(cfg)
    for o in overrides:
        if "=" not in o:
            raise UserError(f"expected KEY=VALUE override, got {o!r}")
        k, v = o.split("=", 1)
        _set(cfg, k.lstrip("+"), yaml.safe_load(v) if v != "" else None)
    return cfg


def _read_cfg(run_dir: Path) -> dict:
    p = run_dir / "config.yaml"
    if not p.is_file():
        raise UserError(f"{p}: not found (a run dir has config.yaml; a sweep dir has sweep.json)")
    try:
        cfg = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{p}: invalid YAML ({exc})") from None
    for k in ("model", "task"):
        if k not in cfg:
            raise UserError(f"{p}: {k}: missing")
    return cfg


def resolve_target(path: Path) -> tuple[dict, dict[str, Path], Path]:
    """(config, {run_id: adapter_dir}, scores dir) for a sweep dir or a run dir."""
    from harness.runs import load_run

    path = Path(path)
    if (path / "sweep.json").is_file():
        sweep = read_json(path / "sweep.json")
        adapters: dict[str, Path] = {}
        cfg = None
        skipped = []
        for r in sweep.get("runs", []):
            run_dir = Path(r["run_dir"])
            run_dir = run_dir if run_dir.is_absolute() else path / run_dir
            if r.get("status") != "complete":
                skipped.append(r.get("run_id"))
                continue
            info = load_run(run_dir)
            if not info.complete:
                skipped.append(r.get("run_id"))
                continue
            adapters[str(r.get("run_id") or info.run_id)] = info.adapter_dir
            cfg = cfg or _read_cfg(run_dir)
        if skipped:
            print(f"note: skipping {len(skipped)} incomplete run(s): {', '.join(map(str, skipped))}", file=sys.stderr)
        if cfg is None:
            raise UserError(f"{path / 'sweep.json'}: no complete runs to evaluate")
        return cfg, adapters, path / "scores"
    if (path / "config.yaml").is_file():
        info = load_run(path)
        if not info.complete:
            raise UserError(f"{path}: run is not complete (status {info.status!r}); finish or resume training first")
        return _read_cfg(path), {info.run_id: info.adapter_dir}, path / "scores"
    raise UserError(f"{path}: neither a sweep dir (sweep.json) nor a run dir (config.yaml)")


def run_eval(cfg: dict, adapters: dict[str, Path], out_dir: Path, *, progress: bool = True, force: bool = False) -> dict:
    """Evaluate `adapters` under a run/sweep config dict; builds the backend only when needed."""
    from harness.backends.base import BASE, ServeSpec, adapter_identity, make_backend
    from harness.evaluate import evaluate
    from harness.models import cache_root, resolve_model
    from harness.tasks import load_task

    tcfg = cfg.get("task") or {}
    if isinstance(tcfg, str):
        tcfg = {"name": tcfg}
    task = load_task(tcfg.get("path") or tcfg.get("name"))
    ecfg = cfg.get("eval") or {}
    bcfg = dict(cfg.get("backend") or {"kind": "hf"})
    model_cfg = cfg["model"]

    spec = resolve_model(model_cfg)
    identities = {BASE: spec.identity}
    identities.update({k: adapter_identity(spec.identity, p) for k, p in adapters.items()})

    def factory():
        b = make_backend(bcfg, ServeSpec(model_cfg, dict(adapters)))
        if ecfg.get("cache", True):
            from harness.backends.cache import CachedBackend

            b = CachedBackend(b, cache_root() / "completions" / f"{bcfg.get('kind', 'hf')}.jsonl")
        return b

    holder: dict = {}

    def lazy():
        holder["b"] = factory()
        return holder["b"]

    try:
        return evaluate(out_dir, task, lazy, dict(adapters),
                        few_shot_k=ecfg.get("few_shot_k"), few_shot_seed=ecfg.get("few_shot_seed"),
                        probes=ecfg.get("probes", "default"), max_eval=ecfg.get("max_eval"),
                        progress=progress, identities=identities, force=force)
    finally:
        if "b" in holder:
            holder["b"].close()


def format_summary(summary: dict) -> str:
    pm = summary["primary_metric"]
    lines = [f"task {summary['task']} v{summary['task_version']}  primary: {pm}  "
             f"(eval n={summary.get('n_eval')}, probes n={summary.get('n_probes')})",
             f"{'model':<28} {pm:>14} {'form':>6} {'knowl':>6} {'probes':>7}"]

    def f(x):
        return "   -  " if x is None else f"{x:6.3f}"

    for name, m in summary["models"].items():
        lines.append(f"{name:<28} {f(m['metrics'].get(pm)):>14} {f(m['knowledge']['form'])} "
                     f"{f(m['knowledge']['knowledge'])} {f(m['probes'].get('all')):>7}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="harness eval", description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", help="a sweep dir (sweep.json) or a run dir (config.yaml)")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides (eval.max_eval=20, backend.batch_size=8)")
    ap.add_argument("--force", action="store_true", help="re-score even when the inputs are unchanged")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args(argv)

    cfg, adapters, out_dir = resolve_target(Path(args.target))
    cfg = apply_overrides(cfg, args.overrides)
    summary = run_eval(cfg, adapters, out_dir, progress=not args.no_progress, force=args.force)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(format_summary(summary))
        state = "up to date (skipped)" if summary.get("skipped") else "written"
        print(f"{out_dir / 'scores.jsonl'}, {out_dir / 'summary.json'}: {state}")
    return 0
