"""hydra/launcher=slurm against a real single-node SLURM (munged + slurmctld + slurmd on 127.0.0.1, configured
and stopped by tests/slurm/slurm_{up,down}.sh): a 3-point tiny sweep as a job array with resources from the
config, one running job cancelled with scancel (the sweep reports it unfinished, still writes the report, exits 1),
then a re-run that resumes it and retrains nothing that finished."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.toy_task import write_toy_task

HERE = Path(__file__).resolve().parent
NEEDED = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol")
missing = [b for b in NEEDED if shutil.which(b) is None]
pytestmark = [
    pytest.mark.skipif(bool(missing), reason=f"SLURM not installed ({', '.join(missing)} missing): `make install-slurm`"),
    pytest.mark.skipif(os.geteuid() != 0, reason="a local slurmd must run as root to start jobs"),
]

# 40 steps (a few seconds per run on the tiny model): long enough that the scancel sent when a run is seen
# "running" lands before it finishes, even on a busy 2-core machine (4 steps raced and lost in CI once).
COMMON = ["model=tiny_random", "tracking.wandb=disabled", "sweep=none", "train.batch_size=8", "train.max_steps=40",
          "train.eval_every=10", "train.checkpoint_every=1", "train.max_grad_norm=1e30", "train.precision=fp32",
          "eval.probes=null", "gate=none", "sweep_name=s", "lora.r=4", "train.lr=1e-3,2e-3,3e-3",
          "hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
          "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=15",
          "hydra.launcher.array_parallelism=2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def slurm():
    state = Path(tempfile.mkdtemp(prefix="slurm", dir="/tmp"))
    up = subprocess.run([str(HERE / "slurm" / "slurm_up.sh"), str(state), str(_free_port()), str(_free_port())],
                        capture_output=True, text=True, timeout=180)
    saved = os.environ.get("SLURM_CONF")
    try:
        assert up.returncode == 0, f"slurm_up failed: {up.stderr[-2000:]}"
        os.environ["SLURM_CONF"] = up.stdout.strip()
        yield state
    finally:
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        subprocess.run([str(HERE / "slurm" / "slurm_down.sh"), str(state)], timeout=120)
        alive = []
        for name in ("slurmd", "slurmctld", "munged"):
            pid_file = state / f"{name}.pid"
            if pid_file.is_file():
                pid = int(pid_file.read_text().split()[0])
                try:
                    os.kill(pid, 0)
                    alive.append((name, pid))
                except ProcessLookupError:
                    pass
        shutil.rmtree(state, ignore_errors=True)
        assert not alive, f"SLURM daemons still running: {alive}"


def _array_task(pid: int) -> str | None:
    """The SLURM array task id (A_T) a process runs in, from its environment."""
    try:
        env = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv)
    except OSError:
        return None
    if "SLURM_ARRAY_JOB_ID" in env:
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return None


def test_slurm_sweep_with_a_cancelled_job_then_resume(slurm, tmp_path):
    toy = write_toy_task(tmp_path / "toy", n_train=24, n_val=8, n_eval=8)
    env = {**os.environ, "HARNESS_QUIET": "1", "HARNESS_SLURM_POLL_S": "1"}
    args = [sys.executable, "-m", "harness.cli", "sweep", *COMMON, f"task.path={toy}", f"output_root={tmp_path / 'out'}"]
    sweep = tmp_path / "out" / "s"
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cancelled = None
    deadline = time.time() + 600
    while cancelled is None and proc.poll() is None and time.time() < deadline:
        for m in sweep.glob("runs/*/manifest.json"):
            if json.loads((m.parent / "status.json").read_text())["status"] != "running":
                continue
            task = _array_task(json.loads(m.read_text())["pid"])
            if task:
                subprocess.run(["scancel", task], check=True, timeout=60)
                cancelled = (m.parent.name, task)
                break
        time.sleep(0.1)
    out, _ = proc.communicate(timeout=600)
    assert cancelled is not None, f"no running job was caught to cancel: {out[-3000:]}"
    assert proc.returncode == 1, out[-4000:]  # unfinished grid point: report written, exit non-zero
    assert "did not finish" in out and "re-run the same command" in out
    assert "lost" in out and "CANCELLED" in out
    runs = {r["run_id"]: r for r in json.loads((sweep / "sweep.json").read_text())["runs"]}
    assert runs[cancelled[0]]["status"] == "incomplete"
    assert sorted(r["status"] for r in runs.values()) == ["complete", "complete", "incomplete"]
    assert (sweep / "report" / "report.md").is_file()
    # the resources from the config reached sbatch
    script = next(sweep.glob("hydra/.submitit/*/*_submission.sh")).read_text()
    for line in ("#SBATCH --partition=debug", "#SBATCH --cpus-per-task=1", "#SBATCH --mem=1GB", "#SBATCH --time=15"):
        assert line in script, line
    assert "#SBATCH --array=0-2%2" in script

    done = {rid: (sweep / "runs" / rid / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns
            for rid, r in runs.items() if r["status"] == "complete"}
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    runs = {r["run_id"]: r for r in json.loads((sweep / "sweep.json").read_text())["runs"]}
    assert [r["status"] for r in runs.values()] == ["complete"] * 3 and cancelled[0] in runs
    for rid, mtime in done.items():  # finished runs were skipped, not retrained
        assert (sweep / "runs" / rid / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns == mtime
    log = (sweep / "runs" / cancelled[0] / "train.log").read_text()
    assert log.count("complete: best val loss") == 1
    summary = json.loads((sweep / "scores" / "summary.json").read_text())
    assert set(runs) <= set(summary["models"])
