"""Replay without outside data (`train.replay`): general prompts answered by the base model itself, mixed into
the training batches, so the adapter keeps the base model's general behaviour (self-distillation against
format bleed and forgetting; the decision's "mix general data into the training set" as one config line).

- Prompts: evalsets/replay/prompts.jsonl (written for this repo by make_replay.py; none shares a 6-word shingle
  with a forgetting probe, so replay never trains on the test). Their hash is part of the run id.
- Count: round(share * n_train / (1 - share)) examples, so replay is `share` of everything the epoch trains on;
  prompts drawn without repetition (seeded) until the set is used up, then again.
- Answers: the base model (no adapter, its chat template, no system prompt: the probes' setting), greedy,
  REPLAY_GEN, through the hf backend with bitwise transformers logits, behind the generation cache at
  <cache_root>/replay/generations.jsonl (keyed by model identity, messages and settings: runs of one base model
  share answers). The rows a run uses go to <run>/replay.jsonl once; a resumed run reads them back, so it
  trains on exactly the same data and gives the same curve.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

from harness.backends.base import BASE, GenParams, Request
from harness.example import Example
from harness.io import UserError, read_jsonl, sha256_file, stable_hash, write_jsonl

REPLAY_GEN = GenParams(max_new_tokens=64, temperature=0.0)
# pack=false: the answers are training targets, so they come from transformers' own logits (no round-off)
BACKEND = {"kind": "hf", "engine": "prefix", "lean": True, "pack": False, "batch_size": 64}
RUN_FILE = "replay.jsonl"


def prompts_path() -> Path:
    from harness.config import repo_root

    return repo_root() / "evalsets" / "replay" / "prompts.jsonl"


def generation_cache() -> Path:
    """The base model's answers, shared by every run on this machine (keyed by model identity and settings)."""
    from harness.models import cache_root

    return cache_root() / "replay" / "generations.jsonl"


def replay_count(share: float, n_train: int) -> int:
    """Replay examples for `n_train` task examples so that replay is `share` of the mix."""
    if not 0 <= share < 1:
        raise UserError(f"train.replay: must be >= 0 and < 1, got {share!r}")
    return int(round(share * n_train / (1 - share)))


def load_prompts(path: Path | None = None) -> list[dict]:
    path = path or prompts_path()
    if not path.is_file():
        raise UserError(f"{path}: replay prompts not found (python evalsets/replay/make_replay.py writes them)")
    rows = list(read_jsonl(path))
    for i, r in enumerate(rows, 1):
        if not isinstance(r.get("id"), str) or not isinstance(r.get("prompt"), str) or not r["prompt"].strip():
            raise UserError(f"{path}:{i}: a replay prompt needs a string id and a non-empty prompt")
    return rows


def choose(prompts: list[dict], n: int, seed: int) -> list[dict]:
    """`n` prompts: seeded permutations of the set, one after another (no repeat before every prompt is used)."""
    rng = random.Random(seed * 7919 + 17)
    out: list[dict] = []
    while len(out) < n:
        order = list(prompts)
        rng.shuffle(order)
        out += order[: n - len(out)]
    return out


def _answer(model_cfg: dict, prompts: list[str], threads: int | None) -> list:
    """Base-model answers to `prompts` (cached across runs); the backend is built only when one is missing."""
    from harness.eval_backends import group_backend

    bcfg = {**BACKEND, "threads": threads}
    group = {"model_cfg": model_cfg, "backend_cfg": bcfg, "adapters": {}}
    backend = group_backend(group, generation_cache(), canary=False)
    try:
        return backend.generate([Request(BASE, [{"role": "user", "content": p}], REPLAY_GEN) for p in prompts])
    finally:
        backend.close()


def replay_examples(run_dir: Path, model_cfg: dict, identity: str, share: float, n_train: int, seed: int,
                    threads: int | None = None, log: Callable[[str], None] = print) -> list[Example]:
    """The run's replay examples: read back from <run_dir>/replay.jsonl when it was made for these settings,
    else generated (or taken from the cache) and written there. An answer cut at max_new_tokens is marked
    `truncated` (trained without its end-of-turn: replay must not teach stopping mid-sentence)."""
    n = replay_count(share, n_train)
    if n == 0:
        return []
    path = prompts_path()
    key = stable_hash({"model": identity, "prompts": sha256_file(path), "gen": REPLAY_GEN.to_dict(),
                       "backend": BACKEND, "n": n, "seed": seed}, 16)
    run_file = Path(run_dir) / RUN_FILE
    rows = list(read_jsonl(run_file)) if run_file.is_file() else []
    if len(rows) != n or any(r.get("key") != key for r in rows):
        chosen = choose(load_prompts(path), n, seed)
        unique = list(dict.fromkeys(p["prompt"] for p in chosen))
        log(f"replay: {n} examples ({share:g} of the mix) from {len(unique)} general prompts answered by the base model")
        comps = dict(zip(unique, _answer(model_cfg, unique, threads)))
        bad = [p for p in unique if comps[p].error or comps[p].finish_reason == "error"]
        if bad:
            raise UserError(f"replay: the base model could not answer {len(bad)} prompt(s): {comps[bad[0]].error}")
        rows = [{"key": key, "id": p["id"], "prompt": p["prompt"], "answer": comps[p["prompt"]].text,
                 "truncated": comps[p["prompt"]].finish_reason == "length"} for p in chosen]
        write_jsonl(run_file, rows)
    return [Example(messages=({"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["answer"]}),
                    source=str(run_file), line=i, meta={"truncated": bool(r["truncated"])})
            for i, r in enumerate(rows, 1)]
