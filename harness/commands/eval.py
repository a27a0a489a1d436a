"""harness eval RUN_DIR_OR_SWEEP_DIR [KEY=VALUE ...]: generate and score base, few-shot and adapters."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
import yaml

from harness.io import UserError, read_json

DESCRIPTION = """Score base (zero-shot), few-shot base and adapters on the task eval split and the forgetting probes.

A sweep dir (with sweep.json): every complete run is scored; output in <sweep>/scores/.
A run dir (with config.yaml): that run's adapter; output in <run>/scores/.
Settings come from the run's config.yaml (model, task, backend, eval); override with KEY=VALUE,
e.g. eval.max_eval=20 eval.few_shot_k=0 eval.probes=null backend.batch_size=8 task.name=other.
Re-running with unchanged inputs returns at once; generations are cached in the scores dir
(scores/generations.jsonl, the same cache the sweep uses).

A directory's config.yaml never enables remote code or passes server flags by itself: its
model.trust_remote_code, backend.engine_kwargs and backend.extra_args are ignored (with a note)
unless you give them on this command line."""

# keys of a run/sweep snapshot that run code or pass flags to a server: only the current user may set them
UNTRUSTED_KEYS = (("model", "trust_remote_code"), ("backend", "engine_kwargs"), ("backend", "extra_args"))


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """KEY=VALUE overrides (Hydra/OmegaConf dotlist syntax; a leading + or ++ is accepted) on a config dict."""
    from omegaconf import OmegaConf

    items = []
    for o in overrides:
        if "=" not in o:
            raise UserError(f"expected KEY=VALUE override, got {o!r}")
        items.append(o.lstrip("+"))
    try:
        merged = OmegaConf.merge(OmegaConf.create(cfg), OmegaConf.from_dotlist(items))
        return OmegaConf.to_container(merged, resolve=False)
    except Exception as exc:  # omegaconf's grammar errors
        raise UserError(f"override: {exc}".replace("\n", " ")) from None


def untrusted_snapshot(cfg: dict, overrides: list[str], source: Path) -> tuple[dict, list[str]]:
    """The snapshot config without what only the current user may turn on (remote code, engine/server flags),
    and one note per setting that the snapshot asked for and this command line did not give."""
    given = {o.lstrip("+").split("=", 1)[0] for o in overrides}
    cfg = json.loads(json.dumps(cfg))  # deep copy of plain data
    notes = []
    for section, key in UNTRUSTED_KEYS:
        sec = cfg.get(section)
        if not isinstance(sec, dict) or key not in sec:
            continue
        value = sec.pop(key)
        if f"{section}.{key}" not in given and value not in (None, False, [], {}, ""):
            notes.append(f"note: {source}/config.yaml asks for {section}.{key}={json.dumps(value)}; ignored "
                         f"(a run or sweep directory never enables it by itself: pass {section}.{key}=... yourself "
                         f"if you trust it)")
    return cfg, notes


def _read_cfg(run_dir: Path) -> dict:
    p = run_dir / "config.yaml"
    if not p.is_file():
        raise UserError(f"{p}: not found (a run dir has config.yaml; a sweep dir has sweep.json)")
    try:
        cfg = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{p}: invalid YAML ({exc})".replace("\n", " ")) from None
    if not isinstance(cfg, dict):
        raise UserError(f"{p}: expected a mapping of config sections")
    for k in ("model", "task"):
        if k not in cfg:
            raise UserError(f"{p}: {k}: missing")
    return cfg


def resolve_target(path: Path) -> tuple[dict, dict[str, Path], Path]:
    """(config as stored, {run_id: adapter_dir}, scores dir) for a sweep dir or a run dir."""
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


def load_target(path: Path, overrides: list[str], *, log=print) -> tuple[dict, dict[str, Path], Path]:
    """resolve_target + the trust policy + the user's overrides: what eval/export/gate run on a directory."""
    cfg, adapters, out_dir = resolve_target(Path(path))
    cfg, notes = untrusted_snapshot(cfg, overrides, Path(path))
    for n in notes:
        log(n)
    return apply_overrides(cfg, overrides), adapters, out_dir


def task_ref(cfg: dict) -> str:
    tcfg = cfg.get("task") or {}
    if isinstance(tcfg, str):
        return tcfg
    return str(tcfg.get("path") or tcfg.get("name"))


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
