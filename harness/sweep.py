"""The main job: train a grid of adapters (Hydra multirun), then evaluate, judge, report and gate.

Reads top to bottom:
  1. plan: compose and validate every grid point's config (before any training), find the sweep directory
  2. train: one Hydra multirun job per grid point (any launcher: basic, joblib, ray, slurm); each run id is a
     hash of its config and data, so finished runs are skipped and interrupted ones resume. With
     sweep.prune.enabled, losing points stop early (harness.pruning); with sweep.seeds > 1 the top-k
     configurations by VALIDATION loss are retrained with more seeds.
  3. evaluate: base, few-shot and every complete adapter (harness.evaluate.evaluate_models)
  4. judge (if configured; a judge that is down does not cost the report), report, gate
A failed grid point is recorded as failed; the others go on. Secrets given as overrides never reach Hydra's
files, the training jobs, or anything on disk: the jobs get the overrides without them (training needs none).
"""
from __future__ import annotations

import itertools
import os
import shlex
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import compose, conf_dir, redact_overrides, redact_text, to_dict
from harness.io import UserError, check_safe_name, read_json, stable_hash, write_json
from harness.models import check_prompt_format, model_display_name

POINT_FILE = "sweep_point.json"


@dataclass
class SweepPlan:
    name: str
    sweep_dir: Path
    cfg: dict  # the config without the swept values (for eval/judge/report settings; may hold secrets: memory only)
    grid: dict[str, list[str]]
    overrides: list[str]  # user overrides as given (may hold secrets: memory only, never written)

    @property
    def job_overrides(self) -> list[str]:
        """What the training jobs (and so Hydra's files) get: the overrides without the secret-bearing ones."""
        return [o for o, r in zip(self.overrides, redact_overrides(self.overrides)) if o == r]

    @property
    def public_overrides(self) -> list[str]:
        return redact_overrides(self.overrides)

    @property
    def settings(self) -> dict:
        return dict(self.cfg.get("sweep") or {})


def _is_sweep(override: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides([override])[0].is_sweep_override()
    except Exception:
        return False


def _key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def plan_sweep(overrides: list[str]) -> SweepPlan:
    """Split overrides into fixed ones and grid axes (the grid of conf/sweep/<name>.yaml too), then compose and
    validate every grid point's config, so a bad value fails here, before any training."""
    fixed = [o for o in overrides if not _is_sweep(o) and not o.startswith("hydra")]
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
        raise UserError(redact_text(f"config: {exc}".replace("\n", " "))) from None
    finally:
        GlobalHydra.instance().clear()
    for o in swept:
        key, _, value = o.partition("=")
        grid[key.lstrip("+")] = [s.strip() for s in value.split(",")]
    cfg = to_dict(compose(fixed))
    sweep_dir = Path(cfg.get("output_root") or "sweeps") / str(cfg.get("sweep_name") or "sweep")
    plan = SweepPlan(str(cfg.get("sweep_name")), sweep_dir.resolve(), cfg, grid, list(overrides))
    _check_settings(plan)
    for point in grid_points(grid):
        point_overrides = fixed + [f"{k}={v}" for k, v in point.items()]
        _validate(to_dict(compose(point_overrides)), point_overrides, point)
    return plan


def grid_points(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def _validate(cfg: dict, overrides: list[str], point: dict[str, str]) -> None:
    from harness.preflight import validate_cfg

    try:
        validate_cfg(cfg, overrides)
    except UserError as exc:
        where = " ".join(f"{k}={v}" for k, v in point.items())
        msg = f"{exc} (grid point {where})" if where and len(point) > 0 else str(exc)
        raise UserError(redact_text(msg), exit_code=exc.exit_code) from None


def _check_settings(plan: SweepPlan) -> None:
    # the name becomes a directory and a Hydra interpolation: `exp(1)` or `a[1]` would fail later, inside Hydra
    check_safe_name(plan.cfg.get("sweep_name"), "sweep_name")
    s = plan.settings
    for key, low in (("seeds", 1), ("seed_top_k", 1)):
        try:
            ok = int(s.get(key, low)) >= low
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise UserError(f"sweep.{key}: expected an integer >= {low}, got {s.get(key)!r}")
    if int(s.get("seeds", 1)) > 1 and "seed" in plan.grid:
        raise UserError("sweep.seeds: the grid already sweeps `seed`; use one or the other")
    if (s.get("prune") or {}).get("enabled"):
        from harness.pruning import pruner_for

        pruner_for(plan.cfg, plan.sweep_dir, "check")  # raises UserError on a bad setting


# ----------------------------------------------------------------------------- one grid point


def train_point(cfg_node: Any) -> dict:
    """Hydra job body: train one grid point into <sweep>/runs/<run-id>; never raises for a failed run."""
    from omegaconf import OmegaConf

    from harness.pruning import pruner_for
    from harness.runs import write_status
    from harness.train import config_identity, train

    cfg = OmegaConf.to_container(cfg_node, resolve=True)
    point = redact_overrides(_job_overrides())
    sweep_dir = Path(cfg["output_root"]).resolve() / str(cfg["sweep_name"])
    runs_root = sweep_dir / "runs"
    trial = config_identity(cfg)  # the pruner's key: the same hash as the run's config id (replay 0 left out)
    try:
        result = train(cfg, runs_root=runs_root, quiet=bool(os.environ.get("HARNESS_QUIET")),
                       should_stop=pruner_for(cfg, sweep_dir, trial))
        write_json(result.run_dir / POINT_FILE, {"overrides": point})
        return {"run_id": result.run_id, "status": result.status}
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # NaN, OOM, bad data: record and let the other points go on
        msg = redact_text(str(exc) or type(exc).__name__)
        run_dir = _failed_dir(runs_root, cfg, exc)
        write_status(run_dir, "failed", error=msg[:2000], run_id=run_dir.name)
        write_json(run_dir / POINT_FILE, {"overrides": point})
        (run_dir / "error.log").write_text(redact_text(traceback.format_exc()))
        print(f"grid point {' '.join(point)} failed: {msg}", file=sys.stderr)
        return {"run_id": run_dir.name, "status": "failed", "error": msg}


def _job_overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:
        return []


def _failed_dir(runs_root: Path, cfg: dict, exc: BaseException) -> Path:
    run_dir = getattr(exc, "run_dir", None)
    if run_dir is None:
        # the failure happened before the run id existed (e.g. bad data): name it by its config
        from harness.train import RUN_ID_KEYS

        run_dir = runs_root / f"failed-{stable_hash({k: cfg.get(k) for k in RUN_ID_KEYS}, 10)}"
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "config.yaml").is_file():  # the sweep reads the point's hyperparameters from it
        from harness.config import dump_yaml
        from harness.io import atomic_write_text

        atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg))
    return run_dir


def _launch_multirun(plan: SweepPlan, overrides: list[str]) -> None:
    """One Hydra multirun over `overrides` (which hold the grid). Hydra writes no per-job .hydra/ copies
    (hydra.output_subdir=null); its multirun.yaml gets only the secret-free job overrides."""
    import hydra

    from harness.launchers import enable_launchers

    enable_launchers()
    overrides = list(overrides) + [
        f"output_root={plan.sweep_dir.parent}",  # absolute: remote workers have their own cwd
        f"hydra.sweep.dir={plan.sweep_dir / 'hydra'}",
        "hydra.sweep.subdir=${hydra.job.num}",
        "hydra.output_subdir=null",
        "hydra.job.chdir=False",
        "hydra/job_logging=none",
        "hydra/hydra_logging=none",
    ]

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


def train_grid(plan: SweepPlan) -> None:
    """Every grid point (command-line grids win over conf/sweep/<name>.yaml for the same key)."""
    overrides = plan.job_overrides
    if not any(o.startswith("hydra.sweeper.params") for o in overrides):
        given = {_key(o) for o in overrides}
        overrides += [f"{k}={','.join(v)}" for k, v in plan.grid.items() if k not in given]
    _launch_multirun(plan, overrides)


def train_seeds(plan: SweepPlan, runs: list[dict]) -> list[dict]:
    """sweep.seeds=N: retrain the top sweep.seed_top_k configurations (by validation loss, never eval
    scores) with N-1 more seeds. Returns the configurations chosen (their first-seed runs)."""
    n, k = int(plan.settings.get("seeds", 1)), int(plan.settings.get("seed_top_k", 2))
    if n <= 1:
        return []
    base_seed = int(plan.cfg.get("seed", 0))
    first = [r for r in runs if r["status"] == "complete" and r["seed"] == base_seed and r["best_val_loss"] is not None]
    top = sorted(first, key=lambda r: (r["best_val_loss"], r["run_id"]))[:k]
    fixed = [o for o in plan.job_overrides if not _is_sweep(o) and _key(o) != "seed" and not o.startswith("hydra")]
    seeds = ",".join(str(base_seed + i) for i in range(1, n))
    for r in top:
        point = [o for o in r["overrides"] if _key(o) in plan.grid]
        _launch_multirun(plan, fixed + point + [f"seed={seeds}", "hydra.sweeper.params=null", "sweep.prune.enabled=false"])
    return top


# ----------------------------------------------------------------------------- collect


STANDARD_HPARAMS = ("lora.r", "lora.alpha", "train.lr", "train.epochs")


def collect_runs(plan: SweepPlan) -> list[dict]:
    """Every run directory under the sweep: status, seed, swept hyperparameters, config_id and name
    (COMMON contract 2)."""
    from harness.runs import display_name, load_run

    rows = []
    runs_root = plan.sweep_dir / "runs"
    for run_dir in sorted(p for p in runs_root.glob("*") if p.is_dir()) if runs_root.is_dir() else []:
        info = load_run(run_dir)
        point = read_json(run_dir / POINT_FILE)["overrides"] if (run_dir / POINT_FILE).is_file() else []
        hp = {}
        for key in list(plan.grid) + list(STANDARD_HPARAMS):
            val = _select(info.config, key)
            if key not in hp and val is not None:
                hp[key] = val
        status = info.status if info.status in ("complete", "failed", "pruned") else "incomplete"
        seed = info.config.get("seed", info.manifest.get("seed"))
        rows.append({"run_id": info.run_id, "run_dir": f"runs/{run_dir.name}", "status": status, "hparams": hp,
                     "overrides": redact_overrides(point), "error": redact_text(info.error), "seed": seed,
                     "config_id": stable_hash({k: v for k, v in hp.items() if k != "seed"}, 12),
                     "best_val_loss": info.metrics.get("best_val_loss"),
                     "pruned_at": info.metrics.get("final_step") if status == "pruned" else None})
    axes = [k for k in plan.grid if len({repr(r["hparams"].get(k)) for r in rows}) > 1]
    if len({r["seed"] for r in rows}) > 1 and "seed" not in axes:
        axes.append("seed")
    for r in rows:  # a single grid point is named by all its hyperparameters
        r["name"] = display_name({**r["hparams"], "seed": r["seed"]}, axes or list(STANDARD_HPARAMS))
    return rows


def _select(cfg: dict, dotted: str):
    cur: Any = cfg
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _task_facts(cfg: dict) -> tuple[str, float | None]:
    """(task name, the task's target for its primary metric) as recorded in sweep.json."""
    from harness.tasks import load_task, task_ref

    try:
        task = load_task(task_ref(cfg["task"]))
        return task.name, task.target
    except UserError:
        return str(cfg["task"].get("name")), None


def decision_settings(cfg: dict, task_target: float | None) -> dict:
    """The decision's settings for this sweep (conf `decision`, the task's target unless decision.target is
    set, eval.select_by): recorded once in sweep.json so report and gate judge with the same ones."""
    d = {k: v for k, v in dict(cfg.get("decision") or {}).items() if v is not None}
    if "target" in d:
        d["target_source"] = "decision.target"
    elif task_target is not None:
        d.update(target=task_target, target_source="task")
    d["select_by"] = str((cfg.get("eval") or {}).get("select_by") or "val_loss")
    return d


def write_sweep_json(plan: SweepPlan, runs: list[dict], seed_configs: list[dict] | None = None) -> dict:
    from harness.pruning import read_rungs

    s = plan.settings
    task_name, target = _task_facts(plan.cfg)
    doc = {
        "name": plan.name,
        "grid": plan.grid,
        "overrides": plan.public_overrides,
        "command": "harness sweep " + " ".join(shlex.quote(o) for o in plan.public_overrides),
        "task": task_name,
        "decision": decision_settings(plan.cfg, target),
        "model": model_display_name(plan.cfg["model"]),
        "seeds": {"n": int(s.get("seeds", 1)), "top_k": int(s.get("seed_top_k", 2)), "chosen_by": "best_val_loss",
                  "configs": [r["config_id"] for r in seed_configs or []]},
        "pruning": {**dict(s.get("prune") or {}), "rungs": read_rungs(plan.sweep_dir).get("rungs", {})},
        "runs": runs,
    }
    write_json(plan.sweep_dir / "sweep.json", doc)
    return doc


# ----------------------------------------------------------------------------- evaluate, judge


def evaluate_runs(sweep_dir: Path, cfg: dict, runs: list[dict], *, quiet: bool = False) -> dict:
    """Generate and score base, few-shot and every complete adapter (pruned and failed runs are not scored)."""
    from harness.evaluate import evaluate_models
    from harness.tasks import task_ref

    adapters = {r["run_id"]: sweep_dir / r["run_dir"] / "adapter" for r in runs if r["status"] == "complete"}
    return evaluate_models(sweep_dir / "scores", task_ref(cfg["task"]), cfg["model"],
                           cfg["backend"], adapters, eval_cfg=cfg.get("eval"), quiet=quiet)


def judge_runs(sweep_dir: Path, cfg: dict, runs: list[dict]) -> str | None:
    """Judge adapters against base and few-shot with the judge the config names (its own backend, never the
    eval backend in its place). Returns None, or the one-line reason the judge is unavailable (what it did
    judge is saved; judge_summary.json says "unavailable"/"partial"; a re-run fills in the rest)."""
    jcfg = cfg.get("judge") or {}
    if not jcfg.get("enabled"):
        return None
    from harness.judge import JudgeUnavailable, run_judge

    summary = read_json(sweep_dir / "scores" / "summary.json")
    scored = [r["run_id"] for r in runs if r["status"] == "complete" and r["run_id"] in summary.get("models", {})]
    pairs = [(key, b) for key in scored for b in ("base", "fewshot")]
    try:
        run_judge(sweep_dir / "scores", jcfg, pairs=pairs, model_cfg=cfg["model"])
    except JudgeUnavailable as exc:
        return redact_text(str(exc))
    return None


# ----------------------------------------------------------------------------- the recipe


def run_sweep(overrides: list[str], *, skip_gate: bool = False, quiet: bool = False) -> int:
    """0: done (gate passed or skipped); 1: the gate failed, or grid points did not finish (re-run resumes);
    2: the judge was unavailable (report and gate written without it; a re-run fills it in)."""
    from rich.console import Console

    con = Console(stderr=True, highlight=False)
    t0 = time.perf_counter()
    plan = plan_sweep(overrides)
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    n_points = len(grid_points(plan.grid))
    con.print(f"[bold]sweep {plan.name}[/]: {n_points} grid point(s) {plan.grid} -> {plan.sweep_dir}")

    for note in check_prompt_format(plan.cfg["model"]).notes:  # a template that cannot work stops here (exit 2)
        con.print(note)
    # 2. train every grid point (finished ones are skipped, interrupted ones resume), then more seeds
    train_grid(plan)
    seed_configs = train_seeds(plan, collect_runs(plan))
    runs = collect_runs(plan)
    write_sweep_json(plan, runs, seed_configs)
    by_status = {s: [r for r in runs if r["status"] == s] for s in ("complete", "pruned", "failed", "incomplete")}
    con.print("trained: " + ", ".join(f"{len(v)} {s}" for s, v in by_status.items() if v or s == "complete"))
    for r in by_status["failed"]:
        con.print(f"  [red]failed[/] {r['run_id']} {r['overrides']}: {r['error']}")
    for r in by_status["pruned"]:
        con.print(f"  pruned {r['name']} ({r['run_id']}) at step {r['pruned_at']}")
    base_seed = plan.cfg.get("seed", 0)
    never_ran = n_points - len({(r["config_id"], r["seed"]) for r in runs if "seed" in plan.grid or r["seed"] == base_seed})
    t_train = time.perf_counter()

    # 3-4. evaluate base, few-shot and adapters; judge if configured
    evaluate_runs(plan.sweep_dir, plan.cfg, runs, quiet=quiet)
    judge_down = judge_runs(plan.sweep_dir, plan.cfg, runs)
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
        from harness.report.gate_view import run_gate

        rc = run_gate(plan.sweep_dir, plan.cfg["gate"])
        word = {0: "PASSED", 1: "FAILED", 2: "UNUSABLE", 3: "INCONCLUSIVE"}.get(rc, f"exit {rc}")
        con.print(f"gate: {word} ({plan.sweep_dir / 'gate' / 'gate.md'})")
    con.print(f"sweep finished in {timings['total_s']:.0f}s (train {timings['train_s']:.0f}s, eval {timings['eval_s']:.0f}s)")
    # the last lines are plain, unwrapped one-liners (CI logs grep them)
    if by_status["incomplete"] or never_ran > 0:
        print(f"error: {len(by_status['incomplete']) + max(never_ran, 0)} grid point(s) did not finish (cancelled or "
              "killed); re-run the same command to resume them", file=sys.stderr)
        rc = max(rc, 1)
    if judge_down:
        print(f"error: judge unavailable: {judge_down}; report and gate written without the judge; "
              "re-run the same command once the judge answers", file=sys.stderr)
        rc = 2
    return rc
