"""Early stopping of losing grid points: successive halving (ASHA-style rungs) on validation loss.

Rungs sit at steps min_step * eta**k. The first validation at or after a rung records the trial's loss
there; a trial stops ("pruned") when its loss is clearly worse than the best 1/eta of the losses recorded
at that rung by the other trials (asynchronous: it is compared with whoever reached the rung before it).
The rungs live in one small JSON file under the sweep dir, read and written under an flock, so grid points
running in parallel (joblib, Ray, SLURM on a shared filesystem) see each other. Each decision is recorded
too: a trial resumed after a crash gets the decision it got before, so a re-run prunes the same points.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.io import UserError, file_lock, read_json, write_json

PRUNING_FILE = "pruning.json"


@dataclass
class RungPruner:
    """`should_stop(step, val_loss)` for harness.train.train (COMMON contract 5), one per grid point."""

    path: Path          # <sweep>/pruning.json, shared by every grid point of the sweep
    trial: str          # this grid point's key (stable across re-runs)
    min_step: int       # the first rung (a validation step every trial reaches)
    eta: int = 3        # keep the best 1/eta at each rung
    min_peers: int = 2  # other trials needed at a rung before anyone is stopped there
    margin: float = 0.0  # "clearly worse": loss > cutoff * (1 + margin)

    def __post_init__(self) -> None:
        if self.eta < 2:
            raise UserError(f"sweep.prune.eta: must be >= 2, got {self.eta}")
        if self.min_step < 1:
            raise UserError(f"sweep.prune.min_step: must be >= 1, got {self.min_step}")
        if self.min_peers < 1:
            raise UserError(f"sweep.prune.min_peers: must be >= 1, got {self.min_peers}")
        self.path = Path(self.path)

    def rung(self, step: int) -> int | None:
        """Index of the highest rung at or below `step` (None before the first rung)."""
        if step < self.min_step:
            return None
        k = int(math.floor(math.log(step / self.min_step, self.eta) + 1e-9))
        return max(k, 0)

    def __call__(self, step: int, val_loss: float) -> bool:
        k = self.rung(step)
        if k is None or not math.isfinite(val_loss):
            return False
        key = str(k)
        with file_lock(self.path):
            state = read_json(self.path) if self.path.is_file() else {"rungs": {}, "decisions": {}}
            decided = state["decisions"].get(self.trial, {}).get(key)
            if decided is not None:
                return decided == "stop"
            rung = state["rungs"].setdefault(key, {"step": step, "losses": {}})
            peers = [v for t, v in rung["losses"].items() if t != self.trial]
            stop = _worse_than_top(val_loss, peers, self.eta, self.margin) if len(peers) >= self.min_peers else False
            rung["losses"][self.trial] = val_loss
            state["decisions"].setdefault(self.trial, {})[key] = "stop" if stop else "continue"
            write_json(self.path, state)
        return stop


def _worse_than_top(loss: float, peers: list[float], eta: int, margin: float) -> bool:
    """True when `loss` is outside the best 1/eta of everyone at the rung (itself included) by > margin."""
    ranked = sorted(peers + [loss])
    keep = max(1, len(ranked) // eta)
    cutoff = ranked[keep - 1]
    return loss > cutoff + margin * abs(cutoff)


def pruner_for(cfg: dict, sweep_dir: Path, trial: str) -> RungPruner | None:
    """The grid point's pruner from cfg["sweep"]["prune"] (None when pruning is off)."""
    pcfg = ((cfg.get("sweep") or {}).get("prune") or {})
    if not pcfg.get("enabled"):
        return None
    tcfg = cfg.get("train") or {}
    min_step = pcfg.get("min_step") or tcfg.get("eval_every") or 0
    try:
        min_step = int(min_step)
    except (TypeError, ValueError):
        raise UserError(f"sweep.prune.min_step: expected an integer, got {min_step!r}") from None
    if min_step < 1:
        raise UserError("sweep.prune.min_step: set it (or train.eval_every) to a step every grid point validates at")
    return RungPruner(Path(sweep_dir) / PRUNING_FILE, trial, min_step, eta=int(pcfg.get("eta", 3)),
                      min_peers=int(pcfg.get("min_peers", 2)), margin=float(pcfg.get("margin", 0.0)))


def read_rungs(sweep_dir: Path) -> dict[str, Any]:
    """The rungs file (for sweep.json / the report): {"rungs": {k: {"step", "losses"}}, "decisions": {...}}."""
    p = Path(sweep_dir) / PRUNING_FILE
    return read_json(p) if p.is_file() else {}
