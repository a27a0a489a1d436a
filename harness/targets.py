"""What a directory holds for evaluation: a sweep dir (its complete runs) or a run dir (its adapter), the config
to evaluate it with, and a released model for `gate --against`.

THE trust rule (issues #12, #22), here and nowhere else: a run or sweep directory may come from someone else (a
CI artifact), so what it stores is data (which model, task, items; its scores), never a choice of what runs.
Everything that starts a process, binds an address, chooses a URL or names a credential - the whole backend
(kind, server python/binary, mode, host/port, base_url, api_key_env/api_key, engine and server flags), any judge
section, and model.trust_remote_code - comes from the current user's config only (conf/ defaults + this command
line): trusted_config() for eval and gate --against, trusted_model_cfg() for export and the judge's model.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


from harness.io import UserError, read_json

# a directory's run config sections that are never read: the user's own config supplies them (trusted_config)
USER_ONLY_SECTIONS = ("backend", "judge")


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0].strip()


def _is_backend_override(override: str) -> bool:
    k = _key(override)
    return k == "backend" or k.startswith("backend.")


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


def own_backend(overrides: list[str]) -> dict:
    """The backend this user configured: conf/config.yaml's default backend, or the one `backend=NAME` (or
    `backend.kind=NAME`) names on the command line, with the command line's other backend.* settings."""
    from harness.config import compose, conf_dir, to_dict

    mine = []
    for o in overrides:
        if not _is_backend_override(o):
            continue
        if "=" not in o:
            raise UserError(f"expected KEY=VALUE override, got {o!r}")
        k, v = o.split("=", 1)
        if _key(o) == "backend.kind" and (conf_dir() / "backend" / f"{v}.yaml").is_file():
            o = f"backend={v}"  # a kind's own defaults, not another kind's keys
        mine.append(o)
    return to_dict(compose(mine).backend)


def trusted_model_cfg(model: dict, overrides: list[str], source: Path | str) -> tuple[dict, list[str]]:
    """A model config read from a directory, without remote code unless this command line turns it on; and the
    note saying so when the directory asked for it."""
    model = dict(model)
    given = {_key(o) for o in overrides}
    notes = []
    value = model.pop("trust_remote_code", None)
    if "model.trust_remote_code" not in given and value not in (None, False, "", "false", "False"):
        notes.append(f"note: {source} asks for model.trust_remote_code={json.dumps(value)}; ignored (a run or "
                     "sweep directory never enables it by itself: pass model.trust_remote_code=... yourself if "
                     "you trust it)")
    if "model.trust_remote_code" not in given:
        model["trust_remote_code"] = False  # said outright: nothing downstream may read a default from elsewhere
    return model, notes


def trusted_config(cfg: dict, overrides: list[str], source: Path | str) -> tuple[dict, list[str]]:
    """A directory's config as the trust rule (module doc) allows it: its model (no remote code) and task and eval
    settings; the user's own backend in place of the directory's, no judge section. Notes: one line per thing
    the directory asked for and did not get (setting names only: its values may be secrets)."""
    cfg = json.loads(json.dumps(cfg, default=str))  # deep copy of plain data
    notes = []
    if isinstance(cfg.get("model"), dict):
        cfg["model"], notes = trusted_model_cfg(cfg["model"], overrides, source)
    cfg.pop("judge", None)
    theirs = cfg.pop("backend", None)
    mine = own_backend(overrides)
    if theirs is not None and theirs != mine:
        differ = sorted(str(k) for k in set(theirs if isinstance(theirs, dict) else {"backend": 0}) | set(mine)
                        if not isinstance(theirs, dict) or theirs.get(k) != mine.get(k))
        notes.append(f"note: {source}: its backend settings ({', '.join(differ)}) are not used: a run or sweep "
                     f"directory never chooses the program, address, URL or key that generates; its scores are "
                     f"read as they are, and anything generated uses your backend {mine.get('kind')} "
                     "(conf/ + backend.* on this command line)")
    cfg["backend"] = mine
    return cfg, notes


def _run_cfg(info) -> dict:
    """The run's config as load_run read it (harness.runs.read_run_config), checked for what evaluation needs."""
    p = info.run_dir / "config.yaml"
    if not p.is_file():
        raise UserError(f"{p}: not found (a run dir has config.yaml; a sweep dir has sweep.json)")
    for k in ("model", "task"):
        if k not in info.config:
            raise UserError(f"{p}: {k}: missing")
    return info.config


def sweep_runs(sweep_dir: Path) -> list[tuple[dict, Path]]:
    """(entry, run dir) for each run recorded in SWEEP/sweep.json. A sweep.json that is not a sweep record, an
    entry without run_dir, or a run_dir that leads out of the sweep dir (`../x`, an absolute path elsewhere, a
    symlink out) is a UserError naming the file: a directory from someone else never makes us read elsewhere."""
    sweep_dir = Path(sweep_dir)
    p = sweep_dir / "sweep.json"
    doc = read_json(p)
    if not isinstance(doc, dict):
        raise UserError(f"{p}:1: expected a JSON object (a sweep record), got {type(doc).__name__}")
    runs = doc.get("runs", [])
    if not isinstance(runs, list):
        raise UserError(f"{p}: runs: expected a list, got {type(runs).__name__}")
    root = sweep_dir.resolve()
    out = []
    for i, r in enumerate(runs):
        if not isinstance(r, dict):
            raise UserError(f"{p}: runs[{i}]: expected an object, got {type(r).__name__}")
        rd = r.get("run_dir")
        if not isinstance(rd, str) or not rd.strip():
            raise UserError(f"{p}: runs[{i}].run_dir: missing (expected a path such as runs/<run-id>)")
        run_dir = sweep_dir / rd
        try:
            run_dir.resolve().relative_to(root)
        except (ValueError, OSError):
            raise UserError(f"{p}: runs[{i}].run_dir: {rd[:120]!r} is outside the sweep directory") from None
        out.append((r, run_dir))
    return out


def resolve_target(path: Path) -> tuple[dict, dict[str, Path], Path]:
    """(config as stored, {run_id: adapter_dir}, scores dir) for a sweep dir or a run dir."""
    cfg, _, adapters, out_dir = _resolve(Path(path))
    return cfg, adapters, out_dir


def _resolve(path: Path) -> tuple[dict, Path, dict[str, Path], Path]:
    """resolve_target + the config file the config came from."""
    from harness.runs import load_run

    if (path / "sweep.json").is_file():
        adapters: dict[str, Path] = {}
        cfg = cfg_path = None
        skipped = []
        for r, run_dir in sweep_runs(path):
            if r.get("status") != "complete":
                skipped.append(r.get("run_id"))
                continue
            info = load_run(run_dir)
            if not info.complete:
                skipped.append(r.get("run_id"))
                continue
            adapters[str(r.get("run_id") or info.run_id)] = info.adapter_dir
            if cfg is None:
                cfg, cfg_path = _run_cfg(info), run_dir / "config.yaml"
        if skipped:
            print(f"note: skipping {len(skipped)} incomplete run(s): {', '.join(map(str, skipped))}", file=sys.stderr)
        if cfg is None:
            raise UserError(f"{path / 'sweep.json'}: no complete runs to evaluate")
        return cfg, cfg_path, adapters, path / "scores"
    if (path / "config.yaml").is_file():
        info = load_run(path)
        if not info.complete:
            raise UserError(f"{path}: run is not complete (status {info.status!r}); finish or resume training first")
        return _run_cfg(info), path / "config.yaml", {info.run_id: info.adapter_dir}, path / "scores"
    raise UserError(f"{path}: neither a sweep dir (sweep.json) nor a run dir (config.yaml)")


def load_target(path: Path, overrides: list[str], *, log=print) -> tuple[dict, dict[str, Path], Path]:
    """resolve_target + the trust rule + the user's overrides: what eval and gate --against run on a directory."""
    cfg, cfg_path, adapters, out_dir = _resolve(Path(path))
    cfg, notes = trusted_config(cfg, overrides, cfg_path)
    for n in notes:
        log(n)
    return apply_overrides(cfg, [o for o in overrides if not _is_backend_override(o)]), adapters, out_dir


def task_ref(cfg: dict) -> str:
    from harness.tasks import task_ref as configured_task

    return configured_task(cfg.get("task") or {})


def released_adapter(released: Path) -> tuple[Path, str]:
    """(adapter dir, how it was found) for a previous sweep dir (its chosen adapter) or an exported adapter dir."""
    released = Path(released)
    if (released / "adapter_config.json").is_file() and (released / "adapter_model.safetensors").is_file():
        return released, f"adapter dir {released}"
    if (released / "sweep.json").is_file():
        chosen = None
        verdict = released / "report" / "verdict.json"
        if verdict.is_file():
            v = read_json(verdict)
            if not isinstance(v, dict):
                raise UserError(f"{verdict}:1: expected a JSON object, got {type(v).__name__}")
            chosen = v.get("chosen") or v.get("best")
            if isinstance(chosen, dict):
                chosen = chosen.get("run_id") or chosen.get("model")
        if not chosen:
            raise UserError(f"{verdict}: no chosen adapter recorded (run `harness report {released}` first)")
        for r, run_dir in sweep_runs(released):
            if r.get("run_id") == chosen:
                adir = run_dir / "adapter"
                if not (adir / "adapter_model.safetensors").is_file():
                    raise UserError(f"{adir}: the released sweep's chosen adapter {chosen} is missing")
                return adir, f"adapter {chosen} chosen in sweep {released}"
        raise UserError(f"{released / 'sweep.json'}: the chosen adapter {chosen!r} is not among its runs")
    raise UserError(f"{released}: neither a sweep dir (sweep.json) nor an adapter dir (adapter_config.json + "
                    "adapter_model.safetensors)")
