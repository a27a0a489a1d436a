"""Generate and score: base (zero-shot), few-shot base, and every adapter, on a task and on forgetting probes.

evaluate() writes into out_dir (see the sweep directory contract in the README):
  scores.jsonl   one row per (model, item): model, split ("task"|"probe"), sample_id, family, knowledge,
                 prompt, output, reference, metrics, details (+ finish_reason, completion_tokens)
  summary.json   per model: kind, n, metrics (means), probes (family means + "all"), knowledge (form vs
                 knowledge items on the primary metric), gen stats; plus the inputs_hash.

Every request of every model goes to the backend in ONE generate() call, so a backend that batches
mixed adapters (hf) serves them together. Generation caching is the backend layer's job (wrap the
backend in harness.backends.cache.CachedBackend); evaluate() itself is resumable at the file level:
when summary.json holds the same inputs_hash (task version + files + model identities + generation
settings + few-shot/probe items) and scores.jsonl exists, it returns the saved summary at once.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

from harness.backends.base import BASE, Completion, GenParams, Request
from harness.example import Example
from harness.io import UserError, read_json, read_jsonl, stable_hash, write_json, write_jsonl
from harness.metrics import mean_values, score_sample
from harness.probes import PROBE_GEN, check_probe, load_probes
from harness.prompts import build_messages
from harness.tasks import Task, build_few_shot

SCORER_VERSION = 1
FEWSHOT = "fewshot"
SCORES = "scores.jsonl"
SUMMARY = "summary.json"


def _messages_for(task: Task, ex: Example, few_shot: list[Example] = ()) -> list[dict]:
    return build_messages(ex, system_prompt=task.system_prompt, prompt_template=task.prompt_template, few_shot=few_shot)


def inputs_hash(task: Task, eval_ids: list[str], few_shot_ids: list[str], probe_items: list[dict],
                identities: dict[str, str]) -> str:
    """Hash of everything that determines scores.jsonl."""
    return stable_hash({
        "scorer": SCORER_VERSION,
        "task": task.fingerprint(),
        "eval_ids": eval_ids,
        "few_shot": few_shot_ids,
        "probes": probe_items,
        "probe_gen": PROBE_GEN.to_dict(),
        "gen": task.gen.to_dict(),
        "models": identities,
    }, 24)


def _progress_fn(total: int, enabled: bool) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    if not enabled or total == 0:
        return None, lambda: None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None, lambda: None
    bar = tqdm(total=total, desc="generate", unit="req", file=sys.stderr, dynamic_ncols=True)
    return bar.update, bar.close


def evaluate(
    out_dir: Path,
    task: Task,
    backend: Any,
    adapters: dict[str, Path | None],
    *,
    few_shot_k: int | None = None,
    few_shot_seed: int | None = None,
    probes: str | Path | None = "default",
    max_eval: int | None = None,
    progress: bool = True,
    identities: dict[str, str] | None = None,
    force: bool = False,
) -> dict:
    """Score base, few-shot and each adapter on the task's eval split and on the probe set.

    `backend` is a Backend, or a zero-argument callable returning one (then it is only built
    when the scores are not already up to date; pass `identities` {model_key: identity} so the
    check needs no backend). few_shot_k / few_shot_seed default to the task's few_shot settings;
    few_shot_k=0 (or a task without a train split) skips the few-shot baseline.
    """
    out_dir = Path(out_dir)
    t0 = time.time()
    k = task.few_shot_k if few_shot_k is None else int(few_shot_k)
    seed = task.few_shot_seed if few_shot_seed is None else int(few_shot_seed)

    eval_examples = task.load_split("eval")
    if max_eval is not None:
        eval_examples = eval_examples[: int(max_eval)]
    if not eval_examples:
        raise UserError(f"{task.path}: the eval split is empty")
    shots = build_few_shot(task.load_split("train"), task.load_split("eval"), k, seed) if k > 0 else []
    probe_items = load_probes(probes) if probes else []

    adapter_keys = [str(a) for a in adapters]
    for a in adapter_keys:
        if a in (BASE, FEWSHOT):
            raise UserError(f"adapter name {a!r} is reserved (base and fewshot are the baselines)")

    built: dict[str, Any] = {}

    def get_backend():
        if "b" not in built:
            built["b"] = backend() if callable(backend) and not hasattr(backend, "generate") else backend
        return built["b"]

    if identities is None:
        b = get_backend()
        identities = {key: b.model_identity(key) for key in [BASE] + adapter_keys}
    identities = {key: identities[key] for key in [BASE] + adapter_keys}
    ihash = inputs_hash(task, [e.id for e in eval_examples], [s.id for s in shots], probe_items, identities)

    scores_path, summary_path = out_dir / SCORES, out_dir / SUMMARY
    if not force and scores_path.is_file() and summary_path.is_file():
        try:
            old = read_json(summary_path)
        except (OSError, ValueError):
            old = {}
        if old.get("inputs_hash") == ihash:
            old["skipped"] = True
            return old

    # ---- requests: (model, split, item) for every model; one generate() call
    models: list[tuple[str, str]] = [("base", BASE)]  # (row model name, backend model key)
    if shots:
        models.append((FEWSHOT, BASE))
    models += [(a, a) for a in adapter_keys]
    jobs: list[dict] = []
    requests: list[Request] = []
    for name, key in models:
        fs = shots if name == FEWSHOT else []
        for ex in eval_examples:
            msgs = _messages_for(task, ex, fs)
            jobs.append({"model": name, "split": "task", "ex": ex, "prompt": msgs})
            requests.append(Request(key, msgs, task.gen))
        if name == FEWSHOT:
            continue  # the few-shot prompt is task-specific: probes are asked of base and adapters only
        for item in probe_items:
            msgs = [dict(m) for m in item["messages"]]
            jobs.append({"model": name, "split": "probe", "item": item, "prompt": msgs})
            requests.append(Request(key, msgs, PROBE_GEN))

    b = get_backend()
    available = set(b.model_keys())
    missing = [key for _, key in models if key not in available]
    if missing:
        raise UserError(f"backend {getattr(b, 'name', '?')} does not serve model(s) {', '.join(sorted(set(missing)))} "
                        f"(serves: {', '.join(sorted(available))})")
    tick, close_bar = _progress_fn(len(requests), progress)
    t_gen = time.time()
    try:
        completions: list[Completion] = b.generate(requests, progress=tick)
    finally:
        close_bar()
    gen_s = time.time() - t_gen
    if len(completions) != len(requests):
        raise RuntimeError(f"backend returned {len(completions)} completions for {len(requests)} requests")

    # ---- score
    rows = []
    for job, comp in zip(jobs, completions):
        out = comp.text or ""
        if job["split"] == "task":
            ex: Example = job["ex"]
            values, details = score_sample(out, ex.target, task.metrics, schema=task.json_schema)
            rows.append({"model": job["model"], "split": "task", "sample_id": ex.id, "family": None,
                         "knowledge": task.is_knowledge(ex), "prompt": job["prompt"], "output": out,
                         "reference": ex.target, "metrics": values, "details": details,
                         "finish_reason": comp.finish_reason, "completion_tokens": comp.completion_tokens})
        else:
            item = job["item"]
            try:
                v = check_probe(item, out)
                det = {}
            except Exception as exc:  # a checker must never kill an evaluation
                v, det = None, {"pass": f"checker error: {type(exc).__name__}: {exc}"}
            rows.append({"model": job["model"], "split": "probe", "sample_id": item["id"], "family": item["family"],
                         "knowledge": False, "prompt": job["prompt"], "output": out,
                         "reference": str(item.get("reference", "")), "metrics": {"pass": v}, "details": det,
                         "finish_reason": comp.finish_reason, "completion_tokens": comp.completion_tokens})

    summary = summarize(rows, task, [m for m, _ in models], adapters, relative_to=Path(out_dir).parent)
    summary.update({
        "inputs_hash": ihash,
        "n_eval": len(eval_examples),
        "n_probes": len(probe_items),
        "probe_set": str(probes) if probes else None,
        "few_shot": {"k": k, "seed": seed, "ids": [s.id for s in shots]},
        "generation": task.gen.to_dict(),
        "probe_generation": PROBE_GEN.to_dict(),
        "identities": identities,
        "backend": getattr(b, "name", None),
        "generate_s": round(gen_s, 3),
        "elapsed_s": round(time.time() - t0, 3),
        "cache": {"hits": getattr(b, "hits", None), "misses": getattr(b, "misses", None)},
    })
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(scores_path, rows)
    write_json(summary_path, summary)  # last: its inputs_hash marks scores.jsonl as complete
    summary["skipped"] = False
    return summary


def _mean(xs: list[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def summarize(rows: list[dict], task: Task, model_names: list[str], adapters: dict[str, Path | None], *,
              relative_to: Path | None = None) -> dict:
    """summary.json content from scores rows (also usable on a re-read scores.jsonl)."""
    pm = task.primary_metric
    out_models = {}
    for name in model_names:
        trows = [r for r in rows if r["model"] == name and r["split"] == "task"]
        prows = [r for r in rows if r["model"] == name and r["split"] == "probe"]
        fams: dict[str, list] = {}
        for r in prows:
            fams.setdefault(r["family"], []).append(r["metrics"].get("pass"))
        probes = {f: _mean(v) for f, v in sorted(fams.items())}
        if prows:
            probes["all"] = _mean([r["metrics"].get("pass") for r in prows])
        know = [r["metrics"].get(pm) for r in trows if r["knowledge"]]
        form = [r["metrics"].get(pm) for r in trows if not r["knowledge"]]
        entry = {
            "kind": "baseline" if name in ("base", FEWSHOT) else "adapter",
            "n": len(trows),
            "metrics": mean_values([r["metrics"] for r in trows]),
            "primary": _mean([r["metrics"].get(pm) for r in trows]),
            "probes": probes,
            "knowledge": {"form": _mean(form), "knowledge": _mean(know), "n_form": len(form), "n_knowledge": len(know)},
            "gen": {
                "completion_tokens_mean": _mean([float(r.get("completion_tokens") or 0) for r in trows]),
                "truncated_rate": _mean([float(r.get("finish_reason") == "length") for r in trows]),
                "error_rate": _mean([float(r.get("finish_reason") == "error") for r in trows]),
            },
        }
        if name in adapters and adapters[name] is not None:
            entry["adapter_path"] = _portable_path(adapters[name], relative_to)
        out_models[name] = entry
    return {"task": task.name, "task_version": task.version, "primary_metric": pm, "models": out_models}


def _portable_path(path: Path, root: Path | None) -> str:
    """Relative to the sweep dir when inside it, so a moved or copied sweep dir stays self-consistent."""
    if root is not None:
        try:
            return str(Path(path).resolve().relative_to(Path(root).resolve()))
        except ValueError:
            pass
    return str(path)


def load_scores(out_dir: Path) -> list[dict]:
    return list(read_jsonl(Path(out_dir) / SCORES))
