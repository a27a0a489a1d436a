"""hydra/launcher=ray against a real Ray head on 127.0.0.1 (started and stopped here): a 4-point tiny sweep with
one worker SIGKILLed mid-run ends with the same runs, scores and verdict as a local sweep; a re-run resumes
(nothing retrained). Two workers train at once from the shared model cache."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness.cli import main as cli
from tests.toy_task import write_toy_task

pytest.importorskip("ray", reason="Ray is not installed: `make install-ray`")

COMMON = ["model=tiny_random", "tracking.wandb=disabled", "sweep=none", "train.batch_size=8", "train.max_steps=4",
          "train.eval_every=2", "train.checkpoint_every=1", "train.max_grad_norm=1e30", "train.precision=fp32",
          "eval.probes=null", "gate=none", "sweep_name=s", "lora.r=4,8", "train.lr=1e-3,3e-3"]
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _procs_under(marker: str) -> list:
    """Our Ray's processes: their command line names our private temp dir (never another user's Ray)."""
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if marker in " ".join(p.info["cmdline"] or []):
                out.append(p)
        except psutil.Error:
            pass
    return out


@pytest.fixture(scope="module")
def ray_head():
    import psutil

    temp = tempfile.mkdtemp(prefix="rayh", dir="/tmp")  # short: Ray's unix socket paths are length-limited
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen([RAY, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
                             "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", f"--temp-dir={temp}",
                             "--object-store-memory=80000000", "--disable-usage-stats"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert head.poll() is None, "ray start --head exited"
            st = subprocess.run([RAY, "status", f"--address={address}"], capture_output=True, text=True, env=env)
            if st.returncode == 0 and "CPU" in st.stdout:
                break
            assert time.time() < deadline, f"Ray head not up in 120 s: {st.stderr[-500:]}"
            time.sleep(1)
        yield address
    finally:
        head.send_signal(signal.SIGTERM)  # --block: ray start stops its own services on SIGTERM
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
        time.sleep(1)
        left = _procs_under(temp)
        for p in left:  # by pid, only ours
            try:
                p.kill()
            except psutil.Error:
                pass
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"Ray processes outlived `ray start --block`: {[p.pid for p in left]}"


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_task(tmp_path_factory.mktemp("toy"), n_train=24, n_val=8, n_eval=8)


def _runs(sweep: Path) -> list[tuple]:
    return [(r["run_id"], r["status"], r["name"]) for r in json.loads((sweep / "sweep.json").read_text())["runs"]]


def _mtimes(sweep: Path) -> dict:
    return {p.parent.parent.name: p.stat().st_mtime_ns for p in sweep.glob("runs/*/adapter/adapter_model.safetensors")}


def test_ray_sweep_survives_a_killed_worker_matches_local_and_resumes(ray_head, toy, tmp_path):
    rc = cli(["sweep", *COMMON, f"task.path={toy}", f"output_root={tmp_path / 'local'}"])
    assert rc == 0
    local = tmp_path / "local" / "s"

    env = {**os.environ, "HARNESS_QUIET": "1"}
    args = [sys.executable, "-m", "harness.cli", "sweep", *COMMON, f"task.path={toy}", f"output_root={tmp_path / 'ray'}",
            "hydra/launcher=ray", f"hydra.launcher.address={ray_head}", "hydra.launcher.num_cpus=1"]
    remote = tmp_path / "ray" / "s"
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = None
    deadline = time.time() + 600
    while killed is None and proc.poll() is None and time.time() < deadline:
        for m in remote.glob("runs/*/manifest.json"):
            st = json.loads((m.parent / "status.json").read_text())
            if st["status"] == "running":
                killed = (m.parent.name, json.loads(m.read_text())["pid"])
                os.kill(killed[1], signal.SIGKILL)  # a Ray worker dies mid-run
                break
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-4000:]
    assert killed is not None and killed[1] != os.getpid(), "no worker was caught mid-run"
    run_dir = remote / "runs" / killed[0]
    assert json.loads((run_dir / "manifest.json").read_text())["pid"] != killed[1]  # Ray retried it elsewhere
    pids = {json.loads(m.read_text())["pid"] for m in remote.glob("runs/*/manifest.json")}
    assert os.getpid() not in pids and proc.pid not in pids  # trained in Ray workers, not the driver

    assert _runs(remote) == _runs(local) and {r[1] for r in _runs(remote)} == {"complete"}
    for name in ("scores/scores.jsonl", "report/verdict.json"):
        assert (remote / name).read_text() == (local / name).read_text(), name
    for rid, *_ in _runs(local):  # the killed run resumed to the same curve, val losses exactly equal
        assert json.loads((remote / "runs" / rid / "curves.json").read_text()) == \
            json.loads((local / "runs" / rid / "curves.json").read_text())

    before = _mtimes(remote)
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _mtimes(remote) == before and len(before) == 4  # resume: nothing retrained
    assert (remote / "scores/scores.jsonl").read_text() == (local / "scores/scores.jsonl").read_text()
