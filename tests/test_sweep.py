"""The main job on the tiny model: grid -> runs -> scores -> report -> gate, resumable after SIGKILL."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main as cli
from tests.toy_task import write_toy_task

COMMON = ["model=tiny_random", "tracking.wandb=disabled", "sweep=none", "train.batch_size=8", "train.max_steps=3",
          "train.eval_every=3", "train.max_grad_norm=1e30", "train.precision=fp32"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_task(tmp_path_factory.mktemp("toy"), n_train=24, n_val=8, n_eval=8)


def _runs(sweep_dir: Path) -> list[dict]:
    return json.loads((sweep_dir / "sweep.json").read_text())["runs"]


def test_tiny_sweep_2x2_end_to_end_with_a_failing_grid_point(toy, tmp_path):
    """lr=1e30 diverges (NaN): those points are recorded as failed and the others still finish and get scored."""
    rc = cli(["sweep", *COMMON, f"task.path={toy}", f"output_root={tmp_path}", "sweep_name=grid",
              "lora.r=4,8", "train.lr=1e30,1e-3", "eval.probes=default"])
    sweep = tmp_path / "grid"
    runs = _runs(sweep)
    assert len(runs) == 4
    by_lr = {}
    for r in runs:
        by_lr.setdefault(r["hparams"]["train.lr"], []).append(r)
    assert {r["status"] for r in by_lr[1e30]} == {"failed"}
    assert all("diverged" in (r["error"] or "") for r in by_lr[1e30])
    assert {r["status"] for r in by_lr[0.001]} == {"complete"}
    assert sorted(r["hparams"]["lora.r"] for r in by_lr[0.001]) == [4, 8]
    assert {r["hparams"]["lora.alpha"] for r in by_lr[0.001]} == {8, 16}  # alpha follows the rank
    summary = json.loads((sweep / "scores" / "summary.json").read_text())
    complete = {r["run_id"] for r in by_lr[0.001]}
    assert set(summary["models"]) == {"base", "fewshot"} | complete
    rows = [json.loads(line) for line in (sweep / "scores" / "scores.jsonl").read_text().splitlines()]
    assert {r["model"] for r in rows if r["split"] == "probe"} == {"base"} | complete
    md = (sweep / "report" / "report.md").read_text()
    html = (sweep / "report" / "report.html").read_text()
    assert "Verdict" in md and "Leaderboard" in md and "<img" in html
    for r in by_lr[1e30]:
        assert r["run_id"] in md  # failed runs are listed, not hidden
    gate = json.loads((sweep / "gate" / "gate.json").read_text())
    assert rc == (0 if gate["passed"] else 1)
    assert (sweep / "gate" / "junit.xml").is_file()


def _mask_timings(md: str) -> str:
    """Wall-clock columns differ between any two runs; everything else in the report must not."""
    out = []
    cols: list[int] = []
    for line in md.splitlines():
        cells = line.split("|")
        if "train time (s)" in line:
            cols = [i for i, c in enumerate(cells) if c.strip() in ("train time (s)", "tokens/s")]
        elif line.startswith("|") and cols and len(cells) > max(cols):
            for i in cols:
                cells[i] = " T "
            line = "|".join(cells)
        elif not line.startswith("|"):
            cols = []
        out.append(re.sub(r"\d+(\.\d+)? ?s\b(?= train| total)", "T", line))
    return "\n".join(out)


def test_sigkill_after_first_run_then_rerun_resumes_and_matches_uninterrupted(toy, tmp_path):
    args = [sys.executable, "-m", "harness.cli", "sweep", *COMMON, f"task.path={toy}", "sweep_name=s",
            "lora.r=4,8", "train.lr=1e-3", "eval.probes=null", "gate=none"]
    env = {**os.environ, "HARNESS_QUIET": "1"}
    killed_root = tmp_path / "killed"
    proc = subprocess.Popen(args + [f"output_root={killed_root}"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    first = None
    deadline = time.time() + 300
    while time.time() < deadline and first is None:
        for st in (killed_root / "s" / "runs").glob("*/status.json"):
            if json.loads(st.read_text())["status"] == "complete":
                first = st.parent
        time.sleep(0.05)
    assert first is not None, "no run finished in time"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed_root / "s" / "report").exists()
    mtime = (first / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns
    again = subprocess.run(args + [f"output_root={killed_root}"], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"run {first.name} is already complete" in again.stderr
    assert (first / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns == mtime

    straight = subprocess.run(args + [f"output_root={tmp_path / 'straight'}"], env=env, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr[-3000:]
    a, b = killed_root / "s", tmp_path / "straight" / "s"
    assert [(r["run_id"], r["status"]) for r in _runs(a)] == [(r["run_id"], r["status"]) for r in _runs(b)]
    for name in ("scores/scores.jsonl", "report/verdict.json"):
        assert (a / name).read_text() == (b / name).read_text(), name
    wall_clock = ("generate_s", "elapsed_s")  # seconds differ between any two runs; nothing else may
    sa, sb = (json.loads((d / "scores" / "summary.json").read_text()) for d in (a, b))
    assert all(k in sa for k in wall_clock)
    assert {k: v for k, v in sa.items() if k not in wall_clock} == {k: v for k, v in sb.items() if k not in wall_clock}
    for run in _runs(a):  # paths inside the sweep dir are recorded relative to it: the dir can be moved
        assert sa["models"][run["run_id"]]["adapter_path"] == f"{run['run_dir']}/adapter"
    for run in _runs(a):
        ca = json.loads((a / run["run_dir"] / "curves.json").read_text())
        cb = json.loads((b / run["run_dir"] / "curves.json").read_text())
        assert ca == cb
    # the two sweeps were started with different output_root= overrides, which the reproduce section quotes
    ra = (a / "report" / "report.md").read_text().replace(str(killed_root), "OUT")
    rb = (b / "report" / "report.md").read_text().replace(str(tmp_path / "straight"), "OUT")
    # ... and each run's config.yaml (hashed in that section) records its own absolute run_dir
    ra, rb = (re.sub(r"\b[0-9a-f]{64}\b", "SHA", r) for r in (ra, rb))
    assert _mask_timings(ra) == _mask_timings(rb)


def test_joblib_launcher_runs_grid_points_in_parallel_processes(toy, tmp_path):
    rc = cli(["sweep", *COMMON, f"task.path={toy}", f"output_root={tmp_path}", "sweep_name=par", "lora.r=4,8",
              "train.lr=1e-3", "eval.probes=null", "gate=none", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    assert rc == 0
    runs = _runs(tmp_path / "par")
    assert [r["status"] for r in runs] == ["complete", "complete"]
    pids = {json.loads((tmp_path / "par" / r["run_dir"] / "manifest.json").read_text()).get("pid") for r in runs}
    assert os.getpid() not in pids and len(pids) == 2


def test_sweep_reads_the_grid_from_conf_sweep(toy):
    from harness.sweep import plan_sweep

    plan = plan_sweep(["sweep=demo", f"task.path={toy}", "model=tiny_random"])
    assert plan.grid == {"lora.r": ["8", "16"]}
    plan = plan_sweep(["sweep=rank_lr", "train.lr=5e-4,1e-3", f"task.path={toy}", "model=tiny_random"])
    assert plan.grid["train.lr"] == ["5e-4", "1e-3"] and plan.grid["lora.r"] == ["8", "16"]


def test_bad_sweep_override_is_a_clear_error(capsys):
    assert cli(["sweep", "sweep=nope"]) == 2
    assert "nope" in capsys.readouterr().err
