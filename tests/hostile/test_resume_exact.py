"""Issue #22 item 7: a run interrupted anywhere (Ctrl-C inside a step, Ctrl-C twice, Ctrl-C during a validation,
SIGKILL inside a step) and resumed with the same command ends bitwise where the uninterrupted run ends: the
same train and validation curves (==, not approx) and the same adapter weights. LoRA dropout is on, so a
checkpoint that missed the RNG's state at a step boundary would show."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.cli import main as cli
from hostile_kit import REPO, run_cli, write_toy_task

# 32 train rows / batch 8 = 4 steps an epoch: the 8 steps cross an epoch end; checkpoints every 3 steps
ARGS = ["model=tiny_random", "tracking.wandb=disabled", "train.batch_size=8", "train.max_steps=8",
        "train.eval_every=2", "train.checkpoint_every=3", "train.patience=0", "lora.r=4", "lora.dropout=0.3",
        "train.lr=1e-2"]

# runs `harness train` with a signal sent to itself right after the Nth forward of a training step (mode
# "train": before that micro-batch's backward, with dropout already drawn) or of a validation ("val")
CHILD = """
import os, signal, sys
import harness.train as T
from harness.cli import main
sig, twice, mode, at = getattr(signal, sys.argv[1]), sys.argv[2] == "twice", sys.argv[3], int(sys.argv[4])
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal: a background shell's job ignores SIGINT
real, seen = T.completion_loss, [0]
def completion_loss(model, *a, **k):
    out = real(model, *a, **k)
    if model.training == (mode == "train"):
        seen[0] += 1
        if seen[0] == at:
            os.kill(os.getpid(), sig)
            if twice:
                os.kill(os.getpid(), sig)
    return out
T.completion_loss = completion_loss
sys.exit(main(["train", *sys.argv[5:]]))
"""


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return write_toy_task(tmp_path_factory.mktemp("resume"), n_train=32, n_val=8)


@pytest.fixture(scope="module")
def straight(task, tmp_path_factory):
    run = tmp_path_factory.mktemp("straight") / "run"
    assert cli(["train", *ARGS, f"task.path={task}", f"run_dir={run}"]) == 0
    return run


def _adapter(run):
    from safetensors.torch import load_file

    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


@pytest.mark.parametrize("sig,twice,mode,at,rc,resume_from", [
    ("SIGINT", "once", "train", 5, 130, 5),   # Ctrl-C inside step 5: the step is finished, then checkpointed
    ("SIGINT", "twice", "train", 5, 130, 3),  # Ctrl-C twice: step 5 is discarded, the step-3 checkpoint stays
    ("SIGINT", "once", "val", 3, 130, 4),     # Ctrl-C during step 4's validation, the epoch's end (the old
                                              # checkpoint there had no epoch roll-over: its resume never ended)
    ("SIGKILL", "once", "train", 5, -9, 3),   # killed inside step 5
    ("SIGKILL", "once", "train", 7, -9, 6),   # killed inside step 7
])
def test_interrupted_and_resumed_run_is_bitwise_the_uninterrupted_one(task, straight, tmp_path, sig, twice, mode,
                                                                      at, rc, resume_from):
    run = tmp_path / "run"
    cmd = [*ARGS, f"task.path={task}", f"run_dir={run}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, "-c", CHILD, sig, twice, mode, str(at), *cmd], capture_output=True,
                            text=True, env=env, cwd=REPO, timeout=600)
    assert killed.returncode == rc, killed.stderr[-3000:]
    assert json.loads((run / "status.json").read_text())["status"] in ("interrupted", "running")
    assert not (run / "adapter").exists()
    # the same command resumes (in a process of its own: a resume that never ends fails here instead of hanging)
    resumed = run_cli("train", *cmd, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / "curves.json").read_text()) == json.loads((straight / "curves.json").read_text())
    a, b = _adapter(run), _adapter(straight)
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    m, s = (json.loads((r / "metrics.json").read_text()) for r in (run, straight))
    assert (m["best_val_loss"], m["best_step"], m["final_step"]) == (s["best_val_loss"], s["best_step"], s["final_step"])
    log = (run / "train.log").read_text()
    assert f"from step {resume_from} " in log, log
