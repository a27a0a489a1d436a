"""Grid points as a SLURM job array through submitit (resources from hydra.launcher.*: partition, gpus_per_node,
cpus_per_task, mem_gb, timeout_min, array_parallelism, ...).

submitit learns that a job ended from `sacct`, which needs SLURM's accounting database; without it a cancelled
job would be waited for forever. Here the wait is on `squeue` (the controller alone): a job is over when it
left the queue; it succeeded when its result file exists, else it is a lost grid point (scancel, time limit,
node failure) whose run directory stays incomplete and resumes on the next `harness sweep`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from harness.io import UserError
from harness.launchers.ray import lost_return


def _submit(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list:
    import submitit
    from hydra.core.singleton import Singleton
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    params = dict(launcher.params)
    folder = params.pop("submitit_folder")
    max_timeouts = params.pop("max_num_timeout", None)
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm",
                                     **({"slurm_max_num_timeout": max_timeouts} if max_timeouts is not None else {}))
    generic = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in generic else f"slurm_{k}": v for k, v in params.items()})
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    n = len(job_overrides)
    idx = [initial_job_idx + i for i in range(n)]
    return executor.map_array(launcher, [list(o) for o in job_overrides], ["hydra.sweep.dir"] * n, idx,
                              [f"job_id_for_{i}" for i in idx], [Singleton.get_state()] * n)


def _queued(array_ids: set[str]) -> set[str]:
    """Job ids (ARRAY_TASK form, one per line) still known to the queue as pending/running/completing."""
    try:
        res = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(sorted(array_ids))],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"hydra/launcher=slurm: squeue failed: {exc}") from None
    if res.returncode != 0:
        if "Invalid job id" in res.stderr:  # every job of the array left the queue
            return set()
        raise UserError(f"hydra/launcher=slurm: squeue failed: {res.stderr.strip()[:300]}")
    return set(res.stdout.split())


def _job_state(job_id: str) -> str:
    res = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=60)
    for field in res.stdout.split():
        if field.startswith("JobState="):
            return field.split("=", 1)[1]
    return "UNKNOWN (no longer known to the controller)"


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list:
    jobs = _submit(launcher, job_overrides, initial_job_idx)
    print(f"slurm: {len(jobs)} grid point(s) submitted as job(s) {', '.join(j.job_id for j in jobs)}", file=sys.stderr)
    poll = float(os.environ.get("HARNESS_SLURM_POLL_S", "2"))
    array_ids = {j.job_id.split("_")[0] for j in jobs}
    waiting = {j.job_id for j in jobs}
    while waiting:
        queued = _queued(array_ids)
        waiting = {jid for jid in waiting if jid in queued}
        if waiting:
            time.sleep(poll)
    out = []
    for ov, job in zip(job_overrides, jobs):
        if job.paths.result_pickle.exists():
            try:
                out.append(job.results()[0])
                continue
            except Exception as exc:  # the job itself raised (our task function does not, Hydra's setup might)
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            error = f"SLURM job {job.job_id} ended without a result ({_job_state(job.job_id)})"
        out.append(lost_return(ov, error))
    return out
