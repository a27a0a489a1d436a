"""Export a finished run: the PEFT adapter (with a model card), a merged standalone model, or a GGUF.

    export_run(run_dir, fmt="adapter"|"merged"|"gguf", out=DIR, quant=None, check_items=20, check=True)

Every export is atomic (built in a temp dir beside DIR, renamed at the end; a failed export
leaves no DIR) and writes DIR/export_manifest.json with the hashes of every written file.

merged: the adapter is merged into an fp32 base with PeftModel.merge_and_unload; before anything
is written, the merged model's logits are compared with the unmerged base+adapter on a few
prompts (rendered with harness.prompts.render_prompt) and the export fails if they differ.
A run trained against an NF4 (4-bit) base is never merged silently: the base is loaded
dequantized in fp32, and the manifest and console say so.

gguf: the merged model is converted with llama.cpp's converter (harness.gguf), optionally
quantized, loaded back with llama.cpp and checked on the task's eval prompts against the
adapter's own transformers+PEFT outputs (JSON validity and exact-match rates): DIR/gguf_check.json.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.io import UserError, atomic_dir, read_json, sha256_file, write_json
from harness.runs import RunInfo, load_run, read_status

FORMATS = ("adapter", "merged", "gguf")
GGUF_QUANTS = ("q8_0", "f16", "q4_k_m")
DEFAULT_GGUF_QUANT = "q8_0"
MERGE_ATOL = 1e-4  # max |merged logits - (base+adapter) logits|, fp32 ...
MERGE_RTOL = 1e-5  # ... plus this fraction of max |logit|: deep models accumulate fp32 round-off (a wrong merge is off by >0.1)
NF4_NOTE = ("merged into a dequantized fp32 base (the run trained against an NF4 base; merged weights differ "
            "from the 4-bit model's behaviour by quantization error)")
FALLBACK_PROMPTS = (
    "Hello! Who are you?",
    'Return a JSON object with keys "name" and "age" for: Ada is 36 years old.',
    "Summarise in one sentence: the quick brown fox jumps over the lazy dog.",
)

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# run checks
# --------------------------------------------------------------------------------------------

def check_run(run_dir: str | Path) -> RunInfo:
    """The run's RunInfo, or a UserError (exit 2) naming exactly what makes it unexportable."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: run directory not found")
    info = load_run(run_dir)
    problems = []
    st = read_status(run_dir)
    if st.get("status") == "missing":
        problems.append("status.json is missing (the run never finished)")
    elif st.get("status") != "complete":
        extra = f": {st.get('error')}" if st.get("error") else ""
        problems.append(f"status.json says {st.get('status')!r}, not 'complete'{extra}")
    adapter = run_dir / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        problems.append(f"{adapter}/adapter_config.json is missing")
    if not (adapter / "adapter_model.safetensors").is_file():
        problems.append(f"{adapter}/adapter_model.safetensors is missing")
    if not (run_dir / "config.yaml").is_file():
        problems.append(f"{run_dir}/config.yaml is missing (needed to find the base model and task)")
    if problems:
        raise UserError(f"{run_dir}: not a finished run, cannot export: " + "; ".join(problems))
    if not isinstance(info.config.get("model"), dict):
        raise UserError(f"{run_dir}/config.yaml: no 'model' section; cannot tell which base model the adapter belongs to")
    return info


def run_spec(info: RunInfo):
    """The run's base ModelSpec, checked against the base identity recorded in manifest.json."""
    from harness.models import resolve_model

    spec = resolve_model(info.config["model"])
    recorded = _recorded_base_identity(info.manifest)
    if recorded and recorded != spec.identity:
        raise UserError(
            f"{info.run_dir}/manifest.json: the run was trained on base identity {recorded}, but its config.yaml "
            f"model now resolves to {spec.identity} ({spec.path}); refusing to export against a different base"
        )
    return spec


def _recorded_base_identity(manifest: dict) -> str | None:
    for key in ("base_identity", "model_identity"):
        if isinstance(manifest.get(key), str):
            return manifest[key]
    for key in ("base", "model", "base_model"):
        v = manifest.get(key)
        if isinstance(v, dict) and isinstance(v.get("identity"), str):
            return v["identity"]
    return None


def _run_quant(info: RunInfo) -> str:
    q = info.config.get("quant")
    if isinstance(q, dict):
        q = q.get("kind") or q.get("name")
    return str(q or "none").lower()


# --------------------------------------------------------------------------------------------
# eval items (for the merge verification prompts and the GGUF behaviour check)
# --------------------------------------------------------------------------------------------

@dataclass
class CheckItem:
    id: str
    messages: list[dict]
    reference: str = ""


@dataclass
class TaskInfo:
    name: str
    items: list[CheckItem] = field(default_factory=list)
    max_new_tokens: int = 128
    source: str = ""


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def load_check_items(config: dict, n: int, run_dir: Path | None = None) -> TaskInfo:
    """Up to `n` eval prompts of the run's task as chat messages (system + template applied)."""
    task_cfg = config.get("task") or {}
    if isinstance(task_cfg, str):
        task_cfg = {"name": task_cfg}
    name = str(task_cfg.get("name") or "task")
    info = None
    try:
        from harness import tasks as tasks_mod  # written by another engineer; optional
    except ImportError:
        tasks_mod = None
    if tasks_mod is not None and hasattr(tasks_mod, "load_task"):
        try:
            info = _items_via_load_task(tasks_mod, task_cfg, name, n)
        except UserError:
            raise
        except Exception as exc:  # unknown API shape: fall back to reading the files directly
            _stderr(f"note: harness.tasks.load_task did not give eval items ({type(exc).__name__}: {exc}); reading task.yaml directly")
            info = None
    if info is None:
        info = _items_via_yaml(task_cfg, name, n)
    return info


def _task_yaml_path(task_cfg: dict, name: str) -> Path:
    p = task_cfg.get("path")
    if p:
        p = Path(os.path.expanduser(str(p)))
        return p / "task.yaml" if p.is_dir() else p
    for root in (Path.cwd() / "evalsets", _repo_root() / "evalsets"):
        cand = root / name / "task.yaml"
        if cand.is_file():
            return cand
    return Path("evalsets") / name / "task.yaml"


def _items_via_load_task(tasks_mod, task_cfg: dict, name: str, n: int) -> TaskInfo | None:
    task = tasks_mod.load_task(task_cfg.get("path") or name)
    system = _first_attr(task, ("system_prompt", "system"))
    template = _first_attr(task, ("prompt_template", "template")) or "{prompt}"
    data = getattr(task, "data", None) or {}
    examples = None
    loader = getattr(task, "load_split", None)
    if callable(loader):
        for split in ("eval", "test", "val"):
            if not data or data.get(split):
                try:
                    examples = list(loader(split))
                    break
                except (KeyError, ValueError, FileNotFoundError):
                    continue
    if examples is None:
        return None
    gen = _first_attr(task, ("generation", "gen", "gen_params", "generate")) or {}
    return _build_items(str(getattr(task, "name", name)), examples, system, template, n, _max_new_tokens(gen),
                        source=f"harness.tasks.load_task({task_cfg.get('path') or name!r})")


def _first_attr(obj: Any, names: Sequence[str]) -> Any:
    for nm in names:
        v = obj.get(nm) if isinstance(obj, dict) else getattr(obj, nm, None)
        if v is not None and not callable(v):
            return v
    return None


def _max_new_tokens(gen: Any, default: int = 128) -> int:
    if isinstance(gen, dict):
        v = gen.get("max_new_tokens") or gen.get("max_tokens")
    else:
        v = getattr(gen, "max_new_tokens", None)
    try:
        return int(v) if v else default
    except (TypeError, ValueError):
        return default


def _items_via_yaml(task_cfg: dict, name: str, n: int) -> TaskInfo:
    import yaml

    path = _task_yaml_path(task_cfg, name)
    if not path.is_file():
        raise UserError(f"{path}: task definition not found (the run's config.yaml names task {name!r}); "
                        "pass --no-check to skip the GGUF behaviour check")
    try:
        tdef = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: invalid YAML: {exc}") from None
    base = path.parent
    eval_file = _find_eval_file(tdef, base)
    if eval_file is None:
        raise UserError(f"{path}: no eval split found (expected e.g. 'eval: eval.jsonl' or 'splits: {{eval: ...}}')")
    from harness.example import Example

    examples = []
    with open(eval_file, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{eval_file}:{lineno}: invalid JSON: {exc.msg}") from None
            ex = _record_to_example(rec, str(eval_file), lineno)
            if ex is not None:
                examples.append(ex)
            if len(examples) >= n:
                break
    gen = tdef.get("generation") or tdef.get("gen") or {}
    return _build_items(name, examples, tdef.get("system_prompt"), tdef.get("prompt_template") or "{prompt}",
                        n, _max_new_tokens(gen), source=str(eval_file))


def _find_eval_file(tdef: dict, base: Path) -> Path | None:
    cands: list[Any] = []
    for key in ("eval", "eval_file", "test"):
        cands.append(tdef.get(key))
    for group in ("splits", "data", "files"):
        g = tdef.get(group)
        if isinstance(g, dict):
            cands += [g.get("eval"), g.get("test")]
    for c in cands:
        if isinstance(c, dict):
            c = c.get("path") or c.get("file")
        if isinstance(c, str) and c:
            p = Path(os.path.expanduser(c))
            p = p if p.is_absolute() else base / p
            if p.is_file():
                return p
    for pat in ("eval.jsonl", "*eval*.jsonl", "test.jsonl"):
        hits = sorted(base.glob(pat))
        if hits:
            return hits[0]
    return None


def _record_to_example(rec: dict, source: str, line: int):
    from harness.example import Example

    if isinstance(rec.get("messages"), list):
        msgs = tuple({"role": m["role"], "content": m["content"]} for m in rec["messages"])
    else:
        prompt = rec.get("prompt") or rec.get("input") or rec.get("instruction") or rec.get("question")
        if prompt is None:
            return None
        target = rec.get("completion") or rec.get("response") or rec.get("output") or rec.get("target") or rec.get("answer") or ""
        msgs = ({"role": "user", "content": str(prompt)}, {"role": "assistant", "content": str(target)})
    rid = str(rec.get("id") or "")
    return Example(msgs, id=rid, source=source, line=line)


def _build_items(name, examples, system, template, n, max_new, source) -> TaskInfo:
    from harness.prompts import build_messages

    items = []
    for ex in examples[:n]:
        msgs = build_messages(ex, system_prompt=system, prompt_template=template)
        items.append(CheckItem(ex.id, msgs, ex.target))
    return TaskInfo(name, items, max_new, source)


# --------------------------------------------------------------------------------------------
# models: load base + adapter, generate, logits, merge
# --------------------------------------------------------------------------------------------

def load_peft_fp32(spec, adapter_dir: Path):
    """fp32 CPU base with the adapter attached (unmerged), in eval mode."""
    from peft import PeftModel

    from harness.models import load_model

    base = load_model(spec, device="cpu", quant=None, dtype="float32")
    model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
    model.eval()
    return model


def prompt_logits(model, tokenizer, prompts: Sequence[str]) -> list:
    """Last-layer logits (fp32, CPU) for each rendered prompt, one forward pass each (no padding)."""
    import torch

    out = []
    with torch.no_grad():
        for p in prompts:
            ids = tokenizer(p, add_special_tokens=False, return_tensors="pt")["input_ids"]
            out.append(model(input_ids=ids).logits.float().cpu())
    return out


def max_abs_diff(a: list, b: list) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b)) if a else 0.0


def hf_generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 128) -> list[str]:
    """Greedy outputs of a transformers (or PEFT) model, one prompt at a time (no padding effects)."""
    import torch

    outs = []
    eos = tokenizer.eos_token_id
    with torch.no_grad():
        for p in prompts:
            ids = tokenizer(p, add_special_tokens=False, return_tensors="pt")["input_ids"]
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id or eos)
            outs.append(tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True))
    return outs


def _verification_prompts(tokenizer, items: Sequence[CheckItem], k: int = 3) -> list[str]:
    from harness.prompts import render_prompt

    msgs = [it.messages for it in items[:k]]
    if len(msgs) < k:
        msgs += [[{"role": "user", "content": p}] for p in FALLBACK_PROMPTS[: k - len(msgs)]]
    return [render_prompt(tokenizer, m) for m in msgs]


@dataclass
class MergeResult:
    model: Any  # the merged transformers model
    tokenizer: Any
    max_abs_diff: float
    n_prompts: int
    note: str | None
    adapter_outputs: list[str] | None = None
    tolerance: float = MERGE_ATOL


def merge_adapter(info: RunInfo, spec, *, items: Sequence[CheckItem] = (), atol: float = MERGE_ATOL,
                  gen_prompts: Sequence[str] | None = None, max_new_tokens: int = 128, log: Log = _stderr) -> MergeResult:
    """Merge the run's adapter into an fp32 base and prove the merged logits equal base+adapter.

    `gen_prompts`: prompts to generate greedy adapter outputs for (the GGUF check's reference),
    taken from the unmerged PeftModel before merging.
    """
    from harness.models import load_tokenizer

    note = None
    if _run_quant(info) == "nf4":
        note = NF4_NOTE
        log(f"note: {NF4_NOTE}")
    tok = load_tokenizer(spec)
    peft_model = load_peft_fp32(spec, info.adapter_dir)
    adapter_outputs = None
    if gen_prompts:
        log(f"generating adapter reference outputs (transformers+PEFT, greedy) on {len(gen_prompts)} prompts...")
        adapter_outputs = hf_generate(peft_model, tok, gen_prompts, max_new_tokens)
    prompts = _verification_prompts(tok, list(items))
    ref = prompt_logits(peft_model, tok, prompts)
    merged = peft_model.merge_and_unload()
    merged.eval()
    got = prompt_logits(merged, tok, prompts)
    diff = max_abs_diff(ref, got)
    tol = merge_tolerance(ref, atol)
    log(f"merge check: max |merged - (base+adapter)| logit diff = {diff:.3g} over {len(prompts)} prompts "
        f"(tolerance {tol:.3g}; max |logit| {max(float(r.abs().max()) for r in ref):.3g})")
    if not diff < tol:
        raise UserError(
            f"{info.run_dir}: merge verification FAILED: merged logits differ from base+adapter by {diff:.3g} "
            f"(tolerance {tol:.3g}); nothing was written", exit_code=1)
    return MergeResult(merged, tok, diff, len(prompts), note, adapter_outputs, tol)


def merge_tolerance(ref_logits: list, atol: float = MERGE_ATOL, rtol: float = MERGE_RTOL) -> float:
    """atol + rtol * max |logit| (fp32): 1e-4 for small logits, a few 1e-4 for a 30-layer model's."""
    return atol + rtol * max((float(r.abs().max()) for r in ref_logits), default=0.0)


def save_merged(res: MergeResult, dest: Path, *, dtype: str = "float32", items: Sequence[CheckItem] = (),
                atol: float = MERGE_ATOL) -> float:
    """Save the merged model + tokenizer as safetensors and re-verify the saved copy's logits."""
    import torch
    from transformers import AutoModelForCausalLM

    dest.mkdir(parents=True, exist_ok=True)
    model = res.model
    prompts = _verification_prompts(res.tokenizer, list(items))
    ref = prompt_logits(model, res.tokenizer, prompts)
    if dtype in ("float16", "f16"):
        model = model.to(torch.float16)
    model.save_pretrained(str(dest), safe_serialization=True)
    res.tokenizer.save_pretrained(str(dest))
    # Reload what was written: a serialization bug (e.g. tied weights) must not ship silently.
    back = AutoModelForCausalLM.from_pretrained(str(dest), dtype=torch.float32, use_safetensors=True)
    back.eval()
    got = prompt_logits(back, res.tokenizer, prompts)
    diff = max_abs_diff(ref, got)
    tol = merge_tolerance(ref, atol) if dtype not in ("float16", "f16") else max(atol, 0.05 * max(float(r.abs().max()) for r in ref))
    if not diff <= tol:
        raise UserError(f"{dest}: the saved merged model does not reload to the same logits "
                        f"(max diff {diff:.3g} > {tol:.3g}); nothing was written", exit_code=1)
    return diff


# --------------------------------------------------------------------------------------------
# README model card
# --------------------------------------------------------------------------------------------

def _sweep_report(run_dir: Path, run_id: str) -> dict | None:
    sweep = run_dir.resolve().parent.parent
    verdict_p = sweep / "report" / "verdict.json"
    summary_p = sweep / "scores" / "summary.json"
    if not (verdict_p.is_file() and summary_p.is_file()):
        return None
    try:
        verdict = read_json(verdict_p)
        summary = read_json(summary_p)
    except (OSError, json.JSONDecodeError):
        return None
    return {"sweep_dir": str(sweep), "verdict": verdict, "summary": summary, "run_id": run_id}


def _verdict_text(verdict: Any) -> str:
    if isinstance(verdict, str):
        return verdict
    if isinstance(verdict, dict):
        for key in ("text", "verdict_text", "verdict", "summary", "headline", "message"):
            v = verdict.get(key)
            if isinstance(v, str) and v.strip():
                return v
            if isinstance(v, list) and all(isinstance(x, str) for x in v):
                return "\n".join(v)
    return "```json\n" + json.dumps(verdict, indent=2, sort_keys=True, default=str) + "\n```"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "n/a" if v is None else str(v)


def model_card(info: RunInfo, spec, *, fmt: str, extra: dict | None = None) -> str:
    cfg = info.config
    m = info.metrics
    lines = [f"# LoRA adapter `{info.run_id}`", ""]
    lines += [f"Exported by lora-harness (`harness export --format {fmt}`) from run directory `{info.run_dir}`.", ""]
    lines += ["## Base model", "",
              f"- name: `{spec.name}`",
              f"- identity: `{spec.identity}`",
              f"- source: `{(cfg.get('model') or {}).get('source', 'n/a')}`",
              f"- weights used at export: `{spec.path}`",
              f"- training quantization: `{_run_quant(info)}`", ""]
    task = cfg.get("task") or {}
    lines += ["## Task", "", f"- name: `{(task.get('name') if isinstance(task, dict) else task) or 'n/a'}`", ""]
    lines += ["## Data", ""]
    data = {k: v for k, v in info.manifest.items() if "data" in k or "hash" in k or k in ("splits", "datasets")}
    if data:
        lines += ["Data hashes from the run's manifest.json:", "", "```json",
                  json.dumps(data, indent=2, sort_keys=True, default=str), "```", ""]
    else:
        lines += ["(manifest.json records no data hashes)", ""]
    lines += ["## Hyperparameters", ""]
    for section in ("lora", "train"):
        sec = cfg.get(section)
        if isinstance(sec, dict) and sec:
            lines += [f"**{section}**", "", "| key | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(sec.items())]
            lines += [""]
    if "seed" in cfg:
        lines += [f"seed: {cfg['seed']}", ""]
    lines += ["## Training metrics", "", "| metric | value |", "|---|---|"]
    for key in ("best_val_loss", "best_step", "train_time_s", "tokens_per_s", "peak_mem_mb", "trainable_params", "adapter_bytes"):
        if key in m:
            lines.append(f"| {key} | {_fmt(m[key])} |")
    if not m:
        lines.append("| (metrics.json missing) | |")
    lines.append("")
    rep = _sweep_report(info.run_dir, info.run_id)
    if rep is not None:
        summary = rep["summary"]
        primary = summary.get("primary_metric")
        models = summary.get("models") or {}
        lines += ["## Evaluation (sweep report)", "", f"Sweep: `{rep['sweep_dir']}`; task `{summary.get('task')}` "
                  f"(version {summary.get('task_version')}), primary metric `{primary}`.", ""]
        keys = [k for k in ("base", "fewshot", info.run_id) if k in models]
        metric_names: list[str] = []
        for k in keys:
            for name in (models[k].get("metrics") or {}):
                if name not in metric_names:
                    metric_names.append(name)
        if primary in metric_names:
            metric_names.remove(primary)
            metric_names.insert(0, primary)
        if keys and metric_names:
            lines += ["| model | n | " + " | ".join(metric_names) + " |",
                      "|---|---|" + "---|" * len(metric_names)]
            for k in keys:
                mm = models[k].get("metrics") or {}
                label = "this adapter" if k == info.run_id else k
                lines.append(f"| {label} | {models[k].get('n', '')} | " + " | ".join(_fmt(mm.get(x)) for x in metric_names) + " |")
            lines.append("")
            probes = (models.get(info.run_id) or {}).get("probes") or {}
            if probes:
                lines += ["Forgetting probes (this adapter): " + ", ".join(f"{f} {_fmt(v)}" for f, v in sorted(probes.items())), ""]
        elif info.run_id not in models:
            lines += [f"(this run `{info.run_id}` has no scores in the sweep summary)", ""]
        lines += ["### Verdict", "", _verdict_text(rep["verdict"]), ""]
    if extra:
        lines += ["## Export", "", "```json", json.dumps(extra, indent=2, sort_keys=True, default=str), "```", ""]
    lines += ["## Usage", ""]
    if fmt == "adapter":
        lines += ["```python",
                  "from peft import PeftModel",
                  "from transformers import AutoModelForCausalLM, AutoTokenizer",
                  "tok = AutoTokenizer.from_pretrained(EXPORT_DIR)",
                  "base = AutoModelForCausalLM.from_pretrained(BASE_MODEL_DIR)  # the base model above",
                  "model = PeftModel.from_pretrained(base, EXPORT_DIR)",
                  "```", ""]
    elif fmt == "merged":
        lines += ["```python",
                  "from transformers import AutoModelForCausalLM, AutoTokenizer",
                  "tok = AutoTokenizer.from_pretrained(EXPORT_DIR)",
                  "model = AutoModelForCausalLM.from_pretrained(EXPORT_DIR)  # standalone: no PEFT needed",
                  "```", ""]
    else:
        lines += ["```sh", "llama-server -m EXPORT_DIR/<file>.gguf   # or: llama_cpp.Llama(model_path=...)", "```", ""]
    lines += ["Prompts must use the tokenizer's chat template (`chat_template.jinja`), as in training.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# manifest
# --------------------------------------------------------------------------------------------

def tool_versions(llama: bool = False) -> dict:
    import importlib.metadata as md

    out = {}
    names = ["torch", "transformers", "peft", "safetensors", "lora-harness"]
    if llama:
        names += ["llama_cpp_python", "gguf"]
    for n in names:
        key = "llama_cpp" if n == "llama_cpp_python" else n.replace("-", "_")
        try:
            out[key] = md.version(n)
        except md.PackageNotFoundError:
            out[key] = None
    return out


def file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _tokenizer_files(tok, dest: Path) -> None:
    tok.save_pretrained(str(dest))
    tmpl = getattr(tok, "chat_template", None)
    if isinstance(tmpl, str) and tmpl and not (dest / "chat_template.jinja").is_file():
        (dest / "chat_template.jinja").write_text(tmpl, encoding="utf-8")


# --------------------------------------------------------------------------------------------
# export formats
# --------------------------------------------------------------------------------------------

def _prepare_out(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise UserError(f"{out}: exists and is not a directory")
        if any(out.iterdir()) and not (out / "export_manifest.json").is_file():
            raise UserError(f"{out}: exists, is not empty and is not a previous export; choose another --out")


def export_run(run_dir: str | Path, fmt: str, out: str | Path, *, quant: str | None = None, check_items: int = 20,
               check: bool = True, tolerance: float = 0.1, max_new_tokens: int | None = None,
               atol: float = MERGE_ATOL, log: Log = _stderr) -> dict:
    """Export `run_dir` into `out` (atomically); returns the export manifest written to out/export_manifest.json."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r} (expected {', '.join(FORMATS)})")
    if fmt == "gguf":
        quant = quant or DEFAULT_GGUF_QUANT
        if quant not in GGUF_QUANTS:
            raise UserError(f"unknown --quant {quant!r} for gguf (expected {', '.join(GGUF_QUANTS)})")
    elif fmt == "merged":
        if quant not in (None, "f16", "f32"):
            raise UserError(f"--quant {quant!r} is not available for merged safetensors (use f16, or --format gguf for {quant})")
    elif quant is not None:
        raise UserError("--quant applies only to --format merged (f16) or gguf; an adapter is exported as trained")
    if check_items < 1:
        raise UserError(f"--check-items must be >= 1 (got {check_items})")
    info = check_run(run_dir)
    out = Path(out)
    _prepare_out(out)
    spec = run_spec(info)
    adapter_sha = sha256_file(info.adapter_dir / "adapter_model.safetensors")
    manifest: dict[str, Any] = {
        "format": fmt,
        "quant": quant,
        "source_run_id": info.run_id,
        "run_dir": str(Path(run_dir).resolve()),
        "base": {"name": spec.name, "identity": spec.identity, "path": str(spec.path)},
        "adapter_sha256": adapter_sha,
        "training_quant": _run_quant(info),
        "created_unix": int(time.time()),
        "tool_versions": tool_versions(llama=fmt == "gguf"),
    }
    t0 = time.time()
    try:
        with atomic_dir(out) as tmp:
            if fmt == "adapter":
                _export_adapter(info, spec, tmp, manifest)
            elif fmt == "merged":
                _export_merged(info, spec, tmp, manifest, quant=quant, atol=atol, log=log)
            else:
                _export_gguf(info, spec, tmp, manifest, quant=quant, check=check, check_items=check_items,
                             tolerance=tolerance, max_new_tokens=max_new_tokens, atol=atol, log=log)
                if not manifest["gguf_check"].get("passed", False):
                    raise _CheckFailed(read_json(tmp / "gguf_check.json"))
            manifest["elapsed_s"] = round(time.time() - t0, 2)
            manifest["files"] = file_hashes(tmp)
            write_json(tmp / "export_manifest.json", manifest)
    except _CheckFailed as exc:
        side = out.with_name(out.name + ".gguf_check.failed.json")
        write_json(side, exc.result)
        raise UserError(
            f"{out}: GGUF behaviour check FAILED: JSON validity {exc.result['gguf_json_valid_rate']:.2f} vs adapter "
            f"{exc.result['adapter_json_valid_rate']:.2f} (tolerance {exc.result['tolerance']}), exact match with adapter "
            f"{exc.result['exact_match_rate']:.2f} on {exc.result['n']} items; nothing exported (numbers in {side}; "
            "--no-check skips the check)", exit_code=1) from None
    log(f"exported {fmt} to {out}")
    return manifest


class _CheckFailed(Exception):
    def __init__(self, result: dict):
        super().__init__("gguf check failed")
        self.result = result


def _export_adapter(info: RunInfo, spec, dest: Path, manifest: dict) -> None:
    from harness.models import load_tokenizer

    for p in sorted(info.adapter_dir.iterdir()):
        if p.is_file() and p.name != "README.md":
            shutil.copy2(p, dest / p.name)
    if sha256_file(dest / "adapter_model.safetensors") != manifest["adapter_sha256"]:
        raise UserError(f"{info.adapter_dir}: adapter changed while copying", exit_code=1)
    _tokenizer_files(load_tokenizer(spec), dest)
    for name in ("config.yaml", "metrics.json", "manifest.json"):
        if (info.run_dir / name).is_file():
            (dest / "run").mkdir(exist_ok=True)
            shutil.copy2(info.run_dir / name, dest / "run" / name)
    (dest / "README.md").write_text(model_card(info, spec, fmt="adapter"), encoding="utf-8")


def _export_merged(info: RunInfo, spec, dest: Path, manifest: dict, *, quant, atol, log) -> None:
    items = _safe_items(info, 3, log)
    res = merge_adapter(info, spec, items=items, atol=atol, log=log)
    dtype = "float16" if quant == "f16" else "float32"
    reload_diff = save_merged(res, dest, dtype=dtype, items=items, atol=atol)
    manifest["merge"] = {
        "method": "PeftModel.merge_and_unload on an fp32 base",
        "verified_max_abs_logit_diff": res.max_abs_diff,
        "tolerance": res.tolerance,
        "verification_prompts": res.n_prompts,
        "saved_dtype": dtype,
        "reload_max_abs_logit_diff": reload_diff,
        "note": res.note,
    }
    card = model_card(info, spec, fmt="merged", extra={"merge": manifest["merge"]})
    card = card.replace(f"# LoRA adapter `{info.run_id}`", f"# Merged model from LoRA run `{info.run_id}`", 1)
    (dest / "README.md").write_text(card, encoding="utf-8")


def _safe_items(info: RunInfo, n: int, log: Log) -> list[CheckItem]:
    """Eval prompts for the merge check; the fixed fallback prompts when the task cannot be read."""
    try:
        return load_check_items(info.config, n, info.run_dir).items
    except UserError as exc:
        log(f"note: using fixed prompts for the merge check ({exc})")
        return []


def _export_gguf(info: RunInfo, spec, dest: Path, manifest: dict, *, quant, check, check_items, tolerance,
                 max_new_tokens, atol, log) -> None:
    from harness import gguf as hgguf
    from harness.prompts import render_prompt

    task = load_check_items(info.config, check_items, info.run_dir) if check else None
    if task is not None and not task.items:
        raise UserError(f"{task.source}: no eval items found for the GGUF behaviour check (--no-check skips it)")
    max_new = int(max_new_tokens or (task.max_new_tokens if task else 128))
    from harness.models import load_tokenizer

    tok = load_tokenizer(spec)
    gen_prompts = [render_prompt(tok, it.messages) for it in task.items] if task else None
    res = merge_adapter(info, spec, items=task.items if task else [], atol=atol, gen_prompts=gen_prompts,
                        max_new_tokens=max_new, log=log)
    dest = dest.resolve()  # llama.cpp's converter runs in its own cwd: hand it absolute paths only
    work = Path(tempfile.mkdtemp(prefix=".gguf-work.", dir=dest.parent))
    try:
        hf_dir = work / "merged"
        save_merged(res, hf_dir, dtype="float32", items=task.items if task else [], atol=atol)
        res.model = None
        stem = _safe_name(info.run_id)
        final = dest / f"{stem}.{quant}.gguf"
        built = work / final.name  # converted in the work dir (the converter leaves cache metadata beside its output)
        if quant == "q4_k_m":
            f16 = work / f"{stem}.f16.gguf"
            log("converting merged model to GGUF (f16) with llama.cpp's convert_hf_to_gguf.py ...")
            hgguf.convert_hf_to_gguf(hf_dir, f16, "f16")
            log("quantizing to q4_k_m with llama.cpp (llama_model_quantize) ...")
            hgguf.quantize_gguf(f16, built, "q4_k_m")
        else:
            log(f"converting merged model to GGUF ({quant}) with llama.cpp's convert_hf_to_gguf.py ...")
            hgguf.convert_hf_to_gguf(hf_dir, built, quant)
        if not built.is_file() or built.stat().st_size == 0:
            raise UserError(f"{built}: the GGUF converter reported success but wrote no file", exit_code=1)
        os.replace(built, final)
        _tokenizer_files(res.tokenizer, dest / "tokenizer")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    manifest["gguf_file"] = final.name
    manifest["merge"] = {"method": "PeftModel.merge_and_unload on an fp32 base",
                         "verified_max_abs_logit_diff": res.max_abs_diff, "tolerance": res.tolerance, "note": res.note}
    try:
        manifest["converter_dir"] = str(hgguf.converter_dir())
    except Exception:
        pass
    if task is not None:
        log(f"checking the GGUF with llama.cpp on {len(task.items)} eval items of task {task.name!r} ...")
        prompt_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in gen_prompts]
        gguf_outputs = llamacpp_generate(final, prompt_ids, max_new)
        result = compare_outputs(res.adapter_outputs or [], gguf_outputs, tolerance=tolerance)
        result.update({"task": task.name, "items_source": task.source, "gguf_file": final.name, "quant": quant,
                       "max_new_tokens": max_new,
                       "items": [{"id": it.id, "adapter": a, "gguf": g}
                                 for it, a, g in zip(task.items, res.adapter_outputs or [], gguf_outputs)]})
        write_json(dest / "gguf_check.json", result)
        manifest["gguf_check"] = {k: v for k, v in result.items() if k != "items"}
        log(f"gguf check: JSON valid {result['gguf_json_valid_rate']:.2f} (adapter {result['adapter_json_valid_rate']:.2f}), "
            f"exact match with adapter {result['exact_match_rate']:.2f} on {result['n']} items -> "
            f"{'PASS' if result['passed'] else 'FAIL'}")
    else:
        manifest["gguf_check"] = {"skipped": True, "passed": True}
    card = model_card(info, spec, fmt="gguf", extra={"gguf_file": final.name, "quant": quant,
                                                     "gguf_check": manifest["gguf_check"]})
    card = card.replace(f"# LoRA adapter `{info.run_id}`", f"# GGUF ({quant}) of LoRA run `{info.run_id}`", 1)
    (dest / "README.md").write_text(card, encoding="utf-8")


def _safe_name(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s) or "model"


def is_json(text: str) -> bool:
    try:
        json.loads(text.strip())
        return True
    except (json.JSONDecodeError, ValueError):
        return False


def compare_outputs(adapter: Sequence[str], gguf: Sequence[str], *, tolerance: float = 0.1) -> dict:
    n = min(len(adapter), len(gguf))
    a_valid = sum(is_json(x) for x in adapter[:n]) / n if n else 0.0
    g_valid = sum(is_json(x) for x in gguf[:n]) / n if n else 0.0
    exact = sum(a.strip() == g.strip() for a, g in zip(adapter[:n], gguf[:n])) / n if n else 0.0
    return {"n": n, "adapter_json_valid_rate": a_valid, "gguf_json_valid_rate": g_valid, "exact_match_rate": exact,
            "tolerance": tolerance, "passed": bool(n) and g_valid >= a_valid - tolerance - 1e-12,
            "rule": "gguf_json_valid_rate >= adapter_json_valid_rate - tolerance"}


def llamacpp_generate(gguf_file: Path, prompts: Sequence[str] | Sequence[list[int]], max_new_tokens: int,
                      n_ctx: int = 2048) -> list[str]:
    """Greedy completions with llama.cpp in-process (llama_cpp.Llama).

    Prompts are token-id lists (tokenized by the same HF tokenizer the adapter saw, so both sides
    get identical tokens) or pre-rendered strings.
    """
    try:
        from llama_cpp import Llama
    except ImportError:
        raise UserError("llama-cpp-python is not installed, so the GGUF cannot be checked: "
                        "pip install 'lora-harness[llamacpp]' (or pass --no-check)") from None
    llm = Llama(model_path=str(gguf_file), n_ctx=n_ctx, n_threads=max(1, os.cpu_count() or 1), seed=0, verbose=False,
                logits_all=False)
    outs = []
    try:
        for p in prompts:
            llm.reset()
            r = llm.create_completion(p, max_tokens=max_new_tokens, temperature=0.0, top_k=1, top_p=1.0,
                                      repeat_penalty=1.0, seed=0)
            outs.append(r["choices"][0]["text"])
    finally:
        close = getattr(llm, "close", None)
        if callable(close):
            close()
    return outs
