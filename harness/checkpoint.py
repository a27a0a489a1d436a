"""Resumable training checkpoints: checkpoints/step-N written in one rename, older ones dropped afterwards,
so a SIGKILL at any moment leaves at least one complete copy. Each records the run id and config id it
belongs to; a run directory holding another config's checkpoint is refused, never silently resumed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.config import redact
from harness.io import UserError, atomic_dir


def trainable_state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def load_trainable_state(model, state: dict) -> None:
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in state.items():
            params[k].copy_(v)


def save_checkpoint(ckpt_root: Path, ident: dict, state: dict, model, optimizer, scheduler, best) -> Path:
    """Write checkpoints/step-N in one rename, then drop older ones: a SIGKILL anywhere leaves a valid copy."""
    import torch
    from safetensors.torch import save_file

    final = ckpt_root / f"step-{state['step']:08d}"
    with atomic_dir(final) as tmp:
        save_file({k: v.contiguous() for k, v in trainable_state(model).items()}, str(tmp / "trainable.safetensors"))
        if best is not None:
            save_file({k: v.contiguous() for k, v in best.items()}, str(tmp / "best.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state()}, tmp / "optim.pt")
        (tmp / "state.json").write_text(json.dumps({**ident, "state": state}, indent=1))
    drop_older(ckpt_root, final)
    return final


def drop_older(ckpt_root: Path, keep: Path) -> None:
    """Remove every checkpoint but `keep` (only once `keep` is complete on disk)."""
    for old in ckpt_root.iterdir():
        if old != keep and old.name.startswith("step-"):
            shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(ckpt_root: Path) -> tuple[Path, dict] | None:
    """The newest complete checkpoint and its state.json (None when there is none)."""
    if not ckpt_root.is_dir():
        return None
    for d in sorted((p for p in ckpt_root.iterdir() if p.name.startswith("step-")), reverse=True):
        try:
            meta = json.loads((d / "state.json").read_text())
        except (OSError, ValueError):
            continue
        if (d / "trainable.safetensors").is_file() and (d / "optim.pt").is_file():
            return d, meta
    return None


def load_checkpoint(ckpt: Path, meta: dict, model, optimizer, scheduler) -> tuple[dict, dict | None]:
    """Restores weights, optimizer, scheduler and RNG in place; returns (the saved state dict, best weights or None)."""
    import torch
    from safetensors.torch import load_file

    load_trainable_state(model, load_file(str(ckpt / "trainable.safetensors")))
    best = load_file(str(ckpt / "best.safetensors")) if (ckpt / "best.safetensors").is_file() else None
    st = torch.load(ckpt / "optim.pt", weights_only=True)
    optimizer.load_state_dict(st["optimizer"])
    scheduler.load_state_dict(st["scheduler"])
    torch.set_rng_state(st["torch_rng"])
    return meta["state"], best


def _config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def refuse_foreign_checkpoint(run_dir: Path, run_id: str, cfg: dict, keys: tuple[str, ...]) -> None:
    """A checkpoint of another config in this run_dir must never be resumed silently (nor thrown away)."""
    found = latest_checkpoint(run_dir / "checkpoints")
    if found is None or found[1].get("run_id") == run_id:
        return
    from harness.runs import read_run_config

    try:
        old = read_run_config(run_dir)
    except UserError:  # an unreadable old config still must not be resumed: say so without its settings
        old = {}
    new = redact(cfg)
    diff = _config_diff({k: old.get(k) for k in keys}, {k: new.get(k) for k in keys})
    what = "; ".join(diff[:6]) if diff else "same settings, but the data or the base model changed"
    raise UserError(f"{run_dir}: holds a checkpoint of run {found[1].get('run_id')} with a different config ({what}); "
                    f"resuming it would mix two runs. Use another run_dir, or delete {run_dir / 'checkpoints'} to start fresh")


