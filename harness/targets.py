"""What a directory holds for evaluation: a sweep dir (its complete runs) or a run dir (its adapter), the config
to evaluate it with, and a released model for `gate --against`.

A directory may come from someone else (a CI artifact): its config never enables remote code or passes
engine/server flags by itself (untrusted_snapshot); only what the current user gives on the command line does.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


from harness.io import UserError, read_json

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


def _run_cfg(info) -> dict:
    """The run's config as load_run read it (harness.runs.read_run_config), checked for what evaluation needs."""
    p = info.run_dir / "config.yaml"
    if not p.is_file():
        raise UserError(f"{p}: not found (a run dir has config.yaml; a sweep dir has sweep.json)")
    for k in ("model", "task"):
        if k not in info.config:
            raise UserError(f"{p}: {k}: missing")
    return info.config


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
            cfg = cfg or _run_cfg(info)
        if skipped:
            print(f"note: skipping {len(skipped)} incomplete run(s): {', '.join(map(str, skipped))}", file=sys.stderr)
        if cfg is None:
            raise UserError(f"{path / 'sweep.json'}: no complete runs to evaluate")
        return cfg, adapters, path / "scores"
    if (path / "config.yaml").is_file():
        info = load_run(path)
        if not info.complete:
            raise UserError(f"{path}: run is not complete (status {info.status!r}); finish or resume training first")
        return _run_cfg(info), {info.run_id: info.adapter_dir}, path / "scores"
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
            chosen = v.get("chosen") or v.get("best")
            if isinstance(chosen, dict):
                chosen = chosen.get("run_id") or chosen.get("model")
        if not chosen:
            raise UserError(f"{verdict}: no chosen adapter recorded (run `harness report {released}` first)")
        for r in read_json(released / "sweep.json").get("runs", []):
            if r.get("run_id") == chosen:
                run_dir = Path(r["run_dir"])
                adir = (run_dir if run_dir.is_absolute() else released / run_dir) / "adapter"
                if not (adir / "adapter_model.safetensors").is_file():
                    raise UserError(f"{adir}: the released sweep's chosen adapter {chosen} is missing")
                return adir, f"adapter {chosen} chosen in sweep {released}"
        raise UserError(f"{released / 'sweep.json'}: the chosen adapter {chosen!r} is not among its runs")
    raise UserError(f"{released}: neither a sweep dir (sweep.json) nor an adapter dir (adapter_config.json + "
                    "adapter_model.safetensors)")
