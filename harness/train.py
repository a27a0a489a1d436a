"""Train one LoRA/QLoRA adapter, keeping the weights from the step with the lowest validation loss.

Shaped like torchtune's single-device LoRA recipe: `LoRARecipe.setup()` (config, data, model, optimizer,
resume) -> `validate()` / `train_epoch()` until done -> `save()` (best adapter, curves, metrics, status last).
Progress lives in one `TrainState`, which is also what a checkpoint stores next to the weights.

Speed on CPU comes from: no gradient checkpointing, the LM head computed only at supervised positions
(the 49k vocabulary dominates a 135M model), length-grouped batches with dynamic padding, one plain torch
loop, and bf16 only where the CPU has it natively (frozen base weights stored in bf16, LoRA weights and
optimizer in fp32). bench/train_throughput.py measures each choice against TRL's SFTTrainer.
"""
from __future__ import annotations

import math
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.checkpoint import (StepBoundary, latest_checkpoint, load_checkpoint, load_trainable_state,
                                refuse_foreign_checkpoint, save_checkpoint, trainable_state)
from harness.config import dump_yaml, redact
from harness.io import UserError, atomic_dir, read_json, sha256_file, stable_hash, write_json
from harness.precision import PRECISIONS, Precision, cpu_has_native_bf16, resolve_precision  # noqa: F401
from harness.prompts import DEFAULT_CHAT_TEMPLATE_KWARGS, chat_format, stop_token_ids
from harness.replay import RUN_FILE, prompts_path, replay_examples
from harness.runs import load_run, read_status, write_status
from harness.threads import set_torch_threads
from harness.train_data import (TrainData, collate, encode, encode_replay, load_train_data,  # noqa: F401
                                 make_batches)
from harness.train_log import Logger, Progress, Tracker, manifest, plot_curves, say

PRESET_TARGETS = {
    "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mlp": ["gate_proj", "up_proj", "down_proj"],
    "all-linear": "all-linear",
}
RUN_ID_KEYS = ("model", "task", "lora", "train", "quant", "seed")
FINAL_STATUSES = ("complete", "pruned")
QUANTS = ("none", "nf4")  # quant: the base as trained (full precision, or 4-bit for QLoRA)


class TrainingDiverged(RuntimeError):
    """Loss became NaN or inf."""


# ----------------------------------------------------------------------------- component tables

SCHEDULES: dict[str, Callable[[float], float]] = {  # progress after warmup (0..1) -> lr factor
    "cosine": lambda p: 0.5 * (1.0 + math.cos(math.pi * min(1.0, p))),
    "linear": lambda p: max(0.0, 1.0 - p),
    "constant": lambda p: 1.0,
}


def load_base(cfg: dict, spec, device: str, precision: Precision):
    """Quantization table: none -> full-precision base; nf4 -> 4-bit base (bitsandbytes) prepared for k-bit training."""
    from harness.models import load_model

    quant = cfg.get("quant") or "none"
    checkpointing = bool(cfg["train"].get("gradient_checkpointing"))
    if quant == "nf4":
        from harness.quant import prepare_qlora_base

        return prepare_qlora_base(load_model(spec, device=device, quant="nf4"), checkpointing)
    if quant not in QUANTS:
        raise UserError(f"quant: unknown value {quant!r} ({', '.join(QUANTS)})")
    model = load_model(spec, device=device, dtype="float32")
    if precision.base_dtype != "float32":
        import torch

        # only the decoder's frozen matmul weights: embeddings/LM head, norms and the residual stream stay fp32
        for layer in model.get_decoder().layers:
            for mod in layer.modules():
                if isinstance(mod, torch.nn.Linear):
                    mod.to(getattr(torch, precision.base_dtype))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return model


# ----------------------------------------------------------------------------- identity


def _identity_settings(cfg: dict) -> dict:
    """The settings that define a run. train.replay at 0 (off) is left out, so runs made before the key existed
    keep their ids (a finished run is still found, an interrupted one still resumes); so is the default
    model.chat_template_kwargs."""
    ident = {k: cfg.get(k) for k in RUN_ID_KEYS}
    if isinstance(ident.get("train"), dict) and not ident["train"].get("replay"):
        ident["train"] = {k: v for k, v in ident["train"].items() if k != "replay"}
    if isinstance(ident.get("model"), dict) and ident["model"].get("chat_template_kwargs") == DEFAULT_CHAT_TEMPLATE_KWARGS:
        ident["model"] = {k: v for k, v in ident["model"].items() if k != "chat_template_kwargs"}  # the default
    return ident


def config_identity(cfg: dict) -> str:
    """Hash of the settings that define a run (model, task, LoRA, training, quantization, seed)."""
    return stable_hash(_identity_settings(cfg), 12)


def run_identity(cfg: dict, data: TrainData, model_identity: str) -> str:
    """A run's id: hash of its resolved training config, its data (replay prompts included) and its base model."""
    ident = _identity_settings(cfg)
    ident["data"] = {k: sha256_file(v) for k, v in sorted(data.files.items())}
    ident["model_identity"] = model_identity
    return stable_hash(ident, 12)



# ----------------------------------------------------------------------------- model and loss


def top_layers(n: int | None, total: int) -> list[int] | None:
    """Indices of the top `n` decoder layers (None = every layer). Adapting only the top layers also ends the
    backward pass there: on a 2-core CPU that is the cheapest way to train fewer FLOPs per step."""
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= total:
        raise UserError(f"lora.top_layers: expected an integer in [1, {total}] (the model has {total} layers) or null, "
                        f"got {n!r}")
    return list(range(total - n, total))


def build_peft_model(cfg: dict, spec, device: str, precision: Precision | None = None):
    from peft import LoraConfig, get_peft_model

    precision = precision or PRECISIONS["fp32"]
    model = load_base(cfg, spec, device, precision)
    lcfg = cfg["lora"]
    targets = lcfg.get("target_modules", "all-linear")
    if isinstance(targets, str):
        if targets not in PRESET_TARGETS:
            raise UserError(f"lora.target_modules: unknown preset {targets!r} (attention, mlp, all-linear, or a list)")
        targets = PRESET_TARGETS[targets]
    layers = top_layers(lcfg.get("top_layers"), model.config.num_hidden_layers)
    if layers is not None and isinstance(targets, str):  # PEFT needs names with layers_to_transform
        import torch

        targets = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                          if isinstance(m, torch.nn.Linear) and ".layers." in n})
    lora = LoraConfig(
        r=int(lcfg["r"]), lora_alpha=float(lcfg["alpha"]), lora_dropout=float(lcfg.get("dropout", 0.0)),
        target_modules=targets, bias=lcfg.get("bias", "none"), task_type="CAUSAL_LM",
        layers_to_transform=layers,
    )
    try:
        peft_model = get_peft_model(model, lora)  # LoRA weights are fp32 whatever the base dtype
    except ValueError as exc:
        raise UserError(f"lora.target_modules: {exc}") from None
    if precision.autocast:
        # keep LoRA inputs in the compute dtype: PEFT would otherwise keep an fp32 copy of every input for backward
        for mod in peft_model.modules():
            if hasattr(mod, "cast_input_dtype_enabled"):
                mod.cast_input_dtype_enabled = False
    if (cfg.get("quant") or "none") == "nf4":
        from harness.quant import fix_cpu_linear4bit

        fix_cpu_linear4bit(peft_model)
    return peft_model


def _autocast(device_type: str, precision: Precision | None):
    import contextlib

    import torch

    if precision is None or precision.autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=getattr(torch, precision.autocast))


def shared_prefix_len(ids, labels, mask) -> int:
    """Length of the token prefix every row of the batch shares and nothing supervises (the system prompt and
    chat preamble: 82 of the demo's ~141 tokens). completion_loss runs it once instead of once per row."""
    if ids.shape[0] < 2:
        return 0
    same = ((ids == ids[:1]) & (mask == 1)).all(0)
    n = int(same.long().cumprod(0).sum())
    supervised = (labels != -100).any(0).nonzero()
    first_sup = int(supervised[0]) if len(supervised) else ids.shape[1]
    return max(0, min(n, first_sup - 1, ids.shape[1] - 1))


def completion_loss(model, ids, labels, mask, precision: Precision | None = None, share_prefix: bool = True
                    ) -> tuple[Any, int]:
    """Summed cross-entropy over supervised positions, with the LM head applied only there (in fp32).

    With `share_prefix`, the rows' common unsupervised prefix goes through the decoder once and its keys/values
    are broadcast to every row (same result: causal attention never lets the prefix see what follows it; only
    LoRA dropout on those tokens is drawn once for the batch instead of once per row)."""
    import torch
    import torch.nn.functional as F

    base = model.get_base_model()
    decoder = base.get_decoder()
    p = shared_prefix_len(ids, labels, mask) if share_prefix else 0
    with _autocast(ids.device.type, precision):
        if p:
            from transformers import DynamicCache

            cache = DynamicCache(config=base.config)
            decoder(input_ids=ids[:1, :p], cache=cache, use_cache=True)
            cache.batch_repeat_interleave(ids.shape[0])
            positions = torch.arange(p, ids.shape[1], device=ids.device).unsqueeze(0).expand(ids.shape[0], -1)
            hidden = decoder(input_ids=ids[:, p:], attention_mask=mask, position_ids=positions, cache=cache,
                             use_cache=True).last_hidden_state
        else:
            hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state
    target = labels[:, p + 1:]  # hidden[:, j] predicts token p + j + 1
    sel = target != -100
    h = hidden[:, :-1][sel]
    head = base.get_output_embeddings()
    logits = F.linear(h.to(head.weight.dtype), head.weight).float()  # fp32 head: bf16 logits would blur the loss
    return F.cross_entropy(logits, target[sel], reduction="sum"), int(sel.sum())


def validation_loss(model, encoded, batch_size, pad_id, device, precision: Precision | None = None,
                    share_prefix: bool = True) -> float:
    """Mean per-token completion loss over `encoded`, in inference mode, batches sorted by length."""
    import torch

    model.eval()
    total, count = 0.0, 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    with torch.inference_mode():
        for i in range(0, len(order), batch_size):
            ids, labels, mask = (t.to(device) for t in collate(encoded, order[i:i + batch_size], pad_id))
            loss, n = completion_loss(model, ids, labels, mask, precision, share_prefix)
            total += float(loss)
            count += n
    model.train()
    return total / max(count, 1)


# ----------------------------------------------------------------------------- state and checkpoints


@dataclass
class TrainState:
    """Everything the loop knows about its progress; a checkpoint is this plus weights and optimizer."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # next batch index within the epoch
    tokens: int = 0  # non-pad tokens seen
    wall: float = 0.0  # seconds, validation included
    eval_time: float = 0.0
    train_curve: list[dict] = field(default_factory=list)
    val_curve: list[dict] = field(default_factory=list)
    best_val: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stop_reason: str | None = None  # "early" (patience ran out) | "pruned" (should_stop said so)

    @property
    def improved(self) -> bool:
        """False when validation loss never went below its first (untrained adapter = base model) value."""
        return bool(self.val_curve) and self.best_val is not None and self.best_val < self.val_curve[0]["loss"]


# ----------------------------------------------------------------------------- the recipe


@dataclass
class TrainResult:
    run_dir: Path
    run_id: str
    status: str  # complete | pruned
    metrics: dict = field(default_factory=dict)
    skipped: bool = False


class LoRARecipe:
    """One run: setup() -> run() (validate / train_epoch until done) -> save(). Hooks: should_stop(step, val_loss)
    after each validation (True = pruned), on_step(state) after each optimizer step (tests inject faults there)."""

    def __init__(self, cfg: dict, run_dir: Path, run_id: str, spec, data: TrainData, quiet: bool = False,
                 should_stop: Callable[[int, float], bool] | None = None,
                 on_step: Callable[[TrainState], None] | None = None):
        self.cfg, self.tcfg, self.run_dir, self.run_id = cfg, cfg["train"], run_dir, run_id
        self.spec, self.data, self.quiet = spec, data, quiet
        self.should_stop, self.on_step = should_stop, on_step
        self.seed = int(cfg.get("seed", 0))
        self.ident = {"run_id": run_id, "config_id": config_identity(cfg)}
        self.state = TrainState()
        self.best: dict | None = None

    # --- setup
    def setup(self) -> None:
        import torch

        from harness.models import default_device, load_tokenizer

        refuse_foreign_checkpoint(self.run_dir, self.run_id, self.cfg, RUN_ID_KEYS)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(dump_yaml(redact(self.cfg)))
        write_status(self.run_dir, "running", run_id=self.run_id)
        self.log = Logger(self.run_dir / "train.log", self.quiet)
        t = self.tcfg
        self.device = default_device()
        tok = load_tokenizer(self.spec)
        self.prompt_format = chat_format(tok)
        for note in self.prompt_format.notes:  # system merged into the user turn, no template, template kwargs
            self.log(note)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        max_length = int(t.get("max_length") or self.spec.max_length)
        self.train_enc = encode(tok, self.data.train, self.data, max_length, bool(t.get("completion_only", True)))
        self.val_enc = encode(tok, self.data.val, self.data, max_length, True)
        if not self.train_enc:
            raise UserError(f"task {self.data.task_name}: no training example has a completion left after "
                            f"truncation to {max_length} tokens (train.max_length)")
        # replay rows go last (make_batches spreads them); validation stays on the task's val split only
        self.replay_share = float(t.get("replay") or 0.0)
        replay_enc = encode_replay(tok, self._replay_examples(len(self.train_enc)), max_length)
        self.n_replay = len(replay_enc)
        self.train_enc += replay_enc
        torch.manual_seed(self.seed)  # seeded after replay's generation, so replay=0 and replay>0 start alike
        random.seed(self.seed)
        if self.device == "cpu":
            set_torch_threads(t.get("threads"), lambda: max(1, os.cpu_count() or 1))
        self.precision = resolve_precision(str(t.get("precision", "auto")), self.device)
        if (self.cfg.get("quant") or "none") == "nf4":
            self.precision = PRECISIONS["fp32"]  # bitsandbytes picks its own compute dtype
        self.model = build_peft_model(self.cfg, self.spec, self.device, self.precision)
        # a shared-prefix cache needs use_cache, which gradient checkpointing turns off
        self.share_prefix = bool(t.get("share_prefix", True)) and not t.get("gradient_checkpointing")
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        man = manifest(self.cfg, self.run_id, self.ident["config_id"], self.spec, self.data, self.device, self.seed,
                       self.precision.name)
        man["prompt_format"] = {**self.prompt_format.describe(),
                                "stop_token_ids": sorted(stop_token_ids(tok, self.model.generation_config))}
        if self.replay_share:
            man["replay"] = {"share": self.replay_share, "examples": self.n_replay, "file": RUN_FILE}
        write_json(self.run_dir / "manifest.json", man)
        self.bs, self.accum = int(t["batch_size"]), int(t.get("grad_accum", 1))
        steps_per_epoch = math.ceil(math.ceil(len(self.train_enc) / self.bs) / self.accum)
        max_steps = int(t.get("max_steps", -1) or -1)
        self.total_steps = max_steps if max_steps > 0 else steps_per_epoch * int(t.get("epochs", 1))
        self.max_epochs = 10**6 if max_steps > 0 else int(t.get("epochs", 1))
        self.optimizer = torch.optim.AdamW(self.trainable, lr=float(t["lr"]), weight_decay=float(t.get("weight_decay", 0.0)))
        self.scheduler = self._scheduler(str(t.get("lr_scheduler", "cosine")),
                                         int(round(float(t.get("warmup_ratio", 0.0)) * self.total_steps)))
        found = latest_checkpoint(self.run_dir / "checkpoints")
        if found is not None:
            saved, self.best = load_checkpoint(found[0], found[1], self.model, self.optimizer, self.scheduler)
            self.state = TrainState(**saved)
            st = self.state
            self.log(f"resuming run {self.run_id} from step {st.step} (epoch {st.epoch}, batch {st.batch})")
        else:
            replay = f" + {self.n_replay} replay" if self.replay_share else ""
            self.log(f"run {self.run_id}: {len(self.train_enc) - self.n_replay} train{replay} / {len(self.val_enc)} val examples, "
                     f"{self.total_steps} steps, trainable params {sum(p.numel() for p in self.trainable):,}, "
                     f"device {self.device}, precision {self.precision.name}")
        self.tracker = Tracker(self.cfg, self.run_dir, self.run_id)

    def _replay_examples(self, n_train: int) -> list:
        """train.replay's general examples answered by the base model (harness.replay); [] when off."""
        if not self.replay_share:
            return []
        return replay_examples(self.run_dir, self.cfg["model"], self.spec.identity, self.replay_share, n_train,
                               self.seed, int(self.tcfg.get("threads") or 0) or None, self.log)

    def _scheduler(self, kind: str, warmup: int):
        import torch

        if kind not in SCHEDULES:
            raise UserError(f"train.lr_scheduler: unknown value {kind!r} ({', '.join(SCHEDULES)})")
        shape, total = SCHEDULES[kind], self.total_steps

        def factor(step: int) -> float:
            if warmup and step < warmup:
                return (step + 1) / warmup
            return shape((step - warmup) / max(1, total - warmup))

        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    # --- validate
    def validate(self) -> None:
        """Validation loss; keeps the best weights; sets stop_reason when patience runs out or should_stop says so."""
        import time

        st, t0 = self.state, time.perf_counter()
        v = validation_loss(self.model, self.val_enc, self.bs * 2, self.pad_id, self.device, self.precision,
                            self.share_prefix)
        st.eval_time += time.perf_counter() - t0
        if not math.isfinite(v):
            raise TrainingDiverged(f"validation loss is {v} at step {st.step}")
        st.val_curve.append({"step": st.step, "loss": v})
        self.tracker.log({"val/loss": v}, st.step)
        if st.best_val is None or v < st.best_val - float(self.tcfg.get("min_delta", 0.0)):
            st.best_val, st.best_step, st.bad_evals = v, st.step, 0
            self.best = trainable_state(self.model)
        else:
            st.bad_evals += 1
        self.log(f"step {st.step}: val loss {v:.4f} (best {st.best_val:.4f} @ {st.best_step})")
        patience = int(self.tcfg.get("patience", 0) or 0)
        if self.should_stop is not None and self.should_stop(st.step, v):
            st.stop_reason = "pruned"
            self.log(f"pruned at step {st.step}: should_stop said so")
        elif patience > 0 and st.bad_evals >= patience:
            st.stop_reason = "early"
            self.log(f"early stopping at step {st.step}: no improvement in {patience} evaluations")

    # --- train
    def train_step(self, group: list[list[int]]) -> float:
        """One optimizer step over `accum` micro-batches; loss normalised by the step's supervised tokens."""
        import torch

        st = self.state
        tensors = [tuple(t.to(self.device) for t in collate(self.train_enc, rows, self.pad_id)) for rows in group]
        n_sup = max(1, sum(int((labels[:, 1:] != -100).sum()) for _, labels, _ in tensors))
        step_loss = 0.0
        for ids, labels, mask in tensors:
            loss, _ = completion_loss(self.model, ids, labels, mask, self.precision, self.share_prefix)
            (loss / n_sup).backward()
            step_loss += float(loss.detach())
            st.tokens += int(mask.sum())
        step_loss /= n_sup
        if not math.isfinite(step_loss):
            raise TrainingDiverged(f"training loss is {step_loss} at step {st.step + 1}")
        torch.nn.utils.clip_grad_norm_(self.trainable, float(self.tcfg.get("max_grad_norm", 1.0)))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return step_loss

    def finished(self) -> bool:
        st = self.state
        return st.stop_reason is not None or st.step >= self.total_steps or st.epoch >= self.max_epochs

    def train_epoch(self, bar: Progress, clock: Callable[[], float]) -> None:
        """Steps through the rest of the current epoch (from state.batch), validating and checkpointing on schedule.
        `in_step` is True from a step's first forward until its validation and epoch roll-over are done: a
        checkpoint is written only outside it, and a held Ctrl-C stops the run only there."""
        st, t = self.state, self.tcfg
        eval_every, ckpt_every = int(t.get("eval_every", 0) or 0), int(t.get("checkpoint_every", 0) or 0)
        batches = make_batches(self.train_enc, self.bs, self.seed, st.epoch, bool(t.get("group_by_length", True)),
                               self.n_replay)
        while st.batch < len(batches):
            self.in_step = True
            group = batches[st.batch:st.batch + self.accum]
            loss = self.train_step(group)
            st.batch += len(group)
            st.step += 1
            st.train_curve.append({"step": st.step, "loss": loss})
            st.wall = clock()
            self.tracker.log({"train/loss": loss, "train/lr": self.scheduler.get_last_lr()[0]}, st.step)
            bar.update(st.step, loss, st.tokens / max(st.wall - st.eval_time, 1e-9))
            end_of_epoch = st.batch >= len(batches)
            if (eval_every and st.step % eval_every == 0) or end_of_epoch or st.step >= self.total_steps:
                self.validate()
            if end_of_epoch:
                st.epoch, st.batch = st.epoch + 1, 0
            self.in_step = False
            if ckpt_every and st.step % ckpt_every == 0 and not self.finished():
                st.wall = clock()
                save_checkpoint(self.run_dir / "checkpoints", self.ident, asdict(st), self.model, self.optimizer,
                                self.scheduler, self.best)
            if self.on_step is not None:
                self.on_step(st)
            self.boundary.check()
            if end_of_epoch or self.finished():
                return

    def run(self) -> TrainResult:
        import time

        st = self.state
        t_start = time.perf_counter() - st.wall
        clock = lambda: time.perf_counter() - t_start  # noqa: E731
        self.model.train()
        self.in_step, self.boundary = True, StepBoundary()
        try:
            with self.boundary:
                if st.step == 0 and not st.val_curve:
                    self.validate()  # step 0: the untrained adapter (= the base model) is the baseline to beat
                self.in_step = False
                self.boundary.check()
                with Progress(self.quiet, self.total_steps, st.step) as bar:
                    while not self.finished():
                        self.train_epoch(bar, clock)
        except TrainingDiverged as exc:
            write_status(self.run_dir, "failed", error=str(exc), run_id=self.run_id)
            self.log(f"FAILED: {exc}")
            self.tracker.finish(1)
            err = UserError(f"{self.run_dir}: training diverged: {exc}", exit_code=1)
            err.run_dir = self.run_dir  # type: ignore[attr-defined]
            raise err from None
        except KeyboardInterrupt:
            st.wall = clock()
            if self.in_step:  # half a step (weights, RNG or curves part-way): resume from the last checkpoint
                found = latest_checkpoint(self.run_dir / "checkpoints")
                self.log("interrupted inside a training step: it is discarded; resume starts from "
                         + (f"step {found[1]['state']['step']}" if found else "the beginning"))
            else:
                save_checkpoint(self.run_dir / "checkpoints", self.ident, asdict(st), self.model, self.optimizer,
                                self.scheduler, self.best)
            write_status(self.run_dir, "interrupted", run_id=self.run_id)
            self.tracker.finish(1)
            raise
        st.wall = clock()
        return self.save()

    # --- save
    def save(self) -> TrainResult:
        """Best adapter, curves, metrics, then status last (a run is complete only once everything is on disk)."""
        st, run_dir = self.state, self.run_dir
        load_trainable_state(self.model, self.best)
        with atomic_dir(run_dir / "adapter") as tmp:
            self.model.save_pretrained(str(tmp), safe_serialization=True)
        curves = {"train": st.train_curve, "val": st.val_curve}
        write_json(run_dir / "curves.json", curves)
        plot_curves(curves, st.best_step, run_dir / "curves.png")
        metrics = {
            "best_val_loss": st.best_val, "best_step": st.best_step, "final_step": st.step,
            "initial_val_loss": st.val_curve[0]["loss"] if st.val_curve else None,
            "improved": st.improved, "stopped_early": st.stop_reason == "early", "pruned": st.stop_reason == "pruned",
            "train_time_s": round(st.wall, 3), "eval_time_s": round(st.eval_time, 3), "tokens_seen": st.tokens,
            # throughput of the optimisation steps only (validation passes excluded)
            "tokens_per_s": round(st.tokens / max(st.wall - st.eval_time, 1e-9), 2),
            "peak_mem_mb": round(_peak_mem_mb(self.device), 1),
            "trainable_params": sum(p.numel() for p in self.trainable),
            "adapter_bytes": sum(p.stat().st_size for p in (run_dir / "adapter").glob("*.safetensors")),
            "train_examples": len(self.train_enc) - self.n_replay, "replay_examples": self.n_replay,
            "val_examples": len(self.val_enc), "device": self.device,
            "precision": self.precision.name,
        }
        write_json(run_dir / "metrics.json", metrics)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        self.tracker.log({"best/val_loss": st.best_val, "best/step": st.best_step}, st.step)
        self.tracker.finish(0)
        status = "pruned" if st.stop_reason == "pruned" else "complete"
        write_status(run_dir, status, run_id=self.run_id)
        learned = "" if st.improved else " (did not learn: validation loss never went below its step-0 value)"
        self.log(f"{status}: best val loss {st.best_val:.4f} at step {st.best_step}{learned}; adapter in {run_dir / 'adapter'}")
        return TrainResult(run_dir, self.run_id, status, metrics)


def train(cfg: dict, run_dir: str | Path | None = None, *, runs_root: str | Path | None = None, quiet: bool = False,
          should_stop: Callable[[int, float], bool] | None = None,
          on_step: Callable[[TrainState], None] | None = None) -> TrainResult:
    """Train one adapter as configured; idempotent (complete/pruned runs are skipped) and resumable.

    The run directory is `run_dir`, else cfg.run_dir, else <runs_root>/<run-id>, else runs/<task>-<run-id>.
    `should_stop(step, val_loss) -> bool` is called after each validation; True ends the run as "pruned"
    (curves and the best-so-far adapter kept). `on_step(state)` is called after each optimizer step.
    """
    from harness.models import load_tokenizer, resolve_model

    seed = int(cfg.get("seed", 0))
    spec = resolve_model(cfg["model"])
    load_tokenizer(spec)  # a chat template that cannot format a conversation stops here, before any run dir
    data = load_train_data(cfg["task"], seed, float(cfg["train"].get("val_fraction", 0.1)))
    if cfg["train"].get("replay"):
        data.files["replay_prompts"] = str(prompts_path())  # in the run id and the manifest's data hashes
    run_id = run_identity(cfg, data, spec.identity)
    if not run_dir and not cfg.get("run_dir"):
        run_dir = Path(runs_root) / run_id if runs_root else Path("runs") / f"{data.task_name}-{run_id}"
    run_dir = Path(run_dir or cfg["run_dir"])
    status = read_status(run_dir).get("status")
    if status in FINAL_STATUSES:
        if load_run(run_dir).manifest.get("run_id") == run_id:
            say(False, f"run {run_id} is already {status} in {run_dir}: nothing to do")  # said even when quiet
            return TrainResult(run_dir, run_id, status, read_json(run_dir / "metrics.json"), skipped=True)
        raise UserError(f"{run_dir}: holds a {status} run with a different config; choose another run_dir")
    recipe = LoRARecipe(cfg, run_dir, run_id, spec, data, quiet, should_stop, on_step)
    try:
        recipe.setup()
        return recipe.run()
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as exc:  # OOM, bad config deep inside a library...: the run is failed, not half-complete
        if (run_dir / "config.yaml").is_file():
            write_status(run_dir, "failed", error=f"{type(exc).__name__}: {exc}"[:2000], run_id=run_id)
        exc.run_dir = run_dir  # type: ignore[attr-defined]
        raise


def _peak_mem_mb(device: str) -> float:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
