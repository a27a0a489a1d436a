"""Successive halving on validation loss (harness/pruning.py) and seed replicas of the top configurations."""
from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from harness.cli import main as cli
from harness.io import UserError
from harness.pruning import RungPruner, pruner_for
from tests.toy_task import write_toy_task


def test_rungs_stop_the_clearly_worse_and_keep_the_best(tmp_path):
    f = tmp_path / "pruning.json"
    mk = lambda t: RungPruner(f, t, min_step=2, eta=2, min_peers=1, margin=0.05)  # noqa: E731
    assert mk("a")(1, 9.0) is False                      # before the first rung: no decision
    assert mk("a")(2, 5.0) is False                      # first at the rung: nobody to compare with
    assert mk("b")(2, 5.1) is False                      # worse, but within the 5% margin
    assert mk("c")(2, 7.0) is True                       # clearly worse than the best half
    assert mk("d")(2, 4.0) is False                      # the new best goes on
    assert mk("c")(2, 1.0) is True                       # a resumed trial gets its recorded decision back
    assert mk("a")(4, 3.0) is False and mk("b")(5, 3.5) is True   # rung 1 (steps 4..7): b now clearly worse
    state = json.loads(f.read_text())
    assert state["rungs"]["0"]["losses"] == {"a": 5.0, "b": 5.1, "c": 7.0, "d": 4.0}
    assert state["decisions"]["c"] == {"0": "stop"} and state["decisions"]["b"] == {"0": "continue", "1": "stop"}


def _report(args):
    path, trial, loss, barrier = args
    barrier.wait()
    return trial, RungPruner(Path(path), trial, min_step=1, eta=3, min_peers=100)(1, loss)


def test_parallel_grid_points_share_the_rungs_file_under_a_lock(tmp_path):
    f = tmp_path / "pruning.json"
    n = 8
    # spawn, not fork: forking a pytest process whose earlier tests left threads running (loky, tqdm) hung a
    # child in CI for 30 minutes; the bounded wait turns any such hang into a quick failure.
    ctx = mp.get_context("spawn")
    with ctx.Manager() as m:
        barrier = m.Barrier(n)
        with ctx.Pool(n) as pool:
            out = pool.map_async(_report, [(str(f), f"t{i}", float(i), barrier) for i in range(n)]).get(timeout=120)
    assert all(stop is False for _, stop in out)  # min_peers=100: nobody stops...
    assert json.loads(f.read_text())["rungs"]["0"]["losses"] == {f"t{i}": float(i) for i in range(n)}  # ...none lost


def test_bad_pruning_settings_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="sweep.prune.eta"):
        pruner_for({"sweep": {"prune": {"enabled": True, "eta": 1}}, "train": {"eval_every": 2}}, tmp_path, "t")
    with pytest.raises(UserError, match="sweep.prune.min_step"):
        pruner_for({"sweep": {"prune": {"enabled": True}}, "train": {"eval_every": 0}}, tmp_path, "t")
    assert pruner_for({"sweep": {"prune": {"enabled": False}}}, tmp_path, "t") is None
    assert cli(["sweep", "model=tiny_random", "sweep.seeds=0"]) == 2


def test_losing_point_is_pruned_and_top_config_gets_more_seeds(tmp_path):
    """lr=3e-3 learns, lr=1e-6 barely moves: the second is pruned at the first rung (curve kept, not scored);
    sweep.seeds=2 retrains the best configuration by validation loss with seed 1."""
    toy = write_toy_task(tmp_path / "toy", n_train=24, n_val=8, n_eval=6)
    rc = cli(["sweep", "model=tiny_random", "tracking.wandb=disabled", "sweep=none", f"task.path={toy}",
              f"output_root={tmp_path}", "sweep_name=p", "train.batch_size=8", "train.max_steps=4", "train.eval_every=2",
              "train.precision=fp32", "eval.probes=null", "gate=none", "lora.r=4", "train.lr=3e-3,1e-6",
              "sweep.prune.enabled=true", "sweep.prune.min_peers=1", "sweep.seeds=2", "sweep.seed_top_k=1"])
    assert rc == 0
    sweep = tmp_path / "p"
    doc = json.loads((sweep / "sweep.json").read_text())
    runs = {(r["hparams"]["train.lr"], r["seed"]): r for r in doc["runs"]}
    assert set(runs) == {(3e-3, 0), (1e-6, 0), (3e-3, 1)}
    pruned = runs[(1e-6, 0)]
    assert pruned["status"] == "pruned" and pruned["pruned_at"] == 2
    curves = json.loads((sweep / pruned["run_dir"] / "curves.json").read_text())
    assert [v["step"] for v in curves["val"]] == [0, 2]  # the curve up to the rung is kept
    assert runs[(3e-3, 0)]["status"] == runs[(3e-3, 1)]["status"] == "complete"
    assert runs[(3e-3, 0)]["best_val_loss"] < pruned["best_val_loss"]
    # seed replicas: same configuration id, different run ids and names; chosen by validation loss
    assert runs[(3e-3, 0)]["config_id"] == runs[(3e-3, 1)]["config_id"] != pruned["config_id"]
    assert runs[(3e-3, 0)]["name"] != runs[(3e-3, 1)]["name"] and runs[(3e-3, 1)]["name"].endswith("s1")
    assert doc["seeds"]["configs"] == [runs[(3e-3, 0)]["config_id"]]
    assert doc["pruning"]["rungs"]["0"]["step"] == 2
    summary = json.loads((sweep / "scores" / "summary.json").read_text())
    assert set(summary["models"]) == {"base", "fewshot", runs[(3e-3, 0)]["run_id"], runs[(3e-3, 1)]["run_id"]}
