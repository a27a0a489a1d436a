"""The README (model card) of an exported run: base model, task, data hashes, hyperparameters, training
metrics, the sweep's evaluation and verdict when the run came from a sweep, and how to load it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.backends.base import BASE
from harness.evaluate import FEWSHOT
from harness.io import read_json
from harness.runs import RunInfo


def run_quant(info: RunInfo) -> str:
    q = info.config.get("quant")
    if isinstance(q, dict):
        q = q.get("kind") or q.get("name")
    return str(q or "none").lower()


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
              f"- training quantization: `{run_quant(info)}`", ""]
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
        keys = [k for k in (BASE, FEWSHOT, info.run_id) if k in models]
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
        lines += ["```sh", "ollama create my-adapter -f EXPORT_DIR/Modelfile && ollama run my-adapter",
                  "llama-server -m EXPORT_DIR/<file>.gguf   # or: llama_cpp.Llama(model_path=...)", "```", "",
                  "The Modelfile's TEMPLATE renders exactly the prompts the adapter was trained and evaluated with, "
                  "and its SYSTEM is the task's system prompt.", ""]
    lines += ["Prompts must use the tokenizer's chat template (`chat_template.jinja`), as in training.", ""]
    lines += _prompt_format_lines(info.manifest.get("prompt_format"))
    return "\n".join(lines)


def _prompt_format_lines(fmt: Any) -> list[str]:
    """How training formatted prompts (the run manifest's prompt_format, harness.prompts.ChatFormat): what a user of
    the export must do the same way (template kwargs, a system prompt merged into the user turn, stop tokens)."""
    if not isinstance(fmt, dict):
        return []
    out = []
    kw = fmt.get("chat_template_kwargs") or {}
    if kw:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(kw.items()))
        out.append(f"- chat template variables: `tok.apply_chat_template(messages, add_generation_prompt=True, {args})`")
    if fmt.get("system_merged_into_user"):
        out.append("- the template has no system role: the system prompt was put in front of the first user message, "
                   "separated by a blank line")
    if not fmt.get("chat_template", True):
        out.append("- no chat template: prompts were `SYSTEM: ...\\n\\nUSER: ...\\n\\nASSISTANT: `")
    if fmt.get("end_of_turn"):
        out.append(f"- answers end with `{fmt['end_of_turn']}`; stop on token ids {fmt.get('stop_token_ids')}")
    return (["Prompt format in training:", ""] + out + [""]) if out else []


