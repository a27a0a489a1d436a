"""Hydra launchers of our own: `hydra/launcher=ray` (one Ray task per grid point on an existing cluster) and
`hydra/launcher=slurm` (submitit, one array task per grid point, waited for with squeue so a cancelled job
is reported instead of hanging). Hydra only instantiates launchers from the `hydra_plugins` namespace, so the
thin plugin classes live in plugins/hydra_plugins/harness_launchers; `enable_launchers()` puts that folder on
sys.path (and PYTHONPATH, for the jobs' processes) before Hydra scans for plugins.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

PLUGIN_PATH = str(Path(__file__).resolve().parent / "plugins")


def enable_launchers() -> None:
    if PLUGIN_PATH not in sys.path:
        sys.path.append(PLUGIN_PATH)
        importlib.invalidate_caches()
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if PLUGIN_PATH not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join(parts + [PLUGIN_PATH])
    from hydra.core.plugins import Plugins

    mod = importlib.import_module("hydra_plugins.harness_launchers")
    plugins = Plugins.instance()  # scanned already in this process? then register by hand
    for cls in (mod.RayLauncher, mod.SlurmLauncher):
        if f"{cls.__module__}.{cls.__name__}" not in plugins.class_name_to_class:
            plugins.register(cls)


def forwarded_env() -> dict[str, str]:
    """Environment the remote jobs need (ours, caches, wandb mode, threads, PYTHONPATH); never a secret."""
    from harness.config import is_secret_key

    prefixes = ("HARNESS_", "LORA_HARNESS_", "WANDB_MODE", "WANDB_DIR", "HF_HOME", "TRANSFORMERS_", "OMP_", "MKL_",
                "PYTHONPATH", "TOKENIZERS_PARALLELISM")
    return {k: v for k, v in os.environ.items()
            if k.startswith(prefixes) and not is_secret_key(k) and not k.endswith(("_TOKEN", "_KEY"))}
