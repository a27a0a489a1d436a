"""The main job on the tiny model: grid -> runs -> scores -> report -> gate (SIGKILL resume: test_sweep_sigkill.py)."""
from __future__ import annotations

import json
import os
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
    assert plan.grid == {"train.lr": ["1e-3", "2e-4"]} and plan.cfg["sweep"]["prune"]["enabled"] is True
    plan = plan_sweep(["sweep=rank_lr", "train.lr=5e-4,1e-3", f"task.path={toy}", "model=tiny_random"])
    assert plan.grid["train.lr"] == ["5e-4", "1e-3"] and plan.grid["lora.r"] == ["8", "16"]


def test_bad_sweep_override_is_a_clear_error(capsys):
    assert cli(["sweep", "sweep=nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_a_bad_value_in_any_grid_point_fails_before_training(tmp_path, capsys):
    """validate_cfg runs on every grid point's composed config before the first job starts."""
    rc = cli(["sweep", "model=tiny_random", "sweep=none", f"output_root={tmp_path}", "sweep_name=bad",
              "train.lr=1e-3", "train.batch_size=8,0"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "train.batch_size" in err and "grid point train.batch_size=0" in err and "Traceback" not in err
    assert not (tmp_path / "bad" / "runs").exists()  # nothing trained, not even the valid point
