"""harness export: adapter / merged / gguf, merge equivalence, atomicity, refusals."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import SMOL_CFG, TINY_CFG, make_random_adapter
from harness.io import UserError, read_json, sha256_file, write_json
from harness.runs import write_status

DEMO_TASK = {
    "name": "demo_export",
    "system_prompt": "Answer with a JSON object only.",
    "prompt_template": "{prompt}",
}
DEMO_ITEMS = [
    ("Ada is 36 years old.", {"name": "Ada", "age": 36}),
    ("Bob is 41.", {"name": "Bob", "age": 41}),
    ("Carla, aged 29.", {"name": "Carla", "age": 29}),
    ("Dan turned 52 today.", {"name": "Dan", "age": 52}),
    ("Eve is 18 years old.", {"name": "Eve", "age": 18}),
    ("Frank is 63.", {"name": "Frank", "age": 63}),
]


NAMES = ["Ada", "Bob", "Carla", "Dan", "Eve", "Frank", "Gina", "Hugo", "Ines", "Jon", "Kim", "Lea", "Max", "Nora",
         "Omar", "Pia", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Vic", "Wes", "Yara"]
PHRASES = ["{n} is {a} years old.", "{n} is {a}.", "{n}, aged {a}.", "{n} turned {a} today.", "Meet {n} ({a})."]


def write_task(root: Path, items=DEMO_ITEMS) -> Path:
    """A small self-contained task (task.yaml + train/eval jsonl) so tests do not depend on evalsets/."""
    root.mkdir(parents=True, exist_ok=True)

    def row(t, o):
        return {"messages": [{"role": "user", "content": f"Extract name and age: {t}"},
                             {"role": "assistant", "content": json.dumps(o)}]}

    train = [(PHRASES[i % len(PHRASES)].format(n=n, a=20 + 3 * i), {"name": n, "age": 20 + 3 * i})
             for i, n in enumerate(NAMES)]
    (root / "eval.jsonl").write_text("".join(json.dumps(row(t, o)) + "\n" for t, o in items))
    (root / "train.jsonl").write_text("".join(json.dumps(row(t, o)) + "\n" for t, o in train))
    (root / "task.yaml").write_text(yaml.safe_dump({
        **DEMO_TASK, "version": "1", "data": {"train": "train.jsonl", "eval": "eval.jsonl"},
        "metrics": [{"name": "json_valid"}], "primary_metric": "json_valid",
        "generation": {"max_new_tokens": 32, "temperature": 0.0}}))
    return root / "task.yaml"


def make_run(tmp: Path, spec, model_cfg: dict, *, adapter: Path | None = None, status: str = "complete",
             task_path: Path | None = None, quant: str = "none", seed: int = 1, run_id: str = "run-test") -> Path:
    run = tmp / run_id
    run.mkdir(parents=True)
    if adapter is None:
        make_random_adapter(spec, run / "adapter", seed=seed, scale=0.1)
    else:
        shutil.copytree(adapter, run / "adapter")
    task_path = task_path or write_task(tmp / "task")
    cfg = {"model": dict(model_cfg), "task": {"name": "demo_export", "path": str(task_path)},
           "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
           "train": {"epochs": 1, "lr": 2e-4, "batch_size": 4}, "quant": quant, "seed": 0}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    write_json(run / "manifest.json", {"run_id": run_id, "base_model": {"name": spec.name, "identity": spec.identity},
                                       "data": {"train": {"path": str(task_path.parent / "train.jsonl"), "sha256": "ab" * 32}}})
    write_json(run / "metrics.json", {"best_val_loss": 1.234, "best_step": 10, "train_time_s": 3.5,
                                      "trainable_params": 1000, "adapter_bytes": 4000})
    write_status(run, status)
    return run


@pytest.fixture()
def tiny_run(tiny_spec, tmp_path):
    return make_run(tmp_path, tiny_spec, TINY_CFG)


def test_merge_equivalence_tiny(tiny_spec, tiny_run):
    """merged logits == base + adapter (unmerged PeftModel) in fp32, and the adapter really changes the logits."""
    from harness.export import check_run, merge_adapter, prompt_logits, run_task, task_messages, _verification_prompts
    from harness.models import load_model, load_tokenizer

    info = check_run(tiny_run)
    messages = task_messages(run_task(info), 3)
    assert len(messages) == 3 and messages[0][0] == {"role": "system", "content": DEMO_TASK["system_prompt"]}
    res = merge_adapter(info, tiny_spec, messages=messages, log=lambda m: None)
    assert res.max_abs_diff < 1e-4 and res.n_prompts == 3
    tok = load_tokenizer(tiny_spec)
    prompts = _verification_prompts(tok, messages)
    merged = prompt_logits(res.model, tok, prompts)
    base = prompt_logits(load_model(tiny_spec, device="cpu", dtype="float32"), tok, prompts)
    # independent reference: a fresh unmerged PeftModel
    from harness.export import load_peft_fp32

    ref = prompt_logits(load_peft_fp32(tiny_spec, info.adapter_dir), tok, prompts)
    assert max(float((a - b).abs().max()) for a, b in zip(merged, ref)) < 1e-4
    assert max(float((a - b).abs().max()) for a, b in zip(merged, base)) > 1e-3  # the adapter is not a no-op
    assert not any("lora_" in n for n, _ in res.model.named_parameters())


def test_merge_verification_fails_loudly(tiny_spec, tiny_run, monkeypatch):
    """A merge that does not reproduce base+adapter (here: one weight nudged by 1e-2) is refused, exit 1."""
    import torch

    import harness.export as ex

    real = ex.load_peft_fp32

    def broken_loader(spec, adapter_dir):
        pm = real(spec, adapter_dir)
        orig = pm.merge_and_unload

        def bad_merge(*a, **k):
            m = orig(*a, **k)
            with torch.no_grad():
                m.model.layers[0].self_attn.o_proj.weight.add_(1e-2)
            return m

        pm.merge_and_unload = bad_merge
        return pm

    monkeypatch.setattr(ex, "load_peft_fp32", broken_loader)
    info = ex.check_run(tiny_run)
    with pytest.raises(UserError, match="merge verification FAILED") as ei:
        ex.merge_adapter(info, tiny_spec, log=lambda m: None)
    assert ei.value.exit_code == 1
    out = tiny_run.parent / "never"
    with pytest.raises(UserError, match="merge verification FAILED"):
        ex.export_run(tiny_run, "merged", out, log=lambda m: None)
    assert not out.exists()


def test_export_adapter(tiny_spec, tiny_run, tmp_path):
    from harness.commands.export import main

    out = tmp_path / "exp_adapter"
    assert main([str(tiny_run), "--format", "adapter", "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "export_manifest.json",
            "chat_template.jinja", "tokenizer_config.json"} <= names
    m = read_json(out / "export_manifest.json")
    assert m["format"] == "adapter" and m["source_run_id"] == "run-test"
    assert m["adapter_sha256"] == sha256_file(tiny_run / "adapter" / "adapter_model.safetensors")
    assert m["base"]["identity"] == tiny_spec.identity
    assert m["tool_versions"]["torch"] and m["tool_versions"]["peft"]
    for rel, digest in m["files"].items():
        assert sha256_file(out / rel) == digest
    card = (out / "README.md").read_text()
    assert tiny_spec.identity in card and "best_val_loss" in card and "1.234" in card and "ab" * 32 in card
    assert "| r | 4 |" in card
    # the exported adapter loads and runs with PEFT on the base
    from peft import PeftModel

    from harness.models import load_model

    PeftModel.from_pretrained(load_model(tiny_spec, device="cpu", dtype="float32"), str(out))
    # no temp dirs left beside DIR
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".exp_adapter")]


def test_adapter_card_includes_sweep_report(tiny_spec, tmp_path):
    sweep = tmp_path / "sweeps" / "s1"
    run = make_run(sweep / "runs", tiny_spec, TINY_CFG, run_id="r8")
    write_json(sweep / "report" / "verdict.json", {"verdict": "Adapter r8 beats few-shot on exact_match (+0.31)."})
    write_json(sweep / "scores" / "summary.json", {
        "task": "demo_export", "task_version": "1", "primary_metric": "exact_match",
        "models": {"base": {"kind": "baseline", "n": 6, "metrics": {"exact_match": 0.1, "json_valid": 0.2}},
                   "fewshot": {"kind": "baseline", "n": 6, "metrics": {"exact_match": 0.3, "json_valid": 0.5}},
                   "r8": {"kind": "adapter", "n": 6, "metrics": {"exact_match": 0.61, "json_valid": 0.9},
                          "probes": {"arith": 0.8}}}})
    from harness.export import export_run

    out = tmp_path / "card"
    export_run(run, "adapter", out, log=lambda m: None)
    card = (out / "README.md").read_text()
    assert "beats few-shot" in card and "0.61" in card and "| this adapter |" in card and "arith" in card


def test_export_merged(tiny_spec, tiny_run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from harness.commands.export import main
    from harness.export import _verification_prompts, load_peft_fp32, prompt_logits, run_task, task_messages
    from harness.models import load_tokenizer
    from harness.runs import load_run

    out = tmp_path / "exp_merged"
    assert main([str(tiny_run), "--format", "merged", "--out", str(out)]) == 0
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert (out / "tokenizer_config.json").is_file()
    m = read_json(out / "export_manifest.json")
    assert m["format"] == "merged" and m["merge"]["verified_max_abs_logit_diff"] < 1e-4
    assert m["merge"]["note"] is None
    # the standalone model (no peft) reproduces base+adapter
    tok = load_tokenizer(tiny_spec)
    prompts = _verification_prompts(tok, task_messages(run_task(load_run(tiny_run)), 3))
    merged = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    a = prompt_logits(merged, tok, prompts)
    b = prompt_logits(load_peft_fp32(tiny_spec, tiny_run / "adapter"), tok, prompts)
    assert max(float((x - y).abs().max()) for x, y in zip(a, b)) < 1e-4


def test_merged_nf4_run_is_stated(tiny_spec, tmp_path, capsys):
    from harness.export import NF4_NOTE, export_run

    run = make_run(tmp_path, tiny_spec, TINY_CFG, quant="nf4", run_id="qrun")
    m = export_run(run, "merged", tmp_path / "out", log=print)
    assert m["merge"]["note"] == NF4_NOTE and m["training_quant"] == "nf4"
    assert "dequantized fp32 base" in capsys.readouterr().out
    assert "dequantized fp32 base" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.parametrize("status,remove,needle", [
    ("running", None, "'running'"),
    ("failed", None, "'failed'"),
    ("complete", "adapter/adapter_model.safetensors", "adapter_model.safetensors is missing"),
    ("complete", "adapter", "adapter_config.json is missing"),
    ("complete", "status.json", "status.json is missing"),
])
def test_refuses_unfinished_run(tiny_spec, tmp_path, status, remove, needle):
    from harness.cli import main as cli_main
    from harness.commands.export import main

    run = make_run(tmp_path, tiny_spec, TINY_CFG, status=status)
    if remove:
        p = run / remove
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    out = tmp_path / "never"
    with pytest.raises(UserError, match="not a finished run") as ei:
        main([str(run), "--format", "adapter", "--out", str(out)])
    assert ei.value.exit_code == 2 and needle in str(ei.value)
    assert cli_main(["export", str(run), "--format", "merged", "--out", str(out)]) == 2
    assert not out.exists()


def test_refusals_bad_args(tiny_spec, tiny_run, tmp_path):
    from harness.cli import main as cli_main

    assert cli_main(["export", str(tmp_path / "nope"), "--format", "adapter", "--out", str(tmp_path / "o")]) == 2
    assert cli_main(["export", str(tiny_run), "--format", "zip", "--out", str(tmp_path / "o")]) == 2
    assert cli_main(["export", str(tiny_run), "--format", "adapter", "--quant", "q8_0", "--out", str(tmp_path / "o")]) == 2
    assert cli_main(["export", str(tiny_run), "--format", "merged", "--quant", "q4_k_m", "--out", str(tmp_path / "o")]) == 2
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "precious.txt").write_text("x")
    assert cli_main(["export", str(tiny_run), "--format", "adapter", "--out", str(busy)]) == 2
    assert (busy / "precious.txt").read_text() == "x"
    assert not (tmp_path / "o").exists()


def test_failed_export_leaves_no_dir(tiny_spec, tiny_run, tmp_path, monkeypatch):
    import harness.export as ex

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ex, "model_card", boom)
    out = tmp_path / "fail"
    with pytest.raises(RuntimeError):
        ex.export_run(tiny_run, "adapter", out, log=lambda m: None)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".fail")]
    # a previous export is replaced atomically, or kept intact on failure
    monkeypatch.undo()
    ex.export_run(tiny_run, "adapter", out, log=lambda m: None)
    before = read_json(out / "export_manifest.json")
    monkeypatch.setattr(ex, "model_card", boom)
    with pytest.raises(RuntimeError):
        ex.export_run(tiny_run, "adapter", out, log=lambda m: None)
    assert read_json(out / "export_manifest.json") == before


def test_refuses_base_mismatch(tiny_spec, tiny_run):
    from harness.export import check_run, run_spec

    m = read_json(tiny_run / "manifest.json")
    m["base_model"]["identity"] = "0000000000000000"
    write_json(tiny_run / "manifest.json", m)
    with pytest.raises(UserError, match="different base"):
        run_spec(check_run(tiny_run))


@pytest.fixture(scope="module")
def echo_run(tiny_spec, tmp_path_factory):
    """A run on a NON-JSON task (rouge_l) whose references are the adapter's own greedy outputs (so the adapter
    scores 1.0), produced through the same evaluation path the export check uses. A strong adapter: the tiny
    random model's near-flat logits otherwise flip greedy tokens on fp32 round-off between engines."""
    tmp_path = tmp_path_factory.mktemp("echo")
    from harness.evaluate import ServedModel, evaluate_models
    from harness.io import read_jsonl

    root = tmp_path / "echo_task"
    root.mkdir()
    rows = [{"messages": [{"role": "user", "content": f"Say something about item {i}."},
                          {"role": "assistant", "content": "placeholder"}]} for i in range(6)]
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = {"name": "echo", "version": "1", "system_prompt": "Be brief.", "data": {"eval": "eval.jsonl"},
            "metrics": [{"name": "rouge_l"}], "primary_metric": "rouge_l",
            "generation": {"max_new_tokens": 6, "temperature": 0.0}}
    (root / "task.yaml").write_text(yaml.safe_dump(task))
    hf = {"kind": "hf", "device": "cpu", "batch_size": 8}
    adapter = make_random_adapter(tiny_spec, tmp_path / "strong", r=8, seed=3, scale=1.0)
    evaluate_models(tmp_path / "ref", root / "task.yaml", TINY_CFG, hf, {}, baselines=False,
                    extra_models={"adapter": ServedModel(TINY_CFG, hf, adapter)},
                    eval_cfg={"probes": None, "few_shot_k": 0, "canary": False}, quiet=True)
    outs = [r["output"] for r in read_jsonl(tmp_path / "ref" / "scores.jsonl")]
    assert len(outs) == 6 and all(o.strip() for o in outs)
    for r, o in zip(rows, outs):
        r["messages"][1]["content"] = o
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return make_run(tmp_path, tiny_spec, TINY_CFG, adapter=adapter, task_path=root / "task.yaml")


def test_gguf_export_checks_task_metric_and_writes_modelfile(conv, echo_run, tmp_path):
    """Real llama.cpp on the tiny model, f32 GGUF (lossless): adapter, merged and GGUF agree on the task's own
    metric; the shipped GGUF is the checked one (sha256); a Modelfile; no copy left in the converter cache."""
    from harness.cli import main as cli_main
    from harness.gguf import gguf_cache_dir

    before = set(gguf_cache_dir().glob("merged-*")) if gguf_cache_dir().is_dir() else set()
    out = tmp_path / "g"
    assert cli_main(["export", str(echo_run), "--format", "gguf", "--quant", "f32", "--out", str(out),
                     "--tolerance", "0.25"]) == 0
    m = read_json(out / "export_manifest.json")
    gg = out / m["gguf_file"]
    assert m["gguf_file"] == "run-test.f32.gguf" and sha256_file(gg) == m["gguf_sha256"] == m["gguf_check"]["gguf_sha256"]
    chk = read_json(out / "gguf_check.json")
    assert chk["primary_metric"] == "rouge_l" and chk["n"] == 6 and chk["passed"] is True
    assert chk["means"]["adapter"] == 1.0 and chk["means"]["merged"] == 1.0 and chk["means"]["gguf"] >= 0.75
    c = chk["comparisons"]["gguf_vs_adapter"]
    assert c["n"] == 6 and c["test"] == "paired bootstrap" and c["diff"] == pytest.approx(chk["means"]["gguf"] - 1.0)
    assert set(chk["comparisons"]) == {"merged_vs_adapter", "gguf_vs_adapter", "gguf_vs_merged"}
    assert chk["comparisons"]["merged_vs_adapter"]["diff"] == 0.0
    assert all(f["gguf"] != f["adapter"] for f in chk["flips"]) and chk["n_flips"] == len(chk["flips"]) < 6
    text = (out / "Modelfile").read_text()
    assert f"FROM ./{m['gguf_file']}" in text and 'SYSTEM """Be brief."""' in text and "TEMPLATE" in text
    assert m["modelfile"]["written"] is True
    after = set(gguf_cache_dir().glob("merged-*")) if gguf_cache_dir().is_dir() else set()
    assert after <= before and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_gguf_check_fails_when_the_gguf_misbehaves(conv, echo_run, tmp_path, monkeypatch, capsys):
    """The GGUF is built from the wrong weights (the base model, as a broken pipeline would): on a non-JSON task the
    old JSON-validity check compared 0 with 0 and passed; the task's own metric catches it, lists the items whose
    result changed, exits 1 and exports nothing."""
    import harness.gguf as hg
    from harness.cli import main as cli_main
    from harness.models import resolve_model

    from harness.gguf import gguf_cache_dir

    real = hg.convert_hf_to_gguf
    wrong = tmp_path / "wrong"  # the base model's files under their own name (the shared base GGUF stays untouched)
    shutil.copytree(resolve_model(TINY_CFG).path, wrong)

    def wrong_weights(model_dir, out_file=None, outtype="f16", trust_remote_code=False):
        src = wrong if Path(model_dir).name == "merged" else model_dir
        return real(src, out_file, outtype, trust_remote_code)

    monkeypatch.setattr(hg, "convert_hf_to_gguf", wrong_weights)
    out = tmp_path / "g"
    assert cli_main(["export", str(echo_run), "--format", "gguf", "--quant", "f32", "--out", str(out)]) == 1
    assert not out.exists() and not list(gguf_cache_dir().glob("wrong-*"))  # a failed export leaves no cache copy
    err = capsys.readouterr().err
    assert "GGUF behaviour check FAILED: rouge_l: adapter 1.000, merged 1.000, GGUF" in err
    side = read_json(tmp_path / "g.gguf_check.failed.json")
    assert side["passed"] is False and side["means"]["adapter"] == 1.0 and side["means"]["gguf"] < 0.5
    assert side["n_flips"] == len(side["flips"]) >= 3
    flip = side["flips"][0]
    assert flip["adapter"] == 1.0 and flip["gguf"] < 1.0 and flip["outputs"]["gguf"] != flip["outputs"]["adapter"]
    # --no-check ships it without the check (the user's explicit choice), still with a Modelfile
    assert cli_main(["export", str(echo_run), "--format", "gguf", "--quant", "f32", "--out", str(out), "--no-check"]) == 0
    m = read_json(out / "export_manifest.json")
    assert m["gguf_check"] == {"skipped": True, "passed": True} and (out / "Modelfile").is_file()


def test_run_dir_never_enables_remote_code(tiny_spec, tmp_path, capsys):
    from harness.export import export_run

    run = make_run(tmp_path, tiny_spec, {**TINY_CFG, "trust_remote_code": True})
    m = export_run(run, "adapter", tmp_path / "a", log=print)
    assert "asks for model.trust_remote_code=true; ignored" in capsys.readouterr().out
    assert m["format"] == "adapter"


def test_adapter_export_holds_no_secrets(tiny_spec, tmp_path):
    from harness.export import export_run

    key = "sk-test" + "A1b2C3d4E5f6G7h8I9j0K1l2"
    run = make_run(tmp_path, tiny_spec, TINY_CFG)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["judge"] = {"backend": {"kind": "openai", "api_key": key, "base_url": f"https://user:{key}@host/v1"}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    man = read_json(run / "manifest.json")
    man["command"] = f"harness train ++judge.backend.api_key={key} lora.r=4"
    write_json(run / "manifest.json", man)
    out = tmp_path / "shared"
    export_run(run, "adapter", out, log=lambda m: None)
    for p in out.rglob("*"):
        if p.is_file():
            assert key.encode() not in p.read_bytes(), p
    assert "lora.r=4" in read_json(out / "run" / "manifest.json")["command"]


def _train_short(spec, tmp: Path, task_path: Path, steps: int = 30) -> tuple[Path, str]:
    """A short real training run on the demo task: harness.train when available, else a minimal PEFT loop.

    Returns (run_dir, how)."""
    run_dir = tmp / "runs" / "smol-run"
    try:
        from harness.train import train
    except ImportError:
        train = None
    if train is not None:
        cfg = {"model": dict(SMOL_CFG), "task": {"name": "demo_export", "path": str(task_path)},
               "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear", "bias": "none"},
               "train": {"epochs": 100, "max_steps": steps, "lr": 1e-3, "batch_size": 2, "grad_accum": 1,
                         "warmup_ratio": 0.0, "weight_decay": 0.0, "lr_scheduler": "constant", "max_grad_norm": 1.0,
                         "eval_every": 15, "patience": 0, "min_delta": 0.0, "completion_only": True, "precision": "fp32",
                         "gradient_checkpointing": False, "group_by_length": False, "val_fraction": 0.2,
                         "checkpoint_every": 1000},
               "quant": "none", "seed": 0, "tracking": {"wandb": "disabled"}}
        try:
            train(cfg, run_dir, quiet=True)
            return run_dir, "harness.train"
        except Exception as exc:  # the engine's config schema may have moved on; fall back to the minimal loop
            print(f"harness.train unusable here ({type(exc).__name__}: {exc}); using a minimal PEFT loop")
            shutil.rmtree(run_dir, ignore_errors=True)
    import torch
    from peft import LoraConfig, get_peft_model

    from harness.example import Example
    from harness.models import load_model, load_tokenizer
    from harness.prompts import tokenize_for_training

    tok = load_tokenizer(spec)
    model = get_peft_model(load_model(spec, device="cpu", dtype="float32"),
                           LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear"))
    rows = [json.loads(x) for x in (task_path.parent / "train.jsonl").read_text().splitlines()]
    enc = [tokenize_for_training(tok, Example(tuple(r["messages"])), system_prompt=DEMO_TASK["system_prompt"]) for r in rows]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    torch.manual_seed(0)
    model.train()
    for step in range(steps):
        e = enc[step % len(enc)]
        out = model(input_ids=torch.tensor([e["input_ids"]]), labels=torch.tensor([e["labels"]]))
        out.loss.backward()
        opt.step()
        opt.zero_grad()
    trained = tmp / "trained"
    model.save_pretrained(str(trained), safe_serialization=True)
    return make_run(tmp / "runs", spec, SMOL_CFG, adapter=trained, task_path=task_path, run_id="smol-run"), \
        "minimal PEFT loop"


@pytest.mark.slow
@pytest.mark.llamacpp
def test_export_gguf_smollm2(smol_spec, tmp_path):
    """Short-trained SmolLM2 demo adapter -> merged -> GGUF f16 -> llama.cpp keeps the adapter's behaviour.
    (f16, not the q8_0 default: the llama-cpp-python 0.3.36 build in this image dies with a general protection
    fault in libggml-cpu.so on q8_0 SmolLM2 generation, for the base model too; the export path is the same.)"""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama_cpp (llama-cpp-python) is not importable")
    try:
        from harness import gguf

        gguf.converter_dir()
    except (ImportError, UserError) as exc:
        pytest.skip(f"llama.cpp converters not available: {exc}")
    task_path = write_task(tmp_path / "task")
    run, how = _train_short(smol_spec, tmp_path, task_path, steps=30)
    print(f"adapter trained with: {how}")
    from harness.cli import main as cli_main

    out = tmp_path / "gguf_out"
    rc = cli_main(["export", str(run), "--format", "gguf", "--quant", "f16", "--out", str(out), "--check-items", "6"])
    assert rc == 0
    m = read_json(out / "export_manifest.json")
    gg = out / m["gguf_file"]
    assert gg.is_file() and gg.read_bytes()[:4] == b"GGUF" and sha256_file(gg) == m["gguf_sha256"]
    chk = read_json(out / "gguf_check.json")
    assert chk["n"] == 6 and chk["passed"] and chk["primary_metric"] == "json_valid"
    assert chk["means"]["adapter"] >= 0.5, "the short-trained adapter should have learned the JSON format"
    assert chk["means"]["gguf"] >= chk["means"]["adapter"] - 0.1
    assert m["tool_versions"]["llama_cpp"] and (out / "Modelfile").is_file()
    print(json.dumps({k: v for k, v in chk.items() if k not in ("flips", "models")}))
