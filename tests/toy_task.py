"""A small structured-extraction task written to a temp dir, for fast training tests on the tiny model."""
from __future__ import annotations

import json
import random
from pathlib import Path

TASK_YAML = """name: toy
version: 1
description: toy ticket -> JSON
data: {{train: train.jsonl, val: val.jsonl, eval: eval.jsonl}}
system_prompt: "Answer with JSON only."
prompt_template: "Ticket: {{prompt}}"
generation: {{max_new_tokens: 24, temperature: 0.0}}
metrics:
  - {{name: json_valid}}
  - {{name: all_fields_correct, fields: [product, severity]}}
primary_metric: all_fields_correct
few_shot: {{k: 2, seed: 0}}
knowledge_field: knowledge
"""


def write_toy_task(root: Path, n_train: int = 48, n_val: int = 16, n_eval: int = 12, seed: int = 0,
                   val_answer: str | None = None) -> Path:
    """Write task.yaml + splits; `val_answer` forces every val target (to make val loss rise on purpose)."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    products, severities = ["alpha", "beta", "gamma"], ["low", "high"]

    def example(tag: str, i: int, forced: str | None = None) -> dict:
        p, s = rng.choice(products), rng.choice(severities)
        text = f"{tag} {i}: the {p} app is {'down' if s == 'high' else 'slow'} (ref {rng.randint(0, 99999)})"
        target = forced if forced is not None else json.dumps({"product": p, "severity": s})
        rec = {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": target}]}
        if tag == "eval" and i % 4 == 0:
            rec["knowledge"] = True
        return rec

    for name, n in (("train", n_train), ("val", n_val), ("eval", n_eval)):
        forced = val_answer if name == "val" else None
        rows = [example(name, i, forced) for i in range(n)]
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "task.yaml").write_text(TASK_YAML.format())
    return root / "task.yaml"
