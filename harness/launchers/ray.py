"""Grid points as Ray tasks on an existing Ray cluster (`ray start --head`, or a cluster's address).

Each grid point is one task (num_cpus/num_gpus from the launcher config). A worker that dies mid-run (killed,
OOM, node lost) is retried by Ray (max_retries); the retried task resumes the run from its checkpoint, since
run directories are keyed by config hash. The sweep directory must be on a filesystem every node sees.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

from harness.io import UserError

LOST = "lost"


def _run_point(idx: int, overrides: Sequence[str], hydra_context: Any, config: Any, task_function: Any,
               singleton_state: dict, cwd: str) -> Any:
    """Runs inside the Ray worker: the same Hydra job setup the joblib launcher does, in the driver's cwd."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals
    from omegaconf import open_dict

    os.chdir(cwd)
    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    return run_job(hydra_context=hydra_context, config=sweep_config, task_function=task_function,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def lost_return(overrides: Sequence[str], error: str) -> Any:
    """A grid point whose job never returned (cancelled, out of retries): reported through the return value,
    so Hydra goes on collecting the others; its run directory (if any) stays incomplete for a re-run."""
    from hydra.core.utils import JobReturn, JobStatus

    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = {"status": LOST, "error": error}
    print(f"grid point {' '.join(overrides)} lost: {error}", file=sys.stderr)
    return ret


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list:
    try:
        import ray
    except ImportError:
        raise UserError("hydra/launcher=ray needs Ray: `make install-ray` (or pip install ray)") from None
    from hydra.core.singleton import Singleton
    from hydra.core.utils import setup_globals

    from harness.launchers import forwarded_env

    setup_globals()
    p = dict(launcher.params)
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    started_here = not ray.is_initialized()
    if started_here:
        address = p.get("address") or "auto"
        try:
            ray.init(address=address, runtime_env={"env_vars": forwarded_env()}, log_to_driver=bool(p.get("log_to_driver", True)),
                     logging_level="WARNING", configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"hydra.launcher.address: cannot join the Ray cluster at {address!r}: {exc}".splitlines()[0]) from None
    try:
        task = ray.remote(_run_point).options(num_cpus=float(p.get("num_cpus", 1)), num_gpus=float(p.get("num_gpus", 0)),
                                              max_retries=int(p.get("max_retries", 3)), retry_exceptions=False)
        state = Singleton.get_state()
        refs = [task.remote(initial_job_idx + i, list(ov), launcher.hydra_context, launcher.config,
                            launcher.task_function, state, os.getcwd()) for i, ov in enumerate(job_overrides)]
        print(f"ray: {len(refs)} grid point(s) submitted to {ray.get_runtime_context().gcs_address}", file=sys.stderr)
        out = []
        for ov, ref in zip(job_overrides, refs):
            try:
                out.append(ray.get(ref))
            except (ray.exceptions.RayError, OSError) as exc:  # out of retries, cancelled, node gone
                out.append(lost_return(ov, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
        return out
    finally:
        if started_here:
            ray.shutdown()
