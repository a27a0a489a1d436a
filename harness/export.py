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
quantized, and checked through the one evaluation path (harness.evaluate.evaluate_models): the
adapter (transformers+PEFT), the merged model and the GGUF (llama.cpp backend) are scored on the
task's eval items with the task's own metrics and compared pairwise with harness.stats.compare_paired
(the report's statistic), listing the items whose result flips: DIR/gguf_check.json. DIR/Modelfile
lets `ollama create` serve it with the same prompt format (harness.ollama).

A run directory may come from someone else (a CI artifact): its config never enables remote code
(only --trust-remote-code does), and the adapter export's copy of the run's files is redacted.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.io import UserError, atomic_dir, read_json, regular_files, sha256_file, write_json
from harness.model_card import model_card, run_quant
from harness.runs import RunInfo, load_run, read_status

FORMATS = ("adapter", "merged", "gguf")
GGUF_QUANTS = ("q8_0", "f16", "q4_k_m", "f32")
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


def run_spec(info: RunInfo, model_cfg: dict | None = None):
    """The run's base ModelSpec, checked against the base identity recorded in manifest.json."""
    from harness.models import resolve_model

    spec = resolve_model(model_cfg if model_cfg is not None else run_model_cfg(info, log=lambda m: None))
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


# --------------------------------------------------------------------------------------------
# the run's task (through tasks.load_task, the one task.yaml reader) and the trust policy
# --------------------------------------------------------------------------------------------

def run_model_cfg(info: RunInfo, *, trust_remote_code: bool = False, log: Log = _stderr) -> dict:
    """The run's model config; a run directory never enables remote code by itself (only --trust-remote-code)."""
    from harness.targets import trusted_model_cfg

    given = ["model.trust_remote_code=true"] if trust_remote_code else []
    model, notes = trusted_model_cfg(info.config["model"], given, info.run_dir / "config.yaml")
    for n in notes:
        log(n.replace("pass model.trust_remote_code=... yourself", "pass --trust-remote-code"))
    model["trust_remote_code"] = bool(trust_remote_code)
    return model


def run_task(info: RunInfo):
    from harness.tasks import load_task, task_ref

    return load_task(task_ref(info.config.get("task") or {}))


def task_messages(task, n: int) -> list[list[dict]]:
    """The first `n` eval prompts of `task` as chat messages, exactly as the evaluation sends them."""
    from harness.prompts import build_messages

    return [build_messages(ex, system_prompt=task.system_prompt, prompt_template=task.prompt_template)
            for ex in task.load_split("eval")[:n]]


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


def _verification_prompts(tokenizer, messages: Sequence[list[dict]], k: int = 3) -> list[str]:
    from harness.prompts import render_prompt

    msgs = list(messages[:k])
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
    tolerance: float = MERGE_ATOL


def merge_adapter(info: RunInfo, spec, *, messages: Sequence[list[dict]] = (), atol: float = MERGE_ATOL,
                  log: Log = _stderr) -> MergeResult:
    """Merge the run's adapter into an fp32 base and prove the merged logits equal base+adapter on
    `messages` (the task's eval prompts; fixed prompts fill up to 3)."""
    from harness.models import load_tokenizer

    note = None
    if run_quant(info) == "nf4":
        note = NF4_NOTE
        log(f"note: {NF4_NOTE}")
    tok = load_tokenizer(spec)
    peft_model = load_peft_fp32(spec, info.adapter_dir)
    prompts = _verification_prompts(tok, list(messages))
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
    return MergeResult(merged, tok, diff, len(prompts), note, tol)


def merge_tolerance(ref_logits: list, atol: float = MERGE_ATOL, rtol: float = MERGE_RTOL) -> float:
    """atol + rtol * max |logit| (fp32): 1e-4 for small logits, a few 1e-4 for a 30-layer model's."""
    return atol + rtol * max((float(r.abs().max()) for r in ref_logits), default=0.0)


def save_merged(res: MergeResult, dest: Path, *, dtype: str = "float32", messages: Sequence[list[dict]] = (),
                atol: float = MERGE_ATOL) -> float:
    """Save the merged model + tokenizer as safetensors and re-verify the saved copy's logits."""
    import torch
    from transformers import AutoModelForCausalLM

    dest.mkdir(parents=True, exist_ok=True)
    model = res.model
    prompts = _verification_prompts(res.tokenizer, list(messages))
    ref = prompt_logits(model, res.tokenizer, prompts)
    if dtype in ("float16", "f16"):
        model = model.to(torch.float16)
    model.save_pretrained(str(dest), safe_serialization=True)
    _tokenizer_files(res.tokenizer, dest)
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
    # transformers 5 writes no sentencepiece model; llama.cpp's Gemma, Gemma 2 and Phi-3 converters read it
    spm = Path(str(tok.name_or_path)) / "tokenizer.model"
    if spm.is_file() and not (dest / "tokenizer.model").exists():
        shutil.copyfile(spm, dest / "tokenizer.model")
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
               check: bool = True, tolerance: float = 0.1, atol: float = MERGE_ATOL, trust_remote_code: bool = False,
               log: Log = _stderr) -> dict:
    """Export `run_dir` into `out` (atomically); returns the export manifest written to out/export_manifest.json."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r} (expected {', '.join(FORMATS)})")
    if fmt == "gguf":
        quant = quant or DEFAULT_GGUF_QUANT
        if quant not in GGUF_QUANTS:
            raise UserError(f"unknown --quant {quant!r} for gguf (expected {', '.join(GGUF_QUANTS)})")
    elif fmt == "merged":
        if quant not in (None, "f16", "f32"):  # f32 is the default
            raise UserError(f"--quant {quant!r} is not available for merged safetensors (use f16, or --format gguf for {quant})")
    elif quant is not None:
        raise UserError("--quant applies only to --format merged (f16) or gguf; an adapter is exported as trained")
    if check_items < 1:
        raise UserError(f"--check-items must be >= 1 (got {check_items})")
    info = check_run(run_dir)
    out = Path(out)
    _prepare_out(out)
    model_cfg = run_model_cfg(info, trust_remote_code=trust_remote_code, log=log)
    spec = run_spec(info, model_cfg)
    adapter_sha = sha256_file(info.adapter_dir / "adapter_model.safetensors")
    manifest: dict[str, Any] = {
        "format": fmt,
        "quant": quant,
        "source_run_id": info.run_id,
        "run_dir": str(Path(run_dir).resolve()),
        "base": {"name": spec.name, "identity": spec.identity, "path": str(spec.path)},
        "adapter_sha256": adapter_sha,
        "training_quant": run_quant(info),
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
                _export_gguf(info, spec, model_cfg, tmp, manifest, quant=quant, check=check, check_items=check_items,
                             tolerance=tolerance, atol=atol, log=log)
                if not manifest["gguf_check"].get("passed", False):
                    raise _CheckFailed(read_json(tmp / "gguf_check.json"))
            manifest["elapsed_s"] = round(time.time() - t0, 2)
            manifest["files"] = file_hashes(tmp)
            write_json(tmp / "export_manifest.json", manifest)
    except _CheckFailed as exc:
        side = out.with_name(out.name + ".gguf_check.failed.json")
        write_json(side, exc.result)
        raise UserError(f"{out}: GGUF behaviour check FAILED: {check_line(exc.result)}; nothing exported "
                        f"(per-item results in {side}; --no-check skips the check)", exit_code=1) from None
    log(f"exported {fmt} to {out}")
    return manifest


class _CheckFailed(Exception):
    def __init__(self, result: dict):
        super().__init__("gguf check failed")
        self.result = result


def _export_adapter(info: RunInfo, spec, dest: Path, manifest: dict) -> None:
    """The PEFT adapter + tokenizer + the run's config/metrics/manifest, redacted: an artifact meant for sharing."""
    import yaml

    from harness.config import redact
    from harness.models import load_tokenizer

    for p in regular_files(info.adapter_dir):  # a symbolic link is refused: its target is never shipped
        rel = p.relative_to(info.adapter_dir)
        if rel.as_posix() != "README.md":
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest / rel)
    if sha256_file(dest / "adapter_model.safetensors") != manifest["adapter_sha256"]:
        raise UserError(f"{info.adapter_dir}: adapter changed while copying", exit_code=1)
    _tokenizer_files(load_tokenizer(spec), dest)
    (dest / "run").mkdir(exist_ok=True)
    if (info.run_dir / "config.yaml").is_file():
        (dest / "run" / "config.yaml").write_text(yaml.safe_dump(redact(info.config), sort_keys=False), encoding="utf-8")
    for name in ("metrics.json", "manifest.json"):
        if (info.run_dir / name).is_file():
            write_json(dest / "run" / name, redact(read_json(info.run_dir / name)))
    (dest / "README.md").write_text(model_card(info, spec, fmt="adapter"), encoding="utf-8")


def _export_merged(info: RunInfo, spec, dest: Path, manifest: dict, *, quant, atol, log) -> None:
    messages = _safe_messages(info, 3, log)
    res = merge_adapter(info, spec, messages=messages, atol=atol, log=log)
    dtype = "float16" if quant == "f16" else "float32"
    reload_diff = save_merged(res, dest, dtype=dtype, messages=messages, atol=atol)
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


def _safe_messages(info: RunInfo, n: int, log: Log) -> list[list[dict]]:
    """Eval prompts for the merge check; the fixed fallback prompts when the task cannot be read."""
    try:
        return task_messages(run_task(info), n)
    except UserError as exc:
        log(f"note: using fixed prompts for the merge check ({exc})")
        return []


# GGUF --quant -> (converter outtype, llama.cpp quantization): the same two steps the llamacpp backend takes,
# through the same content-addressed cache, so the GGUF the check serves is the file that is shipped
GGUF_STEPS = {"q8_0": ("q8_0", None), "f16": ("f16", None), "q4_k_m": ("f16", "q4_k_m"), "f32": ("f32", None)}
CHECK_BACKEND = {"kind": "hf", "device": "cpu", "batch_size": 8}


def _export_gguf(info: RunInfo, spec, model_cfg: dict, dest: Path, manifest: dict, *, quant, check, check_items,
                 tolerance, atol, log) -> None:
    from harness import gguf as hgguf

    try:
        task = run_task(info)
    except UserError:
        if check:
            raise
        task = None
    messages = task_messages(task, 3) if task is not None else []
    res = merge_adapter(info, spec, messages=messages, atol=atol, log=log)
    dest = dest.resolve()  # llama.cpp's converter runs in its own cwd: hand it absolute paths only
    work = Path(tempfile.mkdtemp(prefix=".gguf-work.", dir=dest.parent))
    built: list[Path] = []
    try:
        hf_dir = work / "merged"
        save_merged(res, hf_dir, dtype="float32", messages=messages, atol=atol)
        tokenizer, res.model = res.tokenizer, None
        outtype, q = GGUF_STEPS[quant]
        log(f"converting merged model to GGUF ({outtype}) with llama.cpp's convert_hf_to_gguf.py ...")
        built.append(hgguf.convert_hf_to_gguf(hf_dir, None, outtype, bool(model_cfg.get("trust_remote_code"))))
        if q:
            log(f"quantizing to {q} with llama.cpp (llama_model_quantize) ...")
            built.append(hgguf.quantize_gguf(built[0], built[0].with_name(built[0].stem + f"-{q}.gguf"), q))
        served = built[-1]
        if not served.is_file() or served.stat().st_size == 0:
            raise UserError(f"{served}: the GGUF converter reported success but wrote no file", exit_code=1)
        gguf_sha = sha256_file(served)
        if task is not None and check:
            merged_cfg = {"name": f"{spec.name}-merged", "source": "hf", "path": str(hf_dir),
                          "max_length": spec.max_length, "dtype": "float32"}
            result = check_gguf(info, task, model_cfg, merged_cfg, {"kind": "llamacpp", "outtype": outtype, "quant": q},
                                work, n=check_items, tolerance=tolerance, log=log)
            result.update({"gguf_file": None, "gguf_sha256": gguf_sha, "quant": quant})
            if sha256_file(served) != gguf_sha:
                raise UserError(f"{served}: the GGUF changed while it was being checked", exit_code=1)
        else:
            result = {"skipped": True, "passed": True}
        stem = _safe_name(info.run_id)
        final = dest / f"{stem}.{quant}.gguf"
        shutil.move(str(served), str(final))
        _tokenizer_files(tokenizer, dest / "tokenizer")
    finally:
        for b in built:  # leave no copy (or stale cache entry) of this export in the converter cache, even on failure
            b.unlink(missing_ok=True)
            Path(str(b) + ".json").unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    manifest["gguf_file"] = final.name
    manifest["gguf_sha256"] = gguf_sha
    manifest["merge"] = {"method": "PeftModel.merge_and_unload on an fp32 base",
                         "verified_max_abs_logit_diff": res.max_abs_diff, "tolerance": res.tolerance, "note": res.note}
    try:
        manifest["converter_dir"] = str(hgguf.converter_dir())
    except Exception:
        pass
    if not result.get("skipped"):
        result["gguf_file"] = final.name
        write_json(dest / "gguf_check.json", result)
        manifest["gguf_check"] = {k: v for k, v in result.items() if k not in ("flips", "models")}
    else:
        manifest["gguf_check"] = result
    manifest["modelfile"] = _write_modelfile(dest, final.name, tokenizer, task, log)
    card = model_card(info, spec, fmt="gguf", extra={"gguf_file": final.name, "quant": quant,
                                                     "gguf_check": manifest["gguf_check"]})
    card = card.replace(f"# LoRA adapter `{info.run_id}`", f"# GGUF ({quant}) of LoRA run `{info.run_id}`", 1)
    (dest / "README.md").write_text(card, encoding="utf-8")


def _write_modelfile(dest: Path, gguf_name: str, tokenizer, task, log: Log) -> dict:
    from harness.ollama import modelfile

    try:
        text = modelfile(gguf_name, tokenizer, system_prompt=task.system_prompt if task is not None else None,
                         temperature=task.gen.temperature if task is not None else 0.0)
    except UserError as exc:
        log(f"note: no Ollama Modelfile written: {exc}")
        return {"written": False, "reason": str(exc)}
    (dest / "Modelfile").write_text(text, encoding="utf-8")
    return {"written": True, "file": "Modelfile", "system_prompt": task is not None and bool(task.system_prompt)}


def check_gguf(info: RunInfo, task, model_cfg: dict, merged_cfg: dict, gguf_backend: dict, work: Path, *, n: int,
               tolerance: float, log: Log = _stderr) -> dict:
    """The adapter (transformers+PEFT), the merged model and the GGUF (llama.cpp) scored on the task's first `n`
    eval items with the task's own metrics, through the one evaluation path; paired comparisons on the primary
    metric (harness.stats.compare_paired, as the report). Passes when neither copy is below the adapter by more
    than `tolerance` and no request failed."""
    from harness.evaluate import ServedModel, evaluate_models
    from harness.io import read_jsonl
    from harness.stats import compare_paired

    models = {"adapter": ServedModel(model_cfg, CHECK_BACKEND, info.adapter_dir),
              "merged": ServedModel(merged_cfg, CHECK_BACKEND),
              "gguf": ServedModel(merged_cfg, gguf_backend)}
    log(f"checking adapter vs merged vs GGUF on {min(n, len(task.load_split('eval')))} eval items of task "
        f"{task.name!r} (metric {task.primary_metric}) ...")
    summary = evaluate_models(work / "check", task, model_cfg, CHECK_BACKEND, {}, extra_models=models, baselines=False,
                              eval_cfg={"max_eval": n, "few_shot_k": 0, "probes": None, "canary": False},
                              cache_path=work / "generations.jsonl", quiet=True)
    rows = [r for r in read_jsonl(work / "check" / "scores.jsonl") if r["split"] == "task"]
    pm = task.primary_metric
    value = {m: {r["sample_id"]: r["metrics"].get(pm) for r in rows if r["model"] == m} for m in models}
    output = {m: {r["sample_id"]: r["error"] or r["output"] for r in rows if r["model"] == m} for m in models}
    pairs = {"merged_vs_adapter": ("merged", "adapter"), "gguf_vs_adapter": ("gguf", "adapter"),
             "gguf_vs_merged": ("gguf", "merged")}
    comparisons = {k: compare_paired(value[a], value[b]) for k, (a, b) in pairs.items()}
    ids = list(value["adapter"])
    flips = [{"sample_id": i, **{m: value[m].get(i) for m in models}, "outputs": {m: output[m].get(i) for m in models}}
             for i in ids if len({value[m].get(i) for m in models}) > 1]
    errors = {m: summary["models"][m]["errors"] for m in models}
    drops = {k: (c or {}).get("diff") for k, c in comparisons.items() if k.endswith("_vs_adapter")}
    passed = not any(errors.values()) and all(d is not None and d >= -tolerance - 1e-12 for d in drops.values())
    return {"task": task.name, "primary_metric": pm, "n": len(ids), "tolerance": tolerance,
            "rule": f"mean {pm} of merged and of GGUF >= adapter's - tolerance; no backend errors",
            "means": {m: summary["models"][m]["metrics"].get(pm) for m in models},
            "models": {m: summary["models"][m]["metrics"] for m in models},
            "errors": errors, "comparisons": comparisons, "flips": flips, "n_flips": len(flips), "passed": passed}


def check_line(result: dict) -> str:
    """One line for the console: means, the GGUF-vs-adapter difference with its CI and test, flips, verdict."""
    pm, m = result["primary_metric"], result["means"]
    c = result["comparisons"].get("gguf_vs_adapter") or {}

    def f(x):
        return "n/a" if x is None else f"{x:.3f}"

    errs = sum(result["errors"].values())
    return (f"{pm}: adapter {f(m.get('adapter'))}, merged {f(m.get('merged'))}, GGUF {f(m.get('gguf'))}; "
            f"GGUF - adapter {f(c.get('diff'))} [{f(c.get('lo'))}, {f(c.get('hi'))}] ({c.get('test', 'n/a')}, "
            f"p={f(c.get('p_value'))}); {result['n_flips']} of {result['n']} items flip"
            + (f"; {errs} request(s) failed" if errs else "")
            + f" (tolerance {result['tolerance']}) -> {'PASS' if result['passed'] else 'FAIL'}")


def _safe_name(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s) or "model"
