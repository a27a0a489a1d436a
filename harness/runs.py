"""The run directory contract: what a training run leaves behind, and how to tell it is complete.

<run_dir>/
  config.yaml     resolved config (secrets redacted)
  manifest.json   run_id, base model id+hash, data hashes, package versions, git commit, seed, device
  status.json     {"status": "running"|"complete"|"pruned"|"failed"|"interrupted", "error": str|None}
  metrics.json    best_val_loss, best_step, train_time_s, tokens_per_s, peak_mem_mb, trainable_params, adapter_bytes, ...
  curves.json     {"train": [{"step", "loss"}], "val": [{"step", "loss"}]}
  curves.png
  adapter/        PEFT adapter (adapter_model.safetensors + adapter_config.json) from the best val step
  train.log
  checkpoints/    resumable state while running
A run is complete only when status.json says so and the adapter is present; status.json is
written last, atomically.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.io import UserError, load_yaml_with_lines, read_json, write_json

STATUS = "status.json"


@dataclass
class RunInfo:
    run_dir: Path
    run_id: str
    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / "adapter"

    @property
    def complete(self) -> bool:
        return self.status == "complete" and (self.adapter_dir / "adapter_config.json").is_file()


def read_status(run_dir: Path) -> dict:
    """status.json as a mapping; anything else (a list, a string: a damaged or foreign run) is a UserError."""
    p = Path(run_dir) / STATUS
    return _json_object(p) if p.is_file() else {"status": "missing"}


def _json_object(p: Path) -> dict:
    data = read_json(p)
    if not isinstance(data, dict):
        raise UserError(f"{p}:1: expected a JSON object, got {type(data).__name__}")
    return data


def write_status(run_dir: Path, status: str, error: str | None = None, **extra: Any) -> None:
    write_json(Path(run_dir) / STATUS, {"status": status, "error": error, **extra})


SHORT_NAMES = {"lora.r": "r", "lora.alpha": "a", "train.lr": "lr", "train.epochs": "e", "lora.dropout": "do",
          "seed": "s", "train.batch_size": "bs", "lora.target_modules": "tm"}


def display_name(hparams: dict[str, Any], keys: list[str] | None = None) -> str:
    """A person-readable adapter name from its hyperparameters, e.g. `r16-lr2e-4-e2`.

    `keys` limits the name to the axes that vary in a sweep (so two runs differ in their names);
    alpha is left out when it is the default 2r. Run ids (hashes) stay the machine keys."""
    keys = list(hparams) if keys is None else [k for k in keys if k in hparams]
    parts = []
    for k in keys:
        v = hparams[k]
        if k == "lora.alpha" and "lora.r" in hparams and v == 2 * hparams["lora.r"]:
            continue
        short = SHORT_NAMES.get(k, k.rsplit(".", 1)[-1])
        if isinstance(v, float):
            if v and (abs(v) < 1e-2 or abs(v) >= 1e4):
                mant, exp = f"{v:.2e}".split("e")
                txt = f"{mant.rstrip('0').rstrip('.')}e{int(exp)}"
            else:
                txt = f"{v:g}"
        else:
            txt = str(v)
        parts.append(f"{short}{txt}")
    return "-".join(parts) or "adapter"


def read_run_config(run_dir: str | Path) -> dict:
    """A run's config.yaml as a dict ({} when absent). The one reader of it: anything that is not a readable
    mapping (not UTF-8, absurd nesting, bad syntax, a list) is a UserError "FILE:LINE: ...", never a traceback."""
    p = Path(run_dir) / "config.yaml"
    if not p.is_file():
        return {}
    cfg, _ = load_yaml_with_lines(p)
    if cfg is not None and not isinstance(cfg, dict):
        raise UserError(f"{p}: expected a mapping of config sections")
    return cfg or {}


def load_run(run_dir: str | Path) -> RunInfo:
    run_dir = Path(run_dir)
    st = read_status(run_dir)
    metrics = _json_object(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    manifest = _json_object(run_dir / "manifest.json") if (run_dir / "manifest.json").is_file() else {}
    return RunInfo(run_dir, manifest.get("run_id", run_dir.name), st.get("status", "missing"), metrics, manifest,
                   read_run_config(run_dir), st.get("error"))
