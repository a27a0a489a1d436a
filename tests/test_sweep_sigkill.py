"""#12: a tiny-model sweep SIGKILLed at 5 different points (random jitter after 5 progress events: a run training,
a checkpoint written, a run just completed, evaluating, reporting), re-run after each kill; the final re-run ends
with the same runs, scores and verdict as an uninterrupted sweep, and no finished work was redone (each finished run trained once; no generation was produced twice)."""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.toy_task import write_toy_task

ARGS = ["model=tiny_random", "tracking.wandb=disabled", "sweep=none", "train.batch_size=8", "train.max_steps=4",
        "train.eval_every=2", "train.checkpoint_every=1", "train.max_grad_norm=1e30", "train.precision=fp32",
        "eval.probes=null", "gate=none", "sweep_name=s", "lora.r=4,8", "train.lr=1e-3"]


def _events(sweep: Path):
    """Progress markers in the order a sweep passes them; each fires on what THIS attempt wrote (mtime >= t0)."""
    def newer(pattern: str, t0: float, status: str | None = None) -> bool:
        for p in sweep.glob(pattern):
            try:
                if p.stat().st_mtime >= t0 and (status is None or json.loads(p.read_text())["status"] == status):
                    return True
            except (OSError, ValueError):
                pass
        return False

    return [
        ("a run is training", lambda t0: newer("runs/*/manifest.json", t0)),
        ("a checkpoint was written", lambda t0: newer("runs/*/checkpoints/step-*/state.json", t0)),
        ("a run just completed", lambda t0: newer("runs/*/status.json", t0, "complete")),
        ("evaluating", lambda t0: newer("scores", t0)),
        ("reporting", lambda t0: newer("report", t0)),
    ]


def _finished_trainings(sweep: Path) -> Counter:
    return Counter({p.parent.name: p.read_text().count("complete: best val loss") for p in sweep.glob("runs/*/train.log")})


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


def _check_not_redone(sweep: Path, finished: dict[str, int]) -> None:
    """A run once complete keeps its adapter file untouched by every later attempt."""
    for p in sweep.glob("runs/*/status.json"):
        if json.loads(p.read_text())["status"] == "complete":
            mtime = (p.parent / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns
            assert finished.setdefault(p.parent.name, mtime) == mtime, f"{p.parent.name} was retrained"


def test_sigkill_at_five_points_each_rerun_resumes_to_the_same_report(tmp_path):
    toy = write_toy_task(tmp_path / "toy", n_train=24, n_val=8, n_eval=8)
    env = {**os.environ, "HARNESS_QUIET": "1"}
    cmd = [sys.executable, "-m", "harness.cli", "sweep", *ARGS, f"task.path={toy}"]
    killed_root, straight_root = tmp_path / "killed", tmp_path / "straight"
    sweep = killed_root / "s"
    rng = random.Random(int(os.environ.get("HARNESS_TEST_SEED", "12")))
    kills = []
    finished: dict[str, int] = {}  # run id -> adapter mtime when first seen complete
    for name, reached in _events(sweep):
        t0 = time.time() - 0.01
        proc = subprocess.Popen(cmd + [f"output_root={killed_root}"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.time() + 600
        while proc.poll() is None and not reached(t0) and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))  # a random point shortly after the event
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills.append(name)
        _, err = proc.communicate()
        assert proc.returncode in (0, -signal.SIGKILL), f"attempt before '{name}' failed: {err[-3000:]}"
        _check_not_redone(sweep, finished)
    assert len(kills) >= 4, f"the sweep ran past most kill points: killed at {kills}"

    final = subprocess.run(cmd + [f"output_root={killed_root}"], env=env, capture_output=True, text=True, timeout=900)
    assert final.returncode == 0, final.stderr[-3000:]
    _check_not_redone(sweep, finished)
    straight = subprocess.run(cmd + [f"output_root={straight_root}"], env=env, capture_output=True, text=True, timeout=900)
    assert straight.returncode == 0, straight.stderr[-3000:]
    other = straight_root / "s"

    def runs(d: Path) -> list[tuple]:
        return [(r["run_id"], r["status"], r["name"]) for r in json.loads((d / "sweep.json").read_text())["runs"]]

    assert runs(sweep) == runs(other) and {r[1] for r in runs(sweep)} == {"complete"}
    for name in ("scores/scores.jsonl", "report/verdict.json"):
        assert (sweep / name).read_text() == (other / name).read_text(), name
    for rid, *_ in runs(sweep):
        assert json.loads((sweep / "runs" / rid / "curves.json").read_text()) == \
            json.loads((other / "runs" / rid / "curves.json").read_text())
    # no finished work redone: each run finished training exactly once; each generation was stored once
    assert set(_finished_trainings(sweep).values()) == {1}
    keys = Counter(json.loads(line)["key"] for line in (sweep / "scores" / "generations.jsonl").read_text().splitlines()
                   if line.strip())
    assert keys and max(keys.values()) == 1
    straight_keys = {json.loads(line)["key"] for line in (other / "scores" / "generations.jsonl").read_text().splitlines()
                     if line.strip()}
    assert set(keys) == straight_keys
    ra = (sweep / "report" / "report.md").read_text().replace(str(killed_root), "OUT")
    rb = (other / "report" / "report.md").read_text().replace(str(straight_root), "OUT")
    # config.yaml hashes hold the run_dir; the git commit moves when anyone commits between the two sweeps
    ra, rb = (re.sub(r"\b[0-9a-f]{40}\b", "COMMIT", re.sub(r"\b[0-9a-f]{64}\b", "SHA", r)) for r in (ra, rb))
    assert _mask_timings(ra) == _mask_timings(rb)
