"""In-process A/B of the training step: fp32 vs bf16 (both with the shared-prefix pass), same batches, alternating
order, 1 thread, process CPU seconds per forward+backward. Robust on a busy machine where wall-clock rows of
bench/train_throughput.py are not. Result of 2026-12-02: bench/results/train_throughput-ab.txt.

  python bench/train_step_ab.py [--steps 4]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import torch

    from harness.config import compose, to_dict
    from harness.models import load_tokenizer, resolve_model
    from harness.train import PRECISIONS, build_peft_model, collate, completion_loss, encode, load_train_data, make_batches

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = to_dict(compose(["model=smollm2_135m", "task=demo", "tracking.wandb=disabled", "lora.alpha=16"]))
    spec = resolve_model(cfg["model"])
    tok = load_tokenizer(spec)
    data = load_train_data(cfg["task"], 0, 0.1)
    enc = encode(tok, data.train, data, 512, True)
    models = {p: build_peft_model(cfg, spec, "cpu", PRECISIONS[p]) for p in ("fp32", "bf16")}
    batches = make_batches(enc, 8, 0, 0, True)
    times: dict[str, list[float]] = {p: [] for p in models}
    for i in range(args.steps):
        ids, labels, mask = collate(enc, batches[i], tok.pad_token_id)
        for name in (("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32")):
            c = time.process_time()
            loss, n = completion_loss(models[name], ids, labels, mask, PRECISIONS[name], True)
            (loss / n).backward()
            models[name].zero_grad(set_to_none=True)
            times[name].append(time.process_time() - c)
            print(i, name, f"{times[name][-1]:.2f} CPU-s  loss {loss.item() / n:.5f}", flush=True)
    steady = {k: sum(v[1:]) / max(1, len(v) - 1) for k, v in times.items()}
    print(f"ratio fp32/bf16 CPU-s per step = {steady['fp32'] / steady['bf16']:.2f}x (bf16 faster when > 1)")


if __name__ == "__main__":
    main()
