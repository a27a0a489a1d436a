"""The training engine on the tiny model: the real CLI, real files, invariants pinned."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main as cli
from harness.config import compose, to_dict
from tests.toy_task import write_toy_task

FAST = ["model=tiny_random", "tracking.wandb=disabled", "train.batch_size=8"]


def cfg_for(task_yaml: Path, *extra: str) -> dict:
    return to_dict(compose(FAST + [f"task.path={task_yaml}", *extra]))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_task(tmp_path_factory.mktemp("toy"))


def read(run_dir: Path, name: str):
    return json.loads((run_dir / name).read_text())


def test_end_to_end_train_writes_a_complete_self_describing_run(toy, tmp_path):
    run = tmp_path / "run"
    assert cli(["train", *FAST, f"task.path={toy}", "train.max_steps=6", "train.eval_every=3", f"run_dir={run}"]) == 0
    for name in ("config.yaml", "manifest.json", "metrics.json", "curves.json", "curves.png", "train.log",
                 "adapter/adapter_model.safetensors", "adapter/adapter_config.json"):
        assert (run / name).is_file(), name
    assert read(run, "status.json")["status"] == "complete"
    m = read(run, "metrics.json")
    assert m["final_step"] == 6 and m["best_step"] in (0, 3, 6)
    assert m["trainable_params"] > 0 and m["adapter_bytes"] > 0 and m["tokens_per_s"] > 0
    man = read(run, "manifest.json")
    assert man["base_model"]["identity"] and man["data"]["train"]["sha256"] and man["seed"] == 0
    assert "torch" in man["packages"] and man["device"] == "cpu"
    curves = read(run, "curves.json")
    assert [p["step"] for p in curves["val"]] == [0, 3, 6]
    assert len(curves["train"]) == 6
    assert not (run / "checkpoints").exists()


def test_complete_run_with_same_config_is_skipped(toy, tmp_path, capsys):
    from harness.train import train

    cfg = cfg_for(toy, "train.max_steps=2", "train.eval_every=2")
    first = train(cfg, tmp_path / "r", quiet=True)
    mtime = (first.run_dir / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns
    again = train(cfg, tmp_path / "r", quiet=True)
    assert again.skipped and again.run_id == first.run_id
    assert (first.run_dir / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns == mtime
    other = cfg_for(toy, "train.max_steps=3", "train.eval_every=2")
    from harness.io import UserError

    with pytest.raises(UserError, match="different config"):
        train(other, tmp_path / "r", quiet=True)


def test_best_checkpoint_is_kept_when_validation_loss_rises(tmp_path):
    """Val targets are words the training data never shows: val loss dips, then rises as training specialises."""
    from harness.train import train
    from harness.models import load_model, load_tokenizer, resolve_model
    from harness.train import TrainData, encode, validation_loss
    from harness.tasks import load_task
    from peft import PeftModel

    task_yaml = write_toy_task(tmp_path / "t", n_train=64, val_answer="zebra quokka narwhal")
    cfg = cfg_for(task_yaml, "train.lr=5e-2", "train.max_steps=20", "train.eval_every=2", "train.patience=0",
                  "train.precision=fp32", "lora.dropout=0.0", "lora.r=16")
    res = train(cfg, tmp_path / "run", quiet=True)
    curves, m = read(res.run_dir, "curves.json"), res.metrics
    losses = [p["loss"] for p in curves["val"]]
    assert m["best_step"] < m["final_step"], f"val loss never rose: {losses}"
    assert losses[-1] > min(losses)
    # the saved adapter is the best step's: its val loss is the best, not the last
    spec = resolve_model(cfg["model"])
    tok = load_tokenizer(spec)
    task = load_task(str(task_yaml))
    data = TrainData(task.load_split("train"), task.load_split("val"), task.system_prompt, task.prompt_template, {}, "toy")
    model = PeftModel.from_pretrained(load_model(spec, device="cpu", dtype="float32"), str(res.run_dir / "adapter"))
    val = validation_loss(model, encode(tok, data.val, data, 512, True), 16, tok.pad_token_id, "cpu", None)
    assert val == pytest.approx(m["best_val_loss"], rel=1e-4)
    assert val < losses[-1]


def test_early_stopping_stops_after_patience(tmp_path):
    from harness.train import train

    task_yaml = write_toy_task(tmp_path / "t", n_train=64, val_answer="zebra quokka narwhal")
    cfg = cfg_for(task_yaml, "train.lr=5e-2", "train.max_steps=40", "train.eval_every=2", "train.patience=2",
                  "train.precision=fp32", "lora.dropout=0.0", "lora.r=16")
    res = train(cfg, tmp_path / "run", quiet=True)
    m = res.metrics
    assert m["stopped_early"] is True
    assert m["final_step"] < 40
    assert m["final_step"] == m["best_step"] + 2 * 2  # two evaluations (every 2 steps) without improvement


def test_completion_only_masking_supervises_exactly_the_completion(tiny_spec):
    from harness.example import Example
    from harness.models import load_tokenizer
    from harness.prompts import tokenize_for_training

    tok = load_tokenizer(tiny_spec)
    ex = Example(messages=({"role": "user", "content": "ticket: printer on fire"},
                           {"role": "assistant", "content": '{"product": "printer", "severity": "high"}'}))
    enc = tokenize_for_training(tok, ex, system_prompt="Answer with JSON.")
    completion = tok(ex.target + tok.eos_token, add_special_tokens=False)["input_ids"]
    supervised = [t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != -100]
    assert supervised == completion
    assert enc["labels"][: len(enc["labels"]) - len(completion)] == [-100] * (len(enc["labels"]) - len(completion))
    full = tokenize_for_training(tok, ex, system_prompt="Answer with JSON.", completion_only=False)
    assert full["labels"] == full["input_ids"]


def test_same_seed_gives_same_losses(toy, tmp_path):
    from harness.train import train

    cfg = cfg_for(toy, "train.max_steps=4", "train.eval_every=2")
    a = train(cfg, tmp_path / "a", quiet=True)
    b = train(cfg, tmp_path / "b", quiet=True)
    assert read(a.run_dir, "curves.json") == read(b.run_dir, "curves.json")


CHILD = """
import json, os, signal, sys
from harness.train import train
cfg, run_dir, kill_at = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def on_step(state):
    if state.step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
train(cfg, run_dir, on_step=on_step)
"""


class Killed(BaseException):
    """Stands in for SIGKILL inside this process: nothing in train() catches it, so nothing cleans up."""


def test_sigkill_after_a_step_resumes_to_the_same_curves_as_a_straight_run(toy, tmp_path):
    cfg = cfg_for(toy, "train.max_steps=8", "train.eval_every=2", "train.checkpoint_every=2")
    run = tmp_path / "resumed"
    killed = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg), str(run), "5"], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert read(run, "status.json")["status"] == "running"
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step-")] == ["step-00000004"]
    assert not (run / "adapter").exists()
    resumed = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg), str(run), "0"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming run" in resumed.stderr and "from step 4" in resumed.stderr
    from harness.train import train

    straight = train(cfg, tmp_path / "straight", quiet=True)
    a, b = read(run, "curves.json"), read(straight.run_dir, "curves.json")
    assert [p["step"] for p in a["train"]] == list(range(1, 9))
    assert a == b
    assert read(run, "metrics.json")["best_val_loss"] == straight.metrics["best_val_loss"]


@pytest.mark.parametrize("where", ["while_writing", "before_old_removed"])
def test_a_kill_during_checkpointing_leaves_a_valid_copy(toy, tmp_path, monkeypatch, where):
    """Killed while step-4 is being written (or right after its rename): resume starts from a complete
    checkpoint and ends exactly where an uninterrupted run ends."""
    import harness.checkpoint as ckpt
    from harness.train import train

    cfg = cfg_for(toy, "train.max_steps=6", "train.eval_every=2", "train.checkpoint_every=2")
    calls = []
    if where == "while_writing":
        from safetensors.torch import save_file as real_save

        def save_file(tensors, path):
            calls.append(path)
            if len(calls) == 3:  # step 2 wrote trainable + best; the 3rd file is step 4's first
                raise Killed()
            real_save(tensors, path)

        monkeypatch.setattr("safetensors.torch.save_file", save_file)
        expect_resume = 2
    else:
        real_drop = ckpt.drop_older

        def drop_older(root, keep):
            if keep.name == "step-00000004":
                raise Killed()
            real_drop(root, keep)

        monkeypatch.setattr(ckpt, "drop_older", drop_older)
        expect_resume = 4
    with pytest.raises(Killed):
        train(cfg, tmp_path / "run", quiet=True)
    monkeypatch.undo()
    found = ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert found is not None and found[1]["state"]["step"] == expect_resume
    resumed = train(cfg, tmp_path / "run", quiet=True)
    assert "resuming run" in (tmp_path / "run" / "train.log").read_text()
    straight = train(cfg, tmp_path / "straight", quiet=True)
    assert read(resumed.run_dir, "curves.json") == read(straight.run_dir, "curves.json")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resuming_with_a_changed_config_is_refused_before_training(toy, tmp_path, capsys):
    from harness.train import train

    run = tmp_path / "run"
    cfg = cfg_for(toy, "train.max_steps=6", "train.eval_every=2", "train.checkpoint_every=2")

    def kill_at_3(state):
        if state.step == 3:
            raise Killed()

    with pytest.raises(Killed):
        train(cfg, run, quiet=True, on_step=kill_at_3)
    meta = json.loads(next((run / "checkpoints").glob("step-*/state.json")).read_text())
    from harness.train import config_identity

    assert meta["config_id"] == config_identity(cfg) and meta["run_id"] == read(run, "manifest.json")["run_id"]
    log_before = (run / "train.log").read_text()
    rc = cli(["train", *FAST, f"task.path={toy}", "train.max_steps=6", "train.eval_every=2", "train.checkpoint_every=2",
              "train.lr=1e-3", f"run_dir={run}"])
    err = capsys.readouterr().err
    assert rc == 2 and "train.lr: 0.0002 -> 0.001" in err and "Traceback" not in err
    assert (run / "train.log").read_text() == log_before  # refused before anything was written
    assert read(run, "manifest.json")["run_id"] == meta["run_id"]
    res = train(cfg, run, quiet=True)  # the original config still resumes
    assert res.status == "complete" and res.metrics["final_step"] == 6


def test_nan_loss_stops_the_run_and_marks_it_failed(toy, tmp_path, capsys):
    run = tmp_path / "nan"
    rc = cli(["train", *FAST, f"task.path={toy}", "train.lr=1e30", "train.max_grad_norm=1e30", "train.max_steps=6",
              "train.eval_every=1", "train.precision=fp32", f"run_dir={run}"])
    assert rc == 1
    st = read(run, "status.json")
    assert st["status"] == "failed" and ("nan" in st["error"].lower() or "inf" in st["error"].lower())
    assert not (run / "adapter").exists()
    assert "diverged" in capsys.readouterr().err


def test_bad_override_is_a_clear_error(toy, capsys):
    assert cli(["train", "lora.rank=8"]) == 2
    assert "lora.rank" in capsys.readouterr().err
    assert cli(["train", "lora.target_modules=everything", *FAST, "task.path=" + str(toy)]) == 2
    assert "lora.target_modules" in capsys.readouterr().err


@pytest.mark.slow
def test_one_epoch_on_the_demo_task_lowers_smollm2_validation_loss(tmp_path):
    from harness.train import train

    cfg = to_dict(compose(["model=smollm2_135m", "task=demo", "tracking.wandb=disabled", "train.epochs=1",
                           "train.eval_every=20", "train.checkpoint_every=0"]))
    res = train(cfg, tmp_path / "smol", quiet=True)
    m = res.metrics
    assert m["best_val_loss"] < 0.7 * m["initial_val_loss"], m
    assert m["final_step"] == 256 // 8 and m["best_step"] > 0  # one epoch of the demo's 256 training tickets


def test_should_stop_prunes_the_run_keeping_curves_and_best_adapter(toy, tmp_path):
    from harness.train import train

    seen = []

    def should_stop(step: int, val_loss: float) -> bool:
        seen.append((step, val_loss))
        return step >= 4

    cfg = cfg_for(toy, "train.max_steps=10", "train.eval_every=2", "train.patience=0")
    res = train(cfg, tmp_path / "run", quiet=True, should_stop=should_stop)
    assert res.status == "pruned"
    assert [s for s, _ in seen] == [0, 2, 4]
    assert read(res.run_dir, "status.json")["status"] == "pruned"
    m = read(res.run_dir, "metrics.json")
    assert m["final_step"] == 4 and m["pruned"] is True and m["stopped_early"] is False
    assert [p["step"] for p in read(res.run_dir, "curves.json")["val"]] == [0, 2, 4]
    assert (res.run_dir / "adapter" / "adapter_model.safetensors").is_file()
    again = train(cfg, tmp_path / "run", quiet=True)  # a pruned run is final for its config
    assert again.skipped and again.status == "pruned"


def test_improved_is_false_when_validation_loss_never_drops(toy, tmp_path):
    from harness.train import train

    frozen = train(cfg_for(toy, "train.max_steps=2", "train.eval_every=1", "train.lr=0.0"), tmp_path / "a", quiet=True)
    assert frozen.metrics["improved"] is False and frozen.metrics["best_step"] == 0
    learned = train(cfg_for(toy, "train.max_steps=4", "train.eval_every=2", "train.lr=5e-3"), tmp_path / "b", quiet=True)
    assert learned.metrics["improved"] is True
    assert learned.metrics["best_val_loss"] < learned.metrics["initial_val_loss"]


def test_precision_auto_is_bf16_only_where_the_cpu_has_it_natively(monkeypatch):
    from harness.io import UserError
    from harness.train import resolve_precision

    flags = set(Path("/proc/cpuinfo").read_text().split())
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert resolve_precision("auto", "cpu").name == ("bf16" if native else "fp32")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")  # emulating an AVX2-only CPU turns it off
    assert resolve_precision("auto", "cpu").name == "fp32"
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert resolve_precision("auto", "cpu").name == "fp32"
    assert resolve_precision("bf16", "cpu").name == "bf16" and resolve_precision("fp32", "cpu").autocast is None
    with pytest.raises(UserError, match="train.precision"):
        resolve_precision("fp64", "cpu")


def test_bf16_stores_only_frozen_decoder_matmuls_in_bf16_and_tracks_fp32(toy, tiny_spec):
    import torch

    from harness.models import load_tokenizer
    from harness.train import PRECISIONS, build_peft_model, encode, load_train_data, validation_loss

    cfg = cfg_for(toy)
    models = {p: build_peft_model(cfg, tiny_spec, "cpu", PRECISIONS[p]) for p in ("fp32", "bf16")}
    dtypes = {n: p.dtype for n, p in models["bf16"].named_parameters()}
    assert all(d == torch.float32 for n, d in dtypes.items() if "lora_" in n)
    assert all(d == torch.bfloat16 for n, d in dtypes.items() if n.endswith("proj.base_layer.weight"))
    assert all(d == torch.float32 for n, d in dtypes.items() if "norm" in n or "embed_tokens" in n)
    tok = load_tokenizer(tiny_spec)
    data = load_train_data(cfg["task"], 0, 0.1)
    val = encode(tok, data.val, data, 512, True)
    losses = {p: validation_loss(m, val, 8, tok.pad_token_id, "cpu", PRECISIONS[p]) for p, m in models.items()}
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.01)
    assert losses["bf16"] != losses["fp32"]  # it really computed in bf16


def test_secrets_on_the_command_line_reach_no_file_of_the_run(toy, tmp_path):
    secret = "sk-PLANTEDsecret0123456789abcdef"
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "train", "model=tiny_random", "train.batch_size=8",
                           "tracking.wandb=offline", f"task.path={toy}", "train.max_steps=2", "train.eval_every=2",
                           f"++judge.backend.api_key={secret}", f"run_dir={run}"],
                          capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(run.rglob("*.wandb")), "the wandb offline run was not written"
    leaks = [str(p) for p in run.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaks == [] and secret not in proc.stdout + proc.stderr
    assert "harness train" in read(run, "manifest.json")["command"]


def test_shared_prefix_pass_gives_the_same_loss_and_gradients(toy, tiny_spec):
    """The batch's common system prompt runs once and is broadcast: same loss and LoRA gradients as running
    every row in full (dropout off, where the two differ only by how the prefix's noise is drawn)."""
    import torch

    from harness.models import load_tokenizer
    from harness.train import (PRECISIONS, build_peft_model, collate, completion_loss, encode, load_train_data,
                               shared_prefix_len)

    cfg = cfg_for(toy, "lora.dropout=0.0")
    model = build_peft_model(cfg, tiny_spec, "cpu", PRECISIONS["fp32"])
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)  # a trained-looking adapter, so the LoRA path matters
    tok = load_tokenizer(tiny_spec)
    data = load_train_data(cfg["task"], 0, 0.1)
    enc = encode(tok, data.train, data, 512, True)
    ids, labels, mask = collate(enc, list(range(8)), tok.pad_token_id)
    assert mask.sum() < mask.numel()  # rows of different lengths: padding is exercised
    p = shared_prefix_len(ids, labels, mask)
    assert 0 < p < int((labels != -100).float().argmax(1).min())
    grads, losses = [], []
    for share in (False, True):
        model.zero_grad()
        loss, n = completion_loss(model, ids, labels, mask, None, share_prefix=share)
        loss.backward()
        losses.append((loss.item(), n))
        grads.append({k: v.grad.clone() for k, v in model.named_parameters() if v.requires_grad})
    assert losses[0][1] == losses[1][1] and losses[0][0] == pytest.approx(losses[1][0], rel=1e-5)
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-4, atol=1e-6)
    # a batch whose rows share nothing (or one row) falls back to the plain pass
    assert shared_prefix_len(ids[:1], labels[:1], mask[:1]) == 0


def test_top_layers_adapts_only_the_top_decoder_layers(toy, tiny_spec):
    from harness.train import PRECISIONS, build_peft_model

    cfg = cfg_for(toy, "lora.top_layers=1")
    model = build_peft_model(cfg, tiny_spec, "cpu", PRECISIONS["fp32"])
    total = model.config.num_hidden_layers
    adapted = {int(n.split(".layers.")[1].split(".")[0]) for n, _ in model.named_parameters() if "lora_A" in n}
    assert adapted == {total - 1}
    every = build_peft_model(cfg_for(toy), tiny_spec, "cpu", PRECISIONS["fp32"])
    assert {int(n.split(".layers.")[1].split(".")[0]) for n, _ in every.named_parameters() if "lora_A" in n} \
        == set(range(total))


@pytest.mark.parametrize("value", ["0", "99", "true", "half"])
def test_top_layers_out_of_range_is_a_clear_error_before_training(toy, tmp_path, capsys, value):
    rc = cli(["train", *FAST, f"task.path={toy}", f"lora.top_layers={value}", "train.max_steps=1",
              f"run_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert rc == 2 and "lora.top_layers" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "adapter").exists()
