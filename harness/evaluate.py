"""Generate and score: base (zero-shot), few-shot base, and every adapter, on a task and on forgetting probes.

The one evaluation path is `evaluate_models()` (backend + generation cache + canary + scoring): the
sweep, `harness eval`, export's behaviour check and the gate's `--against` all call it. It builds
the backends lazily (a re-score whose generations are all cached loads no model), leaves out
adapters that did not learn (reported, not generated), and calls `evaluate()`, which scores.

evaluate() writes into out_dir (see the sweep directory contract in the README):
  scores.jsonl   one row per (model, item): model, split ("task"|"val"|"probe"), sample_id, family,
                 knowledge, prompt, output, reference, metrics, details, finish_reason,
                 completion_tokens, error. A row with a backend error has every metric None (never 0).
  summary.json   per model: kind, n, metrics (means), probes (family means + "all"), knowledge (form vs
                 knowledge items on the primary metric), errors, error_ids, gen stats, val (when
                 selecting by a val-split metric); plus the inputs_hash and not_learned.

Every request of every model goes to the backend in ONE generate() call, so a backend that batches
mixed adapters (hf) serves them together. evaluate() is resumable at the file level: when
summary.json holds the same inputs_hash and recorded no errors, it returns the saved summary at
once; after errors a re-run regenerates (the generation cache never stores errors, so only the
failed items go to the backend again).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.backends.base import BASE, Completion, Request
from harness.backends.errors import completion_error
from harness.bleed import TaskForm, bleeds, task_form
from harness.example import Example
from harness.io import UserError, read_json, stable_hash, write_json, write_jsonl
from harness.metrics import mean_values, score_sample
from harness.models import load_tokenizer, resolve_model
from harness.probes import PROBE_GEN, check_probe, load_probes, probe_gen
from harness.prompts import build_messages, chat_format
from harness.tasks import Task, build_few_shot, load_task, task_ref

SCORER_VERSION = 6  # 3: probe rows carry `bleed` (format bleed, harness.bleed); 4: label sets up to 150 labels; 5: label
# shapes; 6: a JSON probe value that repeats its own key is no answer
FEWSHOT = "fewshot"
RELEASED = "released"
SCORES = "scores.jsonl"
SUMMARY = "summary.json"
GENERATIONS = "generations.jsonl"
VAL_LOSS = "val_loss"
MAX_ERROR_IDS = 20


def _messages_for(task: Task, ex: Example, few_shot: list[Example] = ()) -> list[dict]:
    return build_messages(ex, system_prompt=task.system_prompt, prompt_template=task.prompt_template, few_shot=few_shot)


def inputs_hash(task: Task, eval_ids: list[str], few_shot_ids: list[str], probe_items: list[dict],
                identities: dict[str, str], val_ids: list[str] | None = None, kinds: dict[str, str] | None = None,
                not_learned: dict[str, str] | None = None, backends: dict[str, str] | None = None) -> str:
    """Hash of everything that determines scores.jsonl and summary.json: the models (every adapter file), the
    backend that generates each (hf and vllm answers differ), the items and the generation settings."""
    return stable_hash({
        "backends": dict(sorted((backends or {}).items())),
        "scorer": SCORER_VERSION,
        "task": task.fingerprint(),
        "eval_ids": eval_ids,
        "val_ids": val_ids or [],
        "few_shot": few_shot_ids,
        "probes": probe_items,
        "probe_gen": PROBE_GEN.to_dict(),
        "gen": task.gen.to_dict(),
        "models": identities,
        "kinds": kinds or {},
        "not_learned": dict(sorted((not_learned or {}).items())),
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


def _had_errors(summary: dict) -> bool:
    return any((m or {}).get("errors") for m in (summary.get("models") or {}).values())


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
    select_by: str | None = VAL_LOSS,
    baselines: bool = True,
    kinds: dict[str, str] | None = None,
    not_learned: dict[str, str] | None = None,
    progress: bool = True,
    identities: dict[str, str] | None = None,
    force: bool = False,
    prompt_format: dict | None = None,
) -> dict:
    """Score base, few-shot and each model in `adapters` on the task's eval split and on the probe set.

    `backend` is a Backend, or a zero-argument callable returning one (then it is only built
    when the scores are not already up to date; pass `identities` {model_key: identity} so the
    check needs no backend). few_shot_k / few_shot_seed default to the task's few_shot settings;
    few_shot_k=0 (or a task without a train split) skips the few-shot baseline; baselines=False
    skips base and few-shot altogether (export's check compares only its own models).
    `select_by` naming a task metric also scores every model of kind "adapter" on the val split
    (rows with split "val"), so the winner is chosen on items the eval split never sees.
    `kinds` maps a model to its summary kind (default "adapter"; e.g. "released").
    `not_learned` {run_id: reason} is recorded in summary.json (those models are not generated).
    `prompt_format` (harness.prompts.ChatFormat.describe() of the base model) is recorded in summary.json.
    """
    out_dir = Path(out_dir)
    t0 = time.time()
    k = task.few_shot_k if few_shot_k is None else int(few_shot_k)
    seed = task.few_shot_seed if few_shot_seed is None else int(few_shot_seed)
    kinds = {str(a): (kinds or {}).get(str(a), "adapter") for a in adapters}

    eval_examples = task.load_split("eval")
    if max_eval is not None:
        eval_examples = eval_examples[: int(max_eval)]
    if not eval_examples:
        raise UserError(f"{task.path}: the eval split is empty")
    val_examples = _val_examples(task, select_by) if any(v == "adapter" for v in kinds.values()) else []
    shots = build_few_shot(task.load_split("train"), task.load_split("eval"), k, seed) if k > 0 and baselines else []
    probe_items = load_probes(probes) if probes else []

    adapter_keys = list(kinds)
    for a in adapter_keys:
        if a in (BASE, FEWSHOT):
            raise UserError(f"adapter name {a!r} is reserved (base and fewshot are the baselines)")
    served = ([BASE] if baselines else []) + adapter_keys
    if not served:
        raise UserError("nothing to evaluate: no baselines and no models")

    built: dict[str, Any] = {}

    def get_backend():
        if "b" not in built:
            built["b"] = backend() if callable(backend) and not hasattr(backend, "generate") else backend
        return built["b"]

    if identities is None:
        b = get_backend()
        identities = {key: b.model_identity(key) for key in served}
    identities = {key: identities[key] for key in served}
    non_default_kinds = {a: v for a, v in kinds.items() if v != "adapter"}
    names = getattr(type(backend), "backend_names", None)  # on the class: a lazy backend's __getattr__ would build it
    ihash = inputs_hash(task, [e.id for e in eval_examples], [s.id for s in shots], probe_items, identities,
                        [e.id for e in val_examples], non_default_kinds, not_learned,
                        {k: v for k, v in names(backend).items() if k in served} if callable(names) else None)

    scores_path, summary_path = out_dir / SCORES, out_dir / SUMMARY
    if not force and scores_path.is_file() and summary_path.is_file():
        try:
            old = read_json(summary_path)
        except (OSError, ValueError):
            old = {}
        if old.get("inputs_hash") == ihash and not _had_errors(old):
            old["skipped"] = True
            return old

    # ---- requests: (model, split, item) for every model; one generate() call
    models: list[tuple[str, str]] = []  # (row model name, backend model key)
    if baselines:
        models.append((BASE, BASE))
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
        if kinds.get(name) == "adapter":
            for ex in val_examples:
                msgs = _messages_for(task, ex)
                jobs.append({"model": name, "split": "val", "ex": ex, "prompt": msgs})
                requests.append(Request(key, msgs, task.gen))
        if name == FEWSHOT:
            continue  # the few-shot prompt is task-specific: probes are asked of base and adapters only
        for item in probe_items:
            msgs = [dict(m) for m in item["messages"]]
            jobs.append({"model": name, "split": "probe", "item": item, "prompt": msgs})
            requests.append(Request(key, msgs, probe_gen(item)))  # each probe's own short budget

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

    form = task_form(task) if probe_items else None
    rows = [score_row(task, job, comp, form) for job, comp in zip(jobs, completions)]
    summary = summarize(rows, task, [m for m, _ in models], adapters, relative_to=Path(out_dir).parent, kinds=kinds)
    summary.update({
        "inputs_hash": ihash,
        "n_eval": len(eval_examples),
        "n_val": len(val_examples),
        "select_by": select_by or VAL_LOSS,
        "n_probes": len(probe_items),
        "bleed_form": form.to_dict() if form else None,
        "probe_set": str(probes) if probes else None,
        "few_shot": {"k": k if baselines else 0, "seed": seed, "ids": [s.id for s in shots]},
        "generation": task.gen.to_dict(),
        "probe_generation": {**PROBE_GEN.to_dict(), "max_new_tokens": "per item (default "
                                                                       f"{PROBE_GEN.max_new_tokens})"},
        "identities": identities,
        "prompt_format": prompt_format,
        "backend": getattr(b, "name", None),
        "engines": b.engines() if hasattr(type(b), "engines") else None,  # lean or fallback, and why
        "errors": sum(m["errors"] for m in summary["models"].values()),
        "not_learned": sorted(not_learned or {}),
        "not_learned_reasons": dict(sorted((not_learned or {}).items())),
        "generate_s": round(gen_s, 3),
        "elapsed_s": round(time.time() - t0, 3),
        "cache": {"hits": getattr(b, "hits", None), "misses": getattr(b, "misses", None)},
    })
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(scores_path, rows)
    write_json(summary_path, summary)  # last: its inputs_hash marks scores.jsonl as complete
    summary["skipped"] = False
    return summary


def _val_examples(task: Task, select_by: str | None) -> list[Example]:
    """The val split when the winner is chosen on a task metric; [] for val_loss (the trainer's own number)."""
    if not select_by or select_by == VAL_LOSS:
        return []
    if select_by not in task.metric_names():
        raise UserError(f"eval.select_by: {select_by!r} is neither val_loss nor a metric of task {task.name!r} "
                        f"(metrics: {', '.join(task.metric_names())})")
    val = task.load_split("val")
    if not val:
        raise UserError(f"{task.path}: eval.select_by={select_by} needs a val split (data.val), which this task lacks")
    return val


def score_row(task: Task, job: dict, comp: Completion, form: TaskForm | None = None) -> dict:
    """One scores.jsonl row; a backend error gives metrics all None and the error text. A probe row's metrics are
    `pass` (its checks) and `bleed` (answered in the task's output `form` unasked; None when not measurable)."""
    out = comp.text or ""
    err = completion_error(comp)
    base = {"model": job["model"], "split": job["split"], "prompt": job["prompt"], "output": "" if err else out,
            "finish_reason": comp.finish_reason, "completion_tokens": comp.completion_tokens, "error": err}
    if job["split"] in ("task", "val"):
        ex: Example = job["ex"]
        if err:
            values, details = {name: None for name in task.metric_names()}, {}
        else:
            values, details = score_sample(out, ex.target, task.metrics, schema=task.json_schema)
        return {**base, "sample_id": ex.id, "family": None, "knowledge": task.is_knowledge(ex),
                "reference": ex.target, "metrics": values, "details": details}
    item = job["item"]
    det: dict = {}
    bleed = None if err or form is None else bleeds(form, item, out)
    if err:
        v = None
    else:
        try:
            v = check_probe(item, out)
        except Exception as exc:  # a checker must never kill an evaluation
            v, det = None, {"pass": f"checker error: {type(exc).__name__}: {exc}"}
    return {**base, "sample_id": item["id"], "family": item["family"], "knowledge": False,
            "reference": str(item.get("reference", "")), "metrics": {"pass": v, "bleed": bleed}, "details": det}


def _mean(xs: list[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def summarize(rows: list[dict], task: Task, model_names: list[str], adapters: dict[str, Path | None], *,
              relative_to: Path | None = None, kinds: dict[str, str] | None = None) -> dict:
    """summary.json content from scores rows (also usable on a re-read scores.jsonl)."""
    pm = task.primary_metric
    out_models = {}
    for name in model_names:
        mine = [r for r in rows if r["model"] == name]
        trows = [r for r in mine if r["split"] == "task"]
        vrows = [r for r in mine if r["split"] == "val"]
        prows = [r for r in mine if r["split"] == "probe"]
        ok = [r for r in trows if not r.get("error")]
        failed = [r for r in mine if r.get("error")]
        fams: dict[str, list] = {}
        for r in prows:
            fams.setdefault(r["family"], []).append(r["metrics"].get("pass"))
        probes = {f: _mean(v) for f, v in sorted(fams.items())}
        if prows:
            probes["all"] = _mean([r["metrics"].get("pass") for r in prows])
        bled = [r["metrics"].get("bleed") for r in prows if r["metrics"].get("bleed") is not None]
        know = [r["metrics"].get(pm) for r in trows if r["knowledge"]]
        form = [r["metrics"].get(pm) for r in trows if not r["knowledge"]]
        kind = "baseline" if name in (BASE, FEWSHOT) else (kinds or {}).get(name, "adapter")
        entry = {
            "kind": kind,
            "n": len(trows),
            "metrics": mean_values([r["metrics"] for r in trows]),
            "primary": _mean([r["metrics"].get(pm) for r in trows]),
            "probes": probes,
            "bleed": {"rate": _mean(bled), "count": int(sum(bled)), "n": len(bled)} if bled else None,
            "knowledge": {"form": _mean(form), "knowledge": _mean(know), "n_form": len(form), "n_knowledge": len(know)},
            "errors": len(failed),
            "error_ids": [f"{r['split']}:{r['sample_id']}" if r["split"] != "task" else r["sample_id"]
                          for r in failed][:MAX_ERROR_IDS],
            "gen": {
                "completion_tokens_mean": _mean([float(r.get("completion_tokens") or 0) for r in ok]),
                "truncated_rate": _mean([float(r.get("finish_reason") == "length") for r in ok]),
                "error_rate": _mean([float(bool(r.get("error"))) for r in trows]),
            },
        }
        if vrows:
            entry["val"] = {"n": len(vrows), "metrics": mean_values([r["metrics"] for r in vrows]),
                            "primary": _mean([r["metrics"].get(pm) for r in vrows]),
                            "errors": sum(1 for r in vrows if r.get("error"))}
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


# ============================================================================ the one evaluation path


@dataclass(frozen=True)
class ServedModel:
    """A model scored beside the adapters, possibly on its own base and backend: export's merged copy
    ({"source": "hf", "path": merged_dir}, hf) and GGUF (llamacpp), the gate's released adapter.
    adapter=None serves the base of `model_cfg` itself. `kind` is its summary kind."""

    model_cfg: dict
    backend_cfg: dict
    adapter: Path | None = None
    kind: str = "adapter"


def evaluate_models(
    out_dir: Path,
    task: Task | str,
    model_cfg: dict,
    backend_cfg: dict,
    adapters: dict[str, Path],
    *,
    eval_cfg: dict | None = None,
    cache_path: Path | None = None,
    extra_models: dict[str, ServedModel] | None = None,
    baselines: bool = True,
    force: bool = False,
    quiet: bool = False,
) -> dict:
    """THE evaluation of a set of models: build the backend(s) (lazily), cache generations, canary the
    adapters, score through evaluate(); returns the summary (also written to out_dir/summary.json).

    adapters: {run_id: adapter_dir} on `model_cfg`, served by `backend_cfg` (one base load). An adapter
    that did not learn (metrics.json improved=false beside it, or all-zero LoRA B weights) is not
    generated: it is listed in summary["not_learned"] with summary["not_learned_reasons"][run_id].
    extra_models: {name: ServedModel} scored on the same items (never excluded as not learned; one on the same
    base and backend as the adapters shares their backend, and their canary).
    eval_cfg: conf/eval keys (few_shot_k, few_shot_seed, probes, max_eval, select_by, canary, cache).
    cache_path: the generation cache (default out_dir/generations.jsonl; eval_cfg cache=false: none).
    """
    from harness.canary import adapter_not_learned
    from harness.eval_backends import RoutedBackend, group_backend

    ecfg = dict(eval_cfg or {})
    task = task if isinstance(task, Task) else load_task(task)
    out_dir = Path(out_dir)
    not_learned: dict[str, str] = {}
    learned: dict[str, Path] = {}
    for name, path in adapters.items():
        reason = adapter_not_learned(Path(path))
        if reason:
            not_learned[str(name)] = reason
        else:
            learned[str(name)] = Path(path)
    if not_learned and not quiet:
        for name, reason in not_learned.items():
            print(f"note: adapter {name} did not learn ({reason}); reported, not scored", file=sys.stderr)

    # group the models by (base, backend): each group is one backend process / one base load
    groups: dict[str, dict] = {}

    def group_for(mcfg: dict, bcfg: dict) -> dict:
        gid = stable_hash({"m": mcfg, "b": bcfg}, 16)
        return groups.setdefault(gid, {"model_cfg": mcfg, "backend_cfg": bcfg, "adapters": {}, "routes": {}})

    main = group_for(dict(model_cfg), dict(backend_cfg))
    for name, path in learned.items():
        main["adapters"][name] = path
        main["routes"][name] = name
    kinds: dict[str, str] = {name: "adapter" for name in learned}
    if baselines:
        main["routes"][BASE] = BASE
    all_adapter_paths: dict[str, Path | None] = dict(learned)
    for name, sm in (extra_models or {}).items():
        if name in kinds or name in (BASE, FEWSHOT):
            raise UserError(f"model name {name!r} is used twice (adapters, extra models and baselines need distinct names)")
        g = group_for(dict(sm.model_cfg), dict(sm.backend_cfg))
        if sm.adapter is not None:
            g["adapters"][name] = Path(sm.adapter)
            g["routes"][name] = name
        else:
            g["routes"][name] = BASE
        kinds[name] = sm.kind
        all_adapter_paths[name] = sm.adapter

    use_cache = ecfg.get("cache", True) is not False
    cache_path = Path(cache_path) if cache_path else out_dir / GENERATIONS
    canary = bool(ecfg.get("canary", True))
    backends = [group_backend(g, cache_path if use_cache else None, canary=canary) for g in groups.values() if g["routes"]]
    routed = RoutedBackend({outer: (b, inner) for g, b in zip([g for g in groups.values() if g["routes"]], backends)
                            for outer, inner in g["routes"].items()})
    fmt = _prompt_format(model_cfg, quiet)
    try:
        summary = evaluate(out_dir, task, routed, all_adapter_paths,
                           few_shot_k=ecfg.get("few_shot_k"), few_shot_seed=ecfg.get("few_shot_seed"),
                           probes=ecfg.get("probes", "default"), max_eval=ecfg.get("max_eval"),
                           select_by=ecfg.get("select_by", VAL_LOSS), baselines=baselines, kinds=kinds,
                           not_learned=not_learned, progress=not quiet, identities=routed.identities(), force=force,
                           prompt_format=fmt)
    finally:
        routed.close()  # the likelihood pass loads its own copy of the model: the serving one goes first
    if baselines and learned and ecfg.get("probes", "default") and ecfg.get("likelihood", True):
        summary["likelihood"] = _likelihood(out_dir, model_cfg, learned, ecfg, force=force, quiet=quiet)
    return summary


def _prompt_format(model_cfg: dict, quiet: bool) -> dict | None:
    """The base model's chat format, said once (system merged, no template, template kwargs); None when its
    tokenizer is not on this machine (a remote model behind backend=openai). A template that cannot work: UserError."""
    try:
        spec = resolve_model(model_cfg)
    except (UserError, OSError):
        return None
    try:
        fmt = chat_format(load_tokenizer(spec))
    except OSError:
        return None
    if not quiet:
        for note in fmt.notes:
            print(f"note: {note}", file=sys.stderr)
    return fmt.describe()


def _likelihood(out_dir: Path, model_cfg: dict, adapters: dict[str, Path], ecfg: dict, *, force: bool,
                quiet: bool) -> dict:
    """Drift (KL to base along the base's own probe answers) and the multiple-choice probes, teacher-forced on
    the base model and the adapters (harness.likelihood; drift.json + mc_scores.jsonl beside scores.jsonl).
    A model this process cannot load (a remote-only model behind backend=openai) is said, not an error."""
    from harness.likelihood import load_mc_probes, measure

    probe_items = load_probes(ecfg.get("probes", "default"))
    mc = ecfg.get("mc_probes", "mc")
    try:
        res = measure(out_dir, model_cfg, adapters, probe_items, load_mc_probes(mc) if mc else [],
                      scores_path=out_dir / SCORES, force=force)
    except (UserError, OSError) as exc:
        if not quiet:
            print(f"note: drift and multiple-choice probes not measured: {exc}", file=sys.stderr)
        return {"status": "not measured", "error": str(exc)}
    return {"status": "ok", "n_prompts": res.get("n_prompts"), "timing_s": res.get("timing_s")}


# ============================================================================ the released model (gate --against)


def score_released(sweep_dir: Path, released: Path, cfg: dict, *, quiet: bool = True) -> None:
    """Add the released model (model key "released") to SWEEP/scores: scored on the same eval items through
    the same generation cache (only its own generations are new); updates scores.jsonl and summary.json.
    `cfg` is the sweep's config dict (model, task, backend, eval), as `harness eval` resolves it."""
    from harness.targets import released_adapter, sweep_runs

    sweep_dir = Path(sweep_dir)
    adapter, how = released_adapter(released)
    adapters = {str(r.get("run_id")): run_dir / "adapter" for r, run_dir in sweep_runs(sweep_dir)
                if r.get("status") == "complete"}
    summary = evaluate_models(
        sweep_dir / "scores", task_ref(cfg["task"]), cfg["model"], cfg.get("backend") or {"kind": "hf"},
        adapters, eval_cfg=cfg.get("eval"),
        extra_models={RELEASED: ServedModel(cfg["model"], cfg.get("backend") or {"kind": "hf"}, adapter, kind=RELEASED)},
        quiet=quiet)
    summary.pop("skipped", None)
    summary["released"] = {"source": str(Path(released).resolve()), "adapter": str(adapter), "found": how}
    write_json(sweep_dir / "scores" / SUMMARY, summary)
    if not quiet:
        print(json.dumps(summary["released"]), file=sys.stderr)
