"""The main job: train a grid of adapters (Hydra multirun), then evaluate, judge, report and gate.

Reads top to bottom:
  1. plan: compose the config, find the grid and the sweep directory
  2. train: one Hydra multirun job per grid point; each run id is a hash of its config and data,
     so finished runs are skipped and interrupted ones resume (Hydra cannot resume by itself)
  3. evaluate: base, few-shot and every complete adapter through one backend (one base-model load)
  4. judge (if configured), report, gate
A failed grid point is recorded as failed; the others go on.
"""
from __future__ import annotations

import os
import shlex
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import compose, conf_dir, to_dict
from harness.io import UserError, read_json, stable_hash, write_json


@dataclass
class SweepPlan:
    name: str
    sweep_dir: Path
    cfg: dict  # the config without the swept values (for eval/report settings)
    grid: dict[str, list[str]]
    overrides: list[str]  # user overrides, as given
    launcher_overrides: list[str]


def _is_sweep(override: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides([override])[0].is_sweep_override()
    except Exception:
        return False


def plan_sweep(overrides: list[str]) -> SweepPlan:
    """Split overrides into fixed ones and grid axes; read the grid from conf/sweep/<name>.yaml too."""
    fixed = [o for o in overrides if not _is_sweep(o) and not o.startswith("hydra")]
    launcher = [o for o in overrides if o.startswith("hydra")]
    swept = [o for o in overrides if _is_sweep(o)]
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            full = hydra_compose(config_name="config", overrides=fixed, return_hydra_config=True)
            grid = {str(k): [s.strip() for s in str(v).split(",")] for k, v in (full.hydra.sweeper.params or {}).items()}
    except Exception as exc:
        raise UserError(f"config: {exc}".replace("\n", " ")) from None
    finally:
        GlobalHydra.instance().clear()
    for o in swept:
        key, _, value = o.partition("=")
        grid[key.lstrip("+")] = [s.strip() for s in value.split(",")]
    cfg = to_dict(compose(fixed))
    sweep_dir = Path(cfg.get("output_root") or "sweeps") / str(cfg.get("sweep_name") or "sweep")
    return SweepPlan(str(cfg.get("sweep_name")), sweep_dir.resolve(), cfg, grid, list(overrides), launcher)


# ----------------------------------------------------------------------------- one grid point


def train_point(cfg_node: Any) -> dict:
    """Hydra job body: train one grid point into <sweep>/runs/<run-id>; never raises for a failed run."""
    from omegaconf import OmegaConf

    from harness.runs import write_status
    from harness.train import train

    cfg = OmegaConf.to_container(cfg_node, resolve=True)
    point = _job_overrides()
    runs_root = Path(cfg["output_root"]).resolve() / str(cfg["sweep_name"]) / "runs"
    try:
        result = train(cfg, runs_root=runs_root, quiet=bool(os.environ.get("HARNESS_QUIET")))
        write_json(result.run_dir / "sweep_point.json", {"overrides": point})
        return {"run_id": result.run_id, "status": result.status}
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # NaN, OOM, bad data: record and let the other points go on
        msg = str(exc) or type(exc).__name__
        run_dir = _failed_dir(runs_root, cfg, point, exc)
        write_status(run_dir, "failed", error=msg[:2000], run_id=run_dir.name)
        write_json(run_dir / "sweep_point.json", {"overrides": point})
        (run_dir / "error.log").write_text(traceback.format_exc())
        print(f"grid point {' '.join(point)} failed: {msg}", file=sys.stderr)
        return {"run_id": run_dir.name, "status": "failed", "error": msg}


def _job_overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:
        return []


def _failed_dir(runs_root: Path, cfg: dict, point: list[str], exc: BaseException) -> Path:
    run_dir = getattr(exc, "run_dir", None)
    if run_dir is None:
        # the failure happened before the run id existed (e.g. bad data): name it by its config
        run_dir = runs_root / f"failed-{stable_hash({k: cfg.get(k) for k in ('model', 'task', 'lora', 'train', 'quant', 'seed')}, 10)}"
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _launch_multirun(plan: SweepPlan) -> None:
    import hydra

    overrides = list(plan.overrides) + [
        f"hydra.sweep.dir={plan.sweep_dir / 'hydra'}",
        "hydra.sweep.subdir=${hydra.job.num}",
        "hydra.job.chdir=False",
        "hydra/job_logging=none",
        "hydra/hydra_logging=none",
    ]
    # command-line grids win over conf/sweep/<name>.yaml for the same key
    if not any(o.startswith("hydra.sweeper.params") for o in overrides):
        for key, values in plan.grid.items():
            if not any(o.split("=", 1)[0].lstrip("+") == key for o in plan.overrides):
                overrides.append(f"{key}={','.join(values)}")

    @hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
    def _job(cfg):
        return train_point(cfg)

    saved = sys.argv
    sys.argv = ["harness-sweep", "--multirun", *overrides]
    try:
        _job()
    finally:
        sys.argv = saved
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()


# ----------------------------------------------------------------------------- collect


def collect_runs(plan: SweepPlan) -> list[dict]:
    """Every run directory under the sweep, with its status and swept hyperparameters."""
    from harness.runs import load_run

    rows = []
    runs_root = plan.sweep_dir / "runs"
    for run_dir in sorted(p for p in runs_root.glob("*") if p.is_dir()) if runs_root.is_dir() else []:
        info = load_run(run_dir)
        point = read_json(run_dir / "sweep_point.json")["overrides"] if (run_dir / "sweep_point.json").is_file() else []
        hp = {}
        for key in list(plan.grid) + ["lora.r", "lora.alpha", "train.lr", "train.epochs"]:
            if key in hp:
                continue
            val = _select(info.config, key)
            if val is not None:
                hp[key] = val
        rows.append({"run_id": info.run_id, "run_dir": f"runs/{run_dir.name}", "status": info.status if info.status in ("complete", "failed") else "incomplete",
                     "hparams": hp, "overrides": point, "error": info.error})
    return rows


def _select(cfg: dict, dotted: str):
    cur: Any = cfg
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _task_name(cfg: dict) -> str:
    from harness.tasks import load_task

    try:
        return load_task(cfg["task"].get("path") or cfg["task"]["name"]).name
    except UserError:
        return str(cfg["task"].get("name"))


def write_sweep_json(plan: SweepPlan, runs: list[dict]) -> dict:
    doc = {
        "name": plan.name,
        "grid": plan.grid,
        "overrides": plan.overrides,
        "command": "harness sweep " + " ".join(shlex.quote(o) for o in plan.overrides),
        "task": _task_name(plan.cfg),
        "model": plan.cfg["model"].get("name"),
        "runs": runs,
    }
    write_json(plan.sweep_dir / "sweep.json", doc)
    return doc


# ----------------------------------------------------------------------------- evaluate


def evaluate_and_judge(sweep_dir: Path, cfg: dict, runs: list[dict], *, quiet: bool = False) -> dict:
    """Generate and score base, few-shot and every complete adapter through one backend (one base load);
    then judge with the same backend when the judge uses the sweep's own base model."""
    from harness.backends import make_backend
    from harness.backends.base import ServeSpec
    from harness.backends.cache import CachedBackend
    from harness.canary import check_adapters_applied
    from harness.evaluate import evaluate
    from harness.tasks import load_task

    adapters = {r["run_id"]: sweep_dir / r["run_dir"] / "adapter" for r in runs if r["status"] == "complete"}
    task = load_task(cfg["task"].get("path") or cfg["task"]["name"])
    ecfg = cfg.get("eval") or {}
    inner = make_backend(cfg["backend"], ServeSpec(cfg["model"], adapters))
    backend = CachedBackend(inner, sweep_dir / "scores" / "generations.jsonl")
    try:
        if ecfg.get("canary", True) and adapters:
            check_adapters_applied(inner, list(adapters))
        summary = evaluate(sweep_dir / "scores", task, backend, adapters,
                           few_shot_k=ecfg.get("few_shot_k"), few_shot_seed=ecfg.get("few_shot_seed"),
                           probes=ecfg.get("probes"), max_eval=ecfg.get("max_eval"), progress=not quiet)
        jcfg = cfg.get("judge") or {}
        if jcfg.get("enabled"):
            from harness.judge import run_judge

            same_model = not jcfg.get("model") and (jcfg.get("backend") or {}).get("kind", "hf") == cfg["backend"].get("kind")
            pairs = [(key, b) for key in adapters for b in ("base", "fewshot")]
            run_judge(sweep_dir / "scores", jcfg, pairs=pairs, model_cfg=cfg["model"], backend=backend if same_model else None)
        return summary
    finally:
        backend.close()


# ----------------------------------------------------------------------------- the recipe


def run_sweep(overrides: list[str], *, skip_gate: bool = False, quiet: bool = False) -> int:
    from rich.console import Console

    con = Console(stderr=True, highlight=False)
    t0 = time.perf_counter()
    plan = plan_sweep(overrides)
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    n_points = 1
    for v in plan.grid.values():
        n_points *= len(v)
    con.print(f"[bold]sweep {plan.name}[/]: {n_points} grid point(s) {plan.grid} -> {plan.sweep_dir}")

    # 2. train every grid point (finished ones are skipped, interrupted ones resume)
    _launch_multirun(plan)
    runs = collect_runs(plan)
    doc = write_sweep_json(plan, runs)
    done = [r for r in runs if r["status"] == "complete"]
    failed = [r for r in runs if r["status"] == "failed"]
    con.print(f"trained: {len(done)} complete, {len(failed)} failed")
    for r in failed:
        con.print(f"  [red]failed[/] {r['run_id']} {r['overrides']}: {r['error']}")
    t_train = time.perf_counter()

    # 3-4. evaluate base, few-shot and adapters together; judge if a rubric is configured
    evaluate_and_judge(plan.sweep_dir, plan.cfg, runs, quiet=quiet)
    t_eval = time.perf_counter()

    # 5. report and gate
    from harness.report import write_report

    report = write_report(plan.sweep_dir)["report_html"]
    timings = {"train_s": round(t_train - t0, 1), "eval_s": round(t_eval - t_train, 1),
               "total_s": round(time.perf_counter() - t0, 1)}
    write_json(plan.sweep_dir / "timings.json", timings)
    con.print(f"report: {report}")
    rc = 0
    if not skip_gate and plan.cfg.get("gate"):
        from harness.gate import run_gate

        rc = run_gate(plan.sweep_dir, plan.cfg["gate"])
        con.print(f"gate: {'PASSED' if rc == 0 else 'FAILED'} ({plan.sweep_dir / 'gate' / 'gate.md'})")
    con.print(f"sweep finished in {timings['total_s']:.0f}s (train {timings['train_s']:.0f}s, eval {timings['eval_s']:.0f}s)")
    return rc
