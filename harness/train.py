"""Train one LoRA/QLoRA adapter, keeping the weights from the step with the lowest validation loss.

Reads top to bottom: setup (config, data, model) -> train loop (validation every N steps,
checkpoints, early stopping) -> save (best adapter, curves, metrics, status last).

Speed on CPU comes from: no gradient checkpointing, the LM head computed only at supervised
positions (the 49k vocabulary dominates a 135M model), length-grouped batches with dynamic
padding, and one plain torch loop; bf16 autocast is opt-in on CPU (train.precision=bf16: faster,
but its loss drifts from fp32) and the default on CUDA.
"""
from __future__ import annotations

import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from harness.config import dump_yaml, redact
from harness.example import Example
from harness.io import UserError, atomic_dir, read_json, sha256_file, stable_hash, write_json
from harness.runs import load_run, read_status, write_status

PRESET_TARGETS = {
    "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mlp": ["gate_proj", "up_proj", "down_proj"],
    "all-linear": "all-linear",
}
RUN_ID_KEYS = ("model", "task", "lora", "train", "quant", "seed")


class TrainingDiverged(RuntimeError):
    """Loss became NaN or inf."""


# ----------------------------------------------------------------------------- setup


@dataclass
class TrainData:
    train: list[Example]
    val: list[Example]
    system_prompt: str | None
    prompt_template: str
    files: dict[str, str]  # split -> path
    task_name: str
    task_version: Any = None


def load_train_data(task_cfg: dict, seed: int, val_fraction: float) -> TrainData:
    from harness.tasks import load_task

    task = load_task(task_cfg.get("path") or task_cfg["name"])
    train = task.load_split("train")
    files = {"train": str(task.data["train"])}
    if task.data.get("val"):
        val = task.load_split("val")
        files["val"] = str(task.data["val"])
    else:
        rng = random.Random(seed)
        order = list(range(len(train)))
        rng.shuffle(order)
        n_val = max(1, int(len(train) * val_fraction))
        val = [train[i] for i in order[:n_val]]
        train = [train[i] for i in order[n_val:]]
    if not train or not val:
        raise UserError(f"task {task.name}: needs non-empty train and validation data")
    return TrainData(train, val, task.system_prompt, task.prompt_template, files, task.name, task.version)


def run_identity(cfg: dict, data: TrainData, model_identity: str) -> str:
    """A run's id: hash of its resolved training config, its data and its base model."""
    ident = {k: cfg.get(k) for k in RUN_ID_KEYS}
    ident["data"] = {k: sha256_file(v) for k, v in sorted(data.files.items())}
    ident["model_identity"] = model_identity
    return stable_hash(ident, 12)


def encode(tokenizer, examples: Sequence[Example], data: TrainData, max_length: int, completion_only: bool) -> list[dict]:
    from harness.prompts import tokenize_for_training

    out = []
    for ex in examples:
        enc = tokenize_for_training(
            tokenizer, ex, system_prompt=data.system_prompt, prompt_template=data.prompt_template,
            max_length=max_length, completion_only=completion_only,
        )
        if sum(1 for x in enc["labels"][1:] if x != -100) == 0:
            continue  # nothing to learn (completion truncated away)
        out.append(enc)
    return out


def make_batches(encoded: list[dict], batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[list[int]]:
    """Deterministic batch order for an epoch (so resume replays it exactly)."""
    rng = random.Random(seed * 1000 + epoch)
    idx = list(range(len(encoded)))
    rng.shuffle(idx)
    if group_by_length:
        chunk = batch_size * 16
        grouped = []
        for i in range(0, len(idx), chunk):
            grouped += sorted(idx[i:i + chunk], key=lambda j: len(encoded[j]["input_ids"]))
        idx = grouped
    batches = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def collate(encoded: list[dict], rows: list[int], pad_id: int):
    import torch

    width = max(len(encoded[r]["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        seq = encoded[r]["input_ids"]
        ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, : len(seq)] = torch.tensor(encoded[r]["labels"])
        mask[i, : len(seq)] = 1
    return ids, labels, mask


def build_peft_model(cfg: dict, spec, device: str):
    import torch
    from peft import LoraConfig, get_peft_model

    from harness.models import load_model

    quant = cfg.get("quant") or "none"
    tcfg = cfg["train"]
    if quant == "nf4":
        from harness.quant import prepare_qlora_base

        model = prepare_qlora_base(spec, device, gradient_checkpointing=bool(tcfg.get("gradient_checkpointing")))
    else:
        model = load_model(spec, device=device, dtype="float32")
        if tcfg.get("gradient_checkpointing"):
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
    lcfg = cfg["lora"]
    targets = lcfg.get("target_modules", "all-linear")
    if isinstance(targets, str):
        if targets not in PRESET_TARGETS:
            raise UserError(f"lora.target_modules: unknown preset {targets!r} (attention, mlp, all-linear, or a list)")
        targets = PRESET_TARGETS[targets]
    lora = LoraConfig(
        r=int(lcfg["r"]), lora_alpha=float(lcfg["alpha"]), lora_dropout=float(lcfg.get("dropout", 0.0)),
        target_modules=targets, bias=lcfg.get("bias", "none"), task_type="CAUSAL_LM",
    )
    try:
        peft_model = get_peft_model(model, lora)
    except ValueError as exc:
        raise UserError(f"lora.target_modules: {exc}") from None
    if quant == "nf4":
        from harness.quant import fix_cpu_linear4bit

        fix_cpu_linear4bit(peft_model)
    return peft_model


def autocast_dtype(precision: str, device: str):
    import torch

    if precision == "fp32":
        return None
    if precision in ("bf16", "auto"):
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
        # CPU: bf16 autocast is 1.18x faster here but its validation loss after 20 steps was 7.8% off the fp32
        # reference (bench/train_throughput.py), over the 2% we allow by default: opt in with precision=bf16.
        if precision == "bf16":
            if not _cpu_has_bf16():
                print("warning: this CPU has no native bf16 (avx512_bf16/amx_bf16): bf16 autocast will be slow",
                      file=sys.stderr)
            return torch.bfloat16
        return None
    raise UserError(f"train.precision: unknown value {precision!r} (auto, fp32, bf16)")


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# ----------------------------------------------------------------------------- loss


def completion_loss(model, ids, labels, mask, amp_dtype) -> tuple[Any, int]:
    """Summed cross-entropy over supervised positions, with the LM head applied only there."""
    import torch
    import torch.nn.functional as F

    base = model.get_base_model()
    decoder = base.get_decoder()
    head = base.get_output_embeddings()
    ctx = torch.autocast(ids.device.type, dtype=amp_dtype) if amp_dtype is not None else _null()
    with ctx:
        hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state
        target = labels[:, 1:]
        sel = target != -100
        h = hidden[:, :-1][sel]
        logits = head(h)
    n = int(sel.sum())
    loss = F.cross_entropy(logits.float(), target[sel], reduction="sum")
    return loss, n


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def validation_loss(model, encoded, batch_size, pad_id, device, amp_dtype) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    with torch.no_grad():
        for i in range(0, len(order), batch_size):
            ids, labels, mask = (t.to(device) for t in collate(encoded, order[i:i + batch_size], pad_id))
            loss, n = completion_loss(model, ids, labels, mask, amp_dtype)
            total += float(loss)
            count += n
    model.train()
    return total / max(count, 1)


# ----------------------------------------------------------------------------- checkpoints


def trainable_state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def load_trainable_state(model, state: dict) -> None:
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in state.items():
            params[k].copy_(v)


def save_checkpoint(ckpt_dir: Path, model, optimizer, scheduler, best_state, progress: dict) -> None:
    import torch
    from safetensors.torch import save_file

    with atomic_dir(ckpt_dir) as tmp:
        save_file({k: v.contiguous() for k, v in trainable_state(model).items()}, str(tmp / "trainable.safetensors"))
        if best_state is not None:
            save_file({k: v.contiguous() for k, v in best_state.items()}, str(tmp / "best.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state()}, tmp / "optim.pt")
        (tmp / "progress.json").write_text(json.dumps(progress, indent=1))


def load_checkpoint(ckpt_dir: Path, model, optimizer, scheduler):
    import torch
    from safetensors.torch import load_file

    load_trainable_state(model, load_file(str(ckpt_dir / "trainable.safetensors")))
    best = load_file(str(ckpt_dir / "best.safetensors")) if (ckpt_dir / "best.safetensors").is_file() else None
    st = torch.load(ckpt_dir / "optim.pt", weights_only=True)
    optimizer.load_state_dict(st["optimizer"])
    scheduler.load_state_dict(st["scheduler"])
    torch.set_rng_state(st["torch_rng"])
    return best, json.loads((ckpt_dir / "progress.json").read_text())


# ----------------------------------------------------------------------------- the recipe


@dataclass
class TrainResult:
    run_dir: Path
    run_id: str
    status: str
    metrics: dict = field(default_factory=dict)
    skipped: bool = False


def train(cfg: dict, run_dir: str | Path | None = None, *, runs_root: str | Path | None = None,
          quiet: bool = False, should_stop=None) -> TrainResult:
    """Train one adapter as configured; idempotent (complete runs are skipped) and resumable.

    The run directory is `run_dir`, else cfg.run_dir, else <runs_root>/<run-id>, else runs/<task>-<run-id>.
    `should_stop(step, val_loss) -> bool` is called after each validation; True ends the run as "pruned"
    (curves and the best-so-far adapter kept).
    """
    from harness.models import resolve_model

    tcfg = cfg["train"]
    seed = int(cfg.get("seed", 0))
    spec = resolve_model(cfg["model"])
    data = load_train_data(cfg["task"], seed, float(tcfg.get("val_fraction", 0.1)))
    run_id = run_identity(cfg, data, spec.identity)
    if not run_dir and not cfg.get("run_dir"):
        run_dir = Path(runs_root) / run_id if runs_root else Path("runs") / f"{data.task_name}-{run_id}"
    run_dir = Path(run_dir or cfg["run_dir"])
    try:
        return _train_run(cfg, run_dir, run_id, spec, data, quiet, should_stop)
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as exc:  # OOM, bad config deep inside a library...: the run is failed, not half-complete
        if (run_dir / "config.yaml").is_file():
            write_status(run_dir, "failed", error=f"{type(exc).__name__}: {exc}"[:2000], run_id=run_id)
        exc.run_dir = run_dir  # type: ignore[attr-defined]
        raise


def _train_run(cfg: dict, run_dir: Path, run_id: str, spec, data: TrainData, quiet: bool, should_stop=None) -> TrainResult:
    import torch

    from harness.models import default_device, load_tokenizer

    # --- setup
    tcfg = cfg["train"]
    seed = int(cfg.get("seed", 0))
    status = read_status(run_dir).get("status")
    if status in ("complete", "pruned") and load_run(run_dir).manifest.get("run_id") == run_id:
        _say(False, f"run {run_id} is already {status} in {run_dir}: nothing to do")  # said even when quiet: a skip must show
        return TrainResult(run_dir, run_id, status, read_json(run_dir / "metrics.json"), skipped=True)
    if status in ("complete", "pruned"):
        raise UserError(f"{run_dir}: holds a complete run with a different config; choose another run_dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    write_status(run_dir, "running", run_id=run_id)
    log = _Logger(run_dir / "train.log", quiet)

    device = default_device()
    torch.manual_seed(seed)
    random.seed(seed)
    if device == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    tok = load_tokenizer(spec)
    max_length = int(tcfg.get("max_length") or spec.max_length)
    completion_only = bool(tcfg.get("completion_only", True))
    train_enc = encode(tok, data.train, data, max_length, completion_only)
    val_enc = encode(tok, data.val, data, max_length, True)
    model = build_peft_model(cfg, spec, device)
    amp = autocast_dtype(str(tcfg.get("precision", "auto")), device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    manifest = _manifest(cfg, run_id, spec, data, device, seed, amp)
    write_json(run_dir / "manifest.json", manifest)

    bs, accum = int(tcfg["batch_size"]), int(tcfg.get("grad_accum", 1))
    epochs = int(tcfg.get("epochs", 1))
    steps_per_epoch = math.ceil(math.ceil(len(train_enc) / bs) / accum)
    max_steps = int(tcfg.get("max_steps", -1) or -1)
    total_steps = max_steps if max_steps > 0 else steps_per_epoch * epochs
    max_epochs = 10**6 if max_steps > 0 else epochs
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=float(tcfg["lr"]),
                                  weight_decay=float(tcfg.get("weight_decay", 0.0)))
    scheduler = _scheduler(optimizer, str(tcfg.get("lr_scheduler", "cosine")),
                           int(round(float(tcfg.get("warmup_ratio", 0.0)) * total_steps)), total_steps)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0

    prog = {"step": 0, "epoch": 0, "batch": 0, "train": [], "val": [], "best_val": None, "best_step": None,
            "bad_evals": 0, "tokens": 0, "elapsed": 0.0, "stopped_early": False}
    best_state = None
    ckpt = run_dir / "checkpoints" / "last"
    if (ckpt / "progress.json").is_file():
        best_state, prog = load_checkpoint(ckpt, model, optimizer, scheduler)
        log(f"resuming run {run_id} from step {prog['step']} (epoch {prog['epoch']}, batch {prog['batch']})")
    else:
        log(f"run {run_id}: {len(train_enc)} train / {len(val_enc)} val examples, {total_steps} steps, "
            f"trainable params {trainable:,}, device {device}, autocast {amp}")
    tracker = _tracker(cfg, run_dir, run_id)
    eval_every = int(tcfg.get("eval_every", 0) or 0)
    patience = int(tcfg.get("patience", 0) or 0)
    min_delta = float(tcfg.get("min_delta", 0.0))
    ckpt_every = int(tcfg.get("checkpoint_every", 0) or 0)
    fault_step = int(os.environ.get("HARNESS_FAULT_KILL_AFTER_STEP", "0") or 0)

    def evaluate_and_track() -> bool:
        """Validation loss; keeps the best adapter weights. Returns True when patience ran out."""
        nonlocal best_state
        t_eval = time.perf_counter()
        v = validation_loss(model, val_enc, bs * 2, pad_id, device, amp)
        prog["eval_time"] = prog.get("eval_time", 0.0) + time.perf_counter() - t_eval
        if not math.isfinite(v):
            raise TrainingDiverged(f"validation loss is {v} at step {prog['step']}")
        prog["val"].append({"step": prog["step"], "loss": v})
        tracker.log({"val/loss": v}, prog["step"])
        if prog["best_val"] is None or v < prog["best_val"] - min_delta:
            prog["best_val"], prog["best_step"], prog["bad_evals"] = v, prog["step"], 0
            best_state = trainable_state(model)
        else:
            prog["bad_evals"] += 1
        log(f"step {prog['step']}: val loss {v:.4f} (best {prog['best_val']:.4f} @ {prog['best_step']})")
        if should_stop is not None and should_stop(prog["step"], v):
            prog["pruned"] = True
            log(f"pruned at step {prog['step']} by the caller's should_stop")
            return True
        return patience > 0 and prog["bad_evals"] >= patience

    # --- train
    model.train()
    t_start = time.perf_counter() - prog["elapsed"]
    try:
        if prog["step"] == 0 and not prog["val"]:
            evaluate_and_track()  # step 0: the untrained adapter is the baseline to beat
        with _progress(quiet, total_steps, prog["step"]) as bar:
            stop = prog["step"] >= total_steps or prog["stopped_early"] or prog.get("pruned", False)
            while not stop and prog["epoch"] < max_epochs:
                batches = make_batches(train_enc, bs, seed, prog["epoch"], bool(tcfg.get("group_by_length", True)))
                while prog["batch"] < len(batches) and not stop:
                    group = batches[prog["batch"]:prog["batch"] + accum]
                    tensors = [tuple(t.to(device) for t in collate(train_enc, rows, pad_id)) for rows in group]
                    n_sup = sum(int((labels[:, 1:] != -100).sum()) for _, labels, _ in tensors)
                    step_loss = 0.0
                    for ids, labels, mask in tensors:
                        loss, _ = completion_loss(model, ids, labels, mask, amp)
                        (loss / max(n_sup, 1)).backward()
                        step_loss += float(loss.detach())
                        prog["tokens"] += int(mask.sum())
                    step_loss /= max(n_sup, 1)
                    if not math.isfinite(step_loss):
                        raise TrainingDiverged(f"training loss is {step_loss} at step {prog['step'] + 1}")
                    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                                   float(tcfg.get("max_grad_norm", 1.0)))
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    prog["batch"] += len(group)
                    prog["step"] += 1
                    prog["train"].append({"step": prog["step"], "loss": step_loss})
                    elapsed = time.perf_counter() - t_start - prog.get("eval_time", 0.0)
                    tracker.log({"train/loss": step_loss, "train/lr": scheduler.get_last_lr()[0]}, prog["step"])
                    bar.update(prog["step"], step_loss, prog["tokens"] / max(elapsed, 1e-9))
                    end_of_epoch = prog["batch"] >= len(batches)
                    if (eval_every and prog["step"] % eval_every == 0) or end_of_epoch or prog["step"] >= total_steps:
                        if evaluate_and_track() and not prog.get("pruned"):
                            prog["stopped_early"] = True
                            log(f"early stopping at step {prog['step']}: no improvement in {patience} evaluations")
                            stop = True
                    stop = stop or prog.get("pruned", False) or prog["step"] >= total_steps
                    if end_of_epoch:
                        prog["epoch"] += 1
                        prog["batch"] = 0
                    if ckpt_every and prog["step"] % ckpt_every == 0 and not stop:
                        prog["elapsed"] = time.perf_counter() - t_start
                        save_checkpoint(ckpt, model, optimizer, scheduler, best_state, prog)
                    if fault_step and prog["step"] == fault_step:
                        os.kill(os.getpid(), signal.SIGKILL)  # test hook: simulate a crash after this step
                    if end_of_epoch:
                        break
    except TrainingDiverged as exc:
        write_status(run_dir, "failed", error=str(exc), run_id=run_id)
        log(f"FAILED: {exc}")
        tracker.finish(1)
        err = UserError(f"{run_dir}: training diverged: {exc}", exit_code=1)
        err.run_dir = run_dir  # type: ignore[attr-defined]
        raise err from None
    except KeyboardInterrupt:
        prog["elapsed"] = time.perf_counter() - t_start
        save_checkpoint(ckpt, model, optimizer, scheduler, best_state, prog)
        write_status(run_dir, "interrupted", run_id=run_id)
        tracker.finish(1)
        raise
    train_time = time.perf_counter() - t_start

    # --- save: best adapter, curves, metrics; status last
    load_trainable_state(model, best_state)
    with atomic_dir(run_dir / "adapter") as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
    adapter_bytes = sum(p.stat().st_size for p in (run_dir / "adapter").glob("*.safetensors"))
    curves = {"train": prog["train"], "val": prog["val"]}
    write_json(run_dir / "curves.json", curves)
    _plot_curves(curves, prog["best_step"], run_dir / "curves.png")
    metrics = {
        "best_val_loss": prog["best_val"], "best_step": prog["best_step"], "final_step": prog["step"],
        "initial_val_loss": prog["val"][0]["loss"] if prog["val"] else None,
        "stopped_early": prog["stopped_early"], "pruned": bool(prog.get("pruned")),
        # False: validation loss never went below its first (untrained) value, so the adapter equals the base
        "improved": bool(prog["val"]) and prog["best_val"] < prog["val"][0]["loss"],
        "train_time_s": round(train_time, 3),
        "eval_time_s": round(prog.get("eval_time", 0.0), 3), "tokens_seen": prog["tokens"],
        # throughput of the optimisation steps only (validation passes excluded)
        "tokens_per_s": round(prog["tokens"] / max(train_time - prog.get("eval_time", 0.0), 1e-9), 2),
        "peak_mem_mb": round(_peak_mem_mb(device), 1), "trainable_params": trainable, "adapter_bytes": adapter_bytes,
        "train_examples": len(train_enc), "val_examples": len(val_enc), "device": device,
        "autocast": str(amp).replace("torch.", "") if amp else "fp32",
    }
    write_json(run_dir / "metrics.json", metrics)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    tracker.log({"best/val_loss": prog["best_val"], "best/step": prog["best_step"]}, prog["step"])
    tracker.finish(0)
    final_status = "pruned" if prog.get("pruned") else "complete"
    write_status(run_dir, final_status, run_id=run_id)
    log(f"{final_status}: best val loss {prog['best_val']:.4f} at step {prog['best_step']}; adapter in {run_dir / 'adapter'}")
    return TrainResult(run_dir, run_id, final_status, metrics)


# ----------------------------------------------------------------------------- helpers


def _scheduler(optimizer, kind: str, warmup: int, total: int):
    import torch

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        raise UserError(f"train.lr_scheduler: unknown value {kind!r} (cosine, linear, constant)")

    factor(0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _peak_mem_mb(device: str) -> float:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _manifest(cfg, run_id, spec, data: TrainData, device, seed, amp) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    pkgs = {}
    for name in ("lora-harness", "torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes"):
        try:
            pkgs[name] = version(name)
        except PackageNotFoundError:
            pass
    return {
        "run_id": run_id,
        "base_model": {"name": spec.name, "path": str(spec.path), "identity": spec.identity},
        "task": {"name": data.task_name, "version": data.task_version},
        "data": {k: {"path": v, "sha256": sha256_file(v)} for k, v in data.files.items()},
        "packages": pkgs, "python": platform.python_version(), "git_commit": _git_commit(),
        "seed": seed, "device": device, "autocast": str(amp), "quant": cfg.get("quant") or "none", "pid": os.getpid(),
        "command": "harness train " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["train"] else None,
    }


def _plot_curves(curves: dict, best_step, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if curves["train"]:
        ax.plot([p["step"] for p in curves["train"]], [p["loss"] for p in curves["train"]], label="train", alpha=0.7)
    if curves["val"]:
        ax.plot([p["step"] for p in curves["val"]], [p["loss"] for p in curves["val"]], "o-", label="validation")
    if best_step is not None:
        ax.axvline(best_step, color="gray", ls="--", lw=1, label=f"best step {best_step}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (completion tokens)")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


class _Logger:
    def __init__(self, path: Path, quiet: bool):
        self.path, self.quiet = path, quiet

    def __call__(self, msg: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        _say(self.quiet, msg)


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        from rich.console import Console

        Console(stderr=True, highlight=False).print(msg)


class _progress:
    """A rich progress bar with step, loss, tokens/s and ETA (silent when quiet or not a TTY)."""

    def __init__(self, quiet: bool, total: int, start: int):
        self.quiet, self.total, self.start = quiet, total, start

    def __enter__(self):
        if not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.p = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                              TextColumn("{task.fields[tps]} tok/s"), TimeElapsedColumn(), TextColumn("ETA"),
                              TimeRemainingColumn(), transient=False)
            self.p.__enter__()
            self.task = self.p.add_task("train", total=self.total, completed=self.start, loss="-", tps="-")
        return self

    def update(self, step: int, loss: float, tps: float) -> None:
        if not self.quiet:
            self.p.update(self.task, completed=step, loss=f"{loss:.4f}", tps=f"{tps:.0f}")

    def __exit__(self, *a):
        if not self.quiet:
            self.p.__exit__(*a)
        return False


class _tracker:
    """wandb logging, offline by default (no account needed); `tracking.wandb=disabled` turns it off."""

    def __init__(self, cfg: dict, run_dir: Path, run_id: str):
        mode = str((cfg.get("tracking") or {}).get("wandb", "offline"))
        if os.environ.get("WANDB_MODE") == "disabled":
            mode = "disabled"
        self.run = None
        if mode == "disabled":
            return
        try:
            import wandb
        except ImportError:
            return
        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(project=(cfg.get("tracking") or {}).get("project", "lora-harness"), mode=mode,
                              dir=str(run_dir), name=run_id, id=run_id, resume="allow", config=redact(cfg),
                              reinit="finish_previous")

    def log(self, values: dict, step: int) -> None:
        if self.run is not None:
            self.run.log(values, step=step)

    def finish(self, code: int) -> None:
        if self.run is not None:
            self.run.finish(exit_code=code)
            self.run = None
