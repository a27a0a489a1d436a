"""What a training run writes besides weights: log lines, a progress bar, wandb (offline), the curves plot, the manifest.

Kept apart from harness/train.py so the recipe reads as the training steps only. Everything that leaves the
process (wandb config, the manifest's command line) goes through harness.config's redaction first.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from harness.config import redact, redact_overrides
from harness.io import sha256_file


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def manifest(cfg: dict, run_id: str, config_id: str, spec, data, device: str, seed: int, precision: str) -> dict:
    """Everything needed to reproduce the run; the command line with secrets masked."""
    from importlib.metadata import PackageNotFoundError, version

    pkgs = {}
    for name in ("lora-harness", "torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes"):
        try:
            pkgs[name] = version(name)
        except PackageNotFoundError:
            pass
    command = None
    if sys.argv[1:2] == ["train"]:
        command = "harness train " + " ".join(redact_overrides(sys.argv[2:]))
    return {
        "run_id": run_id, "config_id": config_id,
        "base_model": {"name": spec.name, "path": str(spec.path), "identity": spec.identity},
        "task": {"name": data.task_name, "version": data.task_version},
        "data": {k: {"path": v, "sha256": sha256_file(v)} for k, v in data.files.items()},
        "packages": pkgs, "python": platform.python_version(), "git_commit": git_commit(),
        "seed": seed, "device": device, "precision": precision, "quant": cfg.get("quant") or "none",
        "pid": os.getpid(), "command": command,
    }


def plot_curves(curves: dict, best_step, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if curves["train"]:
        ax.plot([p["step"] for p in curves["train"]], [p["loss"] for p in curves["train"]], label="train", alpha=0.7)
    if curves["val"]:
        ax.plot([p["step"] for p in curves["val"]], [p["loss"] for p in curves["val"]], "o-", label="validation")
    if best_step is not None:
        ax.axvline(best_step, color="gray", ls="--", lw=1, label=f"best step {best_step}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (completion tokens)")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


class Logger:
    """Appends timestamped lines to train.log and echoes them to stderr unless quiet."""

    def __init__(self, path: Path, quiet: bool):
        self.path, self.quiet = path, quiet

    def __call__(self, msg: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        say(self.quiet, msg)


def say(quiet: bool, msg: str) -> None:
    if not quiet:
        from rich.console import Console

        Console(stderr=True, highlight=False).print(msg)


class Progress:
    """A rich progress bar with step, loss, tokens/s and ETA (silent when quiet)."""

    def __init__(self, quiet: bool, total: int, start: int):
        self.quiet, self.total, self.start = quiet, total, start

    def __enter__(self):
        if not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.p = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                              TextColumn("{task.fields[tps]} tok/s"), TimeElapsedColumn(), TextColumn("ETA"),
                              TimeRemainingColumn(), transient=False)
            self.p.__enter__()
            self.task = self.p.add_task("train", total=self.total, completed=self.start, loss="-", tps="-")
        return self

    def update(self, step: int, loss: float, tps: float) -> None:
        if not self.quiet:
            self.p.update(self.task, completed=step, loss=f"{loss:.4f}", tps=f"{tps:.0f}")

    def __exit__(self, *a):
        if not self.quiet:
            self.p.__exit__(*a)
        return False


class Tracker:
    """wandb logging, offline by default (no account needed); `tracking.wandb=disabled` turns it off.
    The config it records is redacted: an offline run directory is meant to be shared."""

    def __init__(self, cfg: dict, run_dir: Path, run_id: str):
        mode = str((cfg.get("tracking") or {}).get("wandb", "offline"))
        if os.environ.get("WANDB_MODE") == "disabled":
            mode = "disabled"
        self.run = None
        if mode == "disabled":
            return
        try:
            import wandb
        except ImportError:
            return
        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(project=(cfg.get("tracking") or {}).get("project", "lora-harness"), mode=mode,
                              dir=str(run_dir), name=run_id, id=run_id, resume="allow", config=redact(cfg),
                              reinit="finish_previous", settings=wandb.Settings(x_disable_meta=True, disable_code=True, save_code=False))

    def log(self, values: dict, step: int) -> None:
        if self.run is not None:
            self.run.log(values, step=step)

    def finish(self, code: int) -> None:
        if self.run is not None:
            self.run.finish(exit_code=code)
            self.run = None
