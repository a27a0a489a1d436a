"""Resumable training checkpoints: checkpoints/step-N written in one rename, older ones dropped afterwards,
so a SIGKILL at any moment leaves at least one complete copy. Each records the run id and config id it
belongs to; a run directory holding another config's checkpoint is refused, never silently resumed.

A checkpoint is taken only between optimizer steps and holds everything the rest of the curve depends on
(trainable weights, best weights, optimizer, scheduler, the torch/CUDA/python/numpy RNG states, the loop's
state), so a resumed run is bitwise the uninterrupted one. Ctrl-C during a step is held until the step
ends (StepBoundary); a second Ctrl-C stops at once and the unfinished step is discarded."""
from __future__ import annotations

import json
import random
import shutil
import signal
import sys
import threading
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
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), **rng_states()},
                   tmp / "optim.pt")
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
    restore_rng(st)
    return meta["state"], best


def rng_states() -> dict:
    """Every RNG a training step may draw from (LoRA dropout uses torch's; python's and numpy's for libraries)."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    out = {"torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
           "numpy_rng": [kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, gauss]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda_rng"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(st: dict) -> None:
    """Sets the RNG states rng_states() saved (a checkpoint from before python/numpy were saved has torch's only)."""
    import numpy as np
    import torch

    torch.set_rng_state(st["torch_rng"])
    if "python_rng" in st:
        version, internal, gauss = st["python_rng"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy_rng" in st:
        kind, keys, pos, has_gauss, gauss = st["numpy_rng"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda_rng" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda_rng"])


class StepBoundary:
    """Holds Ctrl-C until the current optimizer step is over, so the interrupt lands where a checkpoint can
    be exact: the first SIGINT sets `requested` (check() raises KeyboardInterrupt at the next boundary), a
    second raises at once. Installed only in the main thread and over Python's default handler."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self) -> "StepBoundary":
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _on_sigint(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("interrupt: finishing this training step, then saving a checkpoint (Ctrl-C again to stop now and "
              "lose this step)", file=sys.stderr, flush=True)

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


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


