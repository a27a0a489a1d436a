"""Training throughput: `harness train` vs TRL's SFTTrainer, same model, data, LoRA settings and steps.

Each variant runs in its own child process (so peak RSS is its own), all from this one run:
  trl_defaults  SFTTrainer with untouched SFTConfig defaults (bf16=True, gradient checkpointing on; use_cpu)
  trl_best      what a competent user picks here: bf16 only where the CPU has it natively, gradient
                checkpointing off (memory allows), length-grouped batches       <- the baseline of the ratio
  harness       `harness train` defaults (train.precision=auto: bf16 matmuls where native, else fp32)
  harness_fp32  `harness train train.precision=fp32`
  harness_noprefix harness without the shared-prefix pass (each row runs its own system prompt), for the record
  harness_compile  harness with torch.compile of each decoder layer (inductor CPU), for the record
All use LoRA r=8, alpha=16, dropout 0.05, all-linear, batch 8, lr 2e-4 on the task's train split.
tokens/s counts non-pad tokens of the optimisation steps only (model loading and validation excluded).
With --epochs N every variant trains N full epochs and its adapter is scored on the task's eval split through
harness.evaluate.evaluate_models (the one evaluation path; greedy, hf backend): that is the quality check.
Every adapter's validation loss is also measured afterwards with one function in fp32.

  python bench/train_throughput.py --steps 20                      # speed + memory
  python bench/train_throughput.py --epochs 1                      # speed + memory + task quality
  ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python bench/train_throughput.py --only trl_best,harness
                                                                   # emulate an AVX2-only CPU (no native bf16)
Results: bench/results/train_throughput[-TAG].txt/.json. The last line is the ratio harness / trl_best.

Measured 2026-12-07 on a quiet 2-core AVX2-only machine (no native bf16: fp32 everywhere), --epochs 1 --only
trl_best,harness (bench/results/train_throughput-avx2-epoch1.txt):
  harness   189.1 tokens/s  peak RSS 3121 MB  all_fields_correct 0.05  field_accuracy 0.50
  trl_best   84.2 tokens/s  peak RSS 5043 MB  all_fields_correct 0.05  field_accuracy 0.50
  -> 2.25x tokens/s at 0.62x the memory, same task quality after one epoch.

Measured 2026-12-02 on the 2-core AMX/AVX512-BF16 machine while ~8 other jobs ran (load average 12-16), so with
--threads 1 --parallel and compared in tokens per CPU-second (steady state, first step excluded), 6 steps:
  harness   (bf16 + shared prefix)  120.4 tokens/CPU-s  peak RSS 2816 MB
  trl_best  (bf16, no checkpointing, length-grouped)  61.2 tokens/CPU-s  peak RSS 5181 MB
  -> 1.97x tokens per CPU-s at 0.54x the memory (bench/results/train_throughput-cpu1.txt).
A second run (bench/results/train_throughput-cpu1-more.txt): harness_fp32 146.2, harness_noprefix (bf16) 100.3,
trl_defaults 49.8 tokens/CPU-s (peak RSS 3423 / 3883 / 3441 MB). CPU-s are comparable within a run only:
bench/train_step_ab.py measured bf16 1.11x faster than fp32 in one process.
Wall-clock rows, the AVX2 emulation and the --epochs 1 quality check are for a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_flags  # noqa: E402

LORA = {"r": 8, "alpha": 16, "dropout": 0.05}


def _cfg(model: str, task: str, steps: int, epochs: int, extra: list[str]) -> dict:
    from harness.config import compose, to_dict

    length = [f"train.epochs={epochs}", "train.max_steps=-1", "train.eval_every=0"] if epochs else \
        [f"train.max_steps={steps}", f"train.eval_every={steps}"]
    return to_dict(compose([f"model={model}", f"task={task}", "tracking.wandb=disabled", f"lora.r={LORA['r']}",
                            f"lora.alpha={LORA['alpha']}", f"lora.dropout={LORA['dropout']}",
                            "lora.target_modules=all-linear", "train.batch_size=8", "train.lr=2e-4",
                            "train.patience=0", "train.checkpoint_every=0", *length, *extra]))


def run_harness(cfg: dict, out: Path, q, variant: str) -> None:
    from harness.train import train

    import harness.train as t

    if variant == "harness_compile":
        _compile_layers()
    clock = _StepClock()
    real_step = t.LoRARecipe.train_step

    def timed_step(self, group):
        before = self.state.tokens
        with clock.step() as c:
            loss = real_step(self, group)
            c.tokens = self.state.tokens - before
        return loss

    t.LoRARecipe.train_step = timed_step
    res = t.train(cfg, out, quiet=True)
    m = res.metrics
    q.put({**clock.summary(), "eval_time_s": m["eval_time_s"], "steps": m["final_step"], "precision": m["precision"],
           "peak_rss_mb": _rss(), "adapter": str(out / "adapter")})


class _StepClock:
    """Wall and process-CPU seconds of each optimizer step. Under contention from other processes wall time is
    noise; with --threads 1, CPU seconds per token stay comparable between variants run one after another."""

    def __init__(self):
        self.steps: list[tuple[float, float, int]] = []  # (wall, cpu, tokens)

    def step(self):
        import contextlib

        clock = self

        @contextlib.contextmanager
        def ctx():
            rec = type("Rec", (), {"tokens": 0})()
            w, c = time.perf_counter(), time.process_time()
            yield rec
            clock.steps.append((time.perf_counter() - w, time.process_time() - c, rec.tokens))

        return ctx()

    def summary(self) -> dict:
        steady = self.steps[1:] or self.steps  # the first step pays one-off kernel set-up in every variant
        wall, cpu, tok = (sum(x[i] for x in steady) for i in range(3))
        return {"tokens_per_s": round(tok / wall, 2), "tokens_per_cpu_s": round(tok / cpu, 2),
                "train_time_s": round(sum(x[0] for x in self.steps), 1), "tokens": sum(x[2] for x in self.steps),
                "first_step_s": round(self.steps[0][0], 1) if self.steps else None}


def _compile_layers() -> None:
    """torch.compile each decoder layer (torchtune's per-layer compile: one graph reused by every layer)."""
    import torch

    import harness.train as t

    real = t.build_peft_model

    def compiled(*a, **k):
        model = real(*a, **k)
        for layer in model.get_base_model().get_decoder().layers:
            layer.compile(dynamic=True)
        return model

    t.build_peft_model = compiled
    torch.set_float32_matmul_precision("high")


def run_trl(cfg: dict, out: Path, q, variant: str) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from harness.models import load_model, load_tokenizer, resolve_model
    from harness.prompts import build_messages
    from harness.tasks import load_task
    from harness.train import cpu_has_native_bf16

    torch.manual_seed(0)
    torch.set_num_threads(int(cfg["train"].get("threads") or 0) or os.cpu_count() or 1)
    spec = resolve_model(cfg["model"])
    tok = load_tokenizer(spec)
    task = load_task(cfg["task"]["name"])
    rows = []
    for ex in task.load_split("train"):
        prompt = build_messages(ex, system_prompt=task.system_prompt, prompt_template=task.prompt_template)
        rows.append({"prompt": prompt, "completion": [{"role": "assistant", "content": ex.target}]})
    model = load_model(spec, device="cpu", dtype="float32")
    t = cfg["train"]
    length = {"num_train_epochs": t["epochs"]} if t["max_steps"] <= 0 else {"max_steps": t["max_steps"]}
    extra = {}
    if variant == "trl_best":
        native = cpu_has_native_bf16() or torch.cuda.is_available()
        extra = {"bf16": native, "gradient_checkpointing": False, "train_sampling_strategy": "group_by_length"}
    args = SFTConfig(output_dir=str(out / "trl"), per_device_train_batch_size=8, learning_rate=2e-4,
                     logging_steps=10, save_strategy="no", report_to=[], seed=0, dataloader_num_workers=0,
                     max_length=spec.max_length, use_cpu=not torch.cuda.is_available(), **length, **extra)
    lora = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"], target_modules="all-linear",
                      task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         peft_config=lora)
    from transformers import TrainerCallback

    clock = _StepClock()

    class Timer(TrainerCallback):
        """Times each optimizer step; tokens = non-pad tokens of the batches it consumed."""

        def on_step_begin(self, args, state, control, **kw):
            self.ctx = clock.step()
            self.rec = self.ctx.__enter__()

        def on_step_end(self, args, state, control, **kw):
            self.rec.tokens = counted.pop("tokens", 0)
            self.ctx.__exit__(None, None, None)

    counted: dict[str, int] = {}
    real_step = trainer.training_step

    def training_step(model, inputs, *a, **k):
        counted["tokens"] = counted.get("tokens", 0) + int(inputs["attention_mask"].sum())
        return real_step(model, inputs, *a, **k)

    trainer.training_step = training_step
    trainer.add_callback(Timer())
    trainer.train()
    trainer.model.save_pretrained(str(out / "adapter"), safe_serialization=True)
    q.put({**clock.summary(), "steps": trainer.state.global_step, "precision": "bf16" if args.bf16 else "fp32",
           "gradient_checkpointing": bool(args.gradient_checkpointing), "peak_rss_mb": _rss(),
           "adapter": str(out / "adapter")})


def _rss() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0)


def val_loss(cfg: dict, adapter: str) -> float:
    from peft import PeftModel

    from harness.models import load_model, load_tokenizer, resolve_model
    from harness.train import encode, load_train_data, validation_loss

    spec = resolve_model(cfg["model"])
    tok = load_tokenizer(spec)
    data = load_train_data(cfg["task"], 0, 0.1)
    model = PeftModel.from_pretrained(load_model(spec, device="cpu", dtype="float32"), adapter)
    return validation_loss(model, encode(tok, data.val, data, spec.max_length, True), 16, tok.pad_token_id, "cpu")


def task_metrics(cfg: dict, adapters: dict[str, str], out: Path) -> dict:
    """Every adapter scored on the task's eval split by the harness's one evaluation path (greedy, hf, fp32)."""
    from harness.evaluate import evaluate_models

    summary = evaluate_models(out, cfg["task"]["name"], cfg["model"], {"kind": "hf"},
                              {k: Path(v) for k, v in adapters.items()}, baselines=False, quiet=True,
                              eval_cfg={"probes": None, "select_by": "val_loss", "canary": False, "cache": False})
    models = summary.get("models", summary)
    return {k: (models.get(k) or {}).get("metrics", models.get(k)) for k in adapters}


def _result(p, q) -> dict:
    """The child's result, or an error when it died without one (killed, out of memory)."""
    import queue

    while True:
        try:
            res = q.get(timeout=5)
            break
        except queue.Empty:
            if not p.is_alive():
                res = {"error": f"child exited with code {p.exitcode} and no result"}
                break
    p.join()
    return res


def child(fn, cfg, out, q, variant):
    try:
        fn(cfg, out, q, variant)
    except BaseException as exc:  # report, don't hang the parent
        q.put({"error": f"{type(exc).__name__}: {exc}"})
        raise


VARIANTS = {
    "trl_defaults": (run_trl, []),
    "trl_best": (run_trl, []),
    "harness": (run_harness, []),
    "harness_fp32": (run_harness, ["train.precision=fp32"]),
    "harness_noprefix": (run_harness, ["train.share_prefix=false"]),
    "harness_compile": (run_harness, []),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps per variant (ignored with --epochs)")
    ap.add_argument("--epochs", type=int, default=0, help="train full epochs and score each adapter on the eval split")
    ap.add_argument("--model", default="smollm2_135m")
    ap.add_argument("--task", default="demo")
    ap.add_argument("--only", default="trl_defaults,trl_best,harness,harness_fp32")
    ap.add_argument("--tag", default="", help="suffix of the results files (e.g. avx2)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per variant (0 = all cores)")
    ap.add_argument("--parallel", action="store_true",
                    help="run the variants at the same time (with --threads 1 on a busy machine: compare tokens per CPU-s)")
    args = ap.parse_args()
    os.environ["WANDB_MODE"] = "disabled"
    ctx = mp.get_context("spawn")
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    emulated = {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if os.environ.get(k)}
    from harness.train import cpu_has_native_bf16

    lines = [f"# {time.strftime('%Y-%m-%d %H:%M')} model={args.model} task={args.task} "
             f"{'epochs=' + str(args.epochs) if args.epochs else 'steps=' + str(args.steps)} cores={os.cpu_count()} "
             f"threads={args.threads or os.cpu_count()} load_avg={os.getloadavg()[0]:.1f} (other processes: wall-clock "
             f"numbers are only comparable on a quiet machine; tokens per CPU-s with --threads 1 are)",
             f"# cpu flags: {cpu_flags()}", f"# native bf16 used: {cpu_has_native_bf16()}  emulation env: {emulated or 'none'}"]
    for line in lines:
        print(line, flush=True)
    results: dict[str, dict] = {}
    names = args.only.split(",")
    cfgs = {n: _cfg(args.model, args.task, args.steps, args.epochs, VARIANTS[n][1] + [f"train.threads={args.threads}"])
            for n in names}
    running = {}
    for i, name in enumerate(names):
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(VARIANTS[name][0], cfgs[name], tmp / name, q, name))
        p.start()
        running[name] = (p, q)
        if not args.parallel or i == len(names) - 1:
            for n, (p, q) in running.items():
                res = _result(p, q)
                if "error" in res:
                    lines.append(f"{n:16s} FAILED {res['error']}")
                    print(lines[-1], flush=True)
                    continue
                res["val_loss"] = round(val_loss(cfgs[n], res["adapter"]), 4)
                results[n] = res
                lines.append(f"{n:16s} tokens/s {res['tokens_per_s']:7.1f}  per CPU-s {res['tokens_per_cpu_s']:6.1f}  "
                             f"peak RSS {res['peak_rss_mb']:6.0f} MB  train {res['train_time_s']:6.1f} s  "
                             f"steps {res['steps']:3d}  {res['precision']:4s}  val loss {res['val_loss']:.4f}"
                             + (f"  (+ validation {res['eval_time_s']:.1f} s)" if res.get("eval_time_s") else ""))
                print(lines[-1], flush=True)
            running = {}
    if args.epochs and results:
        scores = task_metrics(_cfg(args.model, args.task, args.steps, args.epochs, []),
                              {k: v["adapter"] for k, v in results.items()}, tmp / "scores")
        for name, m in scores.items():
            results[name]["task_metrics"] = m
            keep = {k: round(v, 3) for k, v in (m or {}).items() if isinstance(v, (int, float))}
            lines.append(f"{name:16s} eval split after {args.epochs} epoch(s): {keep}")
            print(lines[-1], flush=True)
    base = "trl_best" if "trl_best" in results else "trl_defaults"
    n_before = len(lines)
    for name in ("harness", "harness_fp32", "harness_compile"):
        if name in results and base in results:
            r, b = results[name], results[base]
            lines.append(f"{name} vs {base}: {r['tokens_per_s'] / b['tokens_per_s']:.2f}x tokens/s, "
                         f"{r['tokens_per_cpu_s'] / b['tokens_per_cpu_s']:.2f}x tokens per CPU-s, peak RSS {r['peak_rss_mb'] / b['peak_rss_mb']:.2f}x")
    if "harness" in results and base in results:
        lines.append(f"ratio harness/{base} tokens/s = {results['harness']['tokens_per_s'] / results[base]['tokens_per_s']:.2f}x")
    print("\n".join(lines[n_before:]), flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    suffix = f"-{args.tag}" if args.tag else ""
    (out / f"train_throughput{suffix}.txt").write_text("\n".join(lines) + "\n")
    (out / f"train_throughput{suffix}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
