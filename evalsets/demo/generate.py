"""Generate the demo task: support ticket -> compact JSON {"product", "severity", "category"}.

Deterministic (seeded), no external data:  python evalsets/demo/generate.py [--seed 0] [--check]

Variety: several aliases per product, cue phrases per severity and category, many sentence templates,
greetings/sign-offs, ticket ids, order numbers, casing and typo noise. Every ticket is compared with all
tickets already accepted (in every split) by the data doctor's own exact/MinHash index at a stricter
Jaccard threshold (0.6) than the doctor's default (0.8), so the splits hold no duplicates or leakage by
construction.

Sized for the demo (4 products, 3 severities, 3 categories, short tickets): a 135M model learns it in a
couple of dozen LoRA steps on a 2-core CPU, while a 3-shot prompt, which sees 3 examples, cannot know
every alias and cue.

Knowledge items (off by default; `--knowledge 15 --codename 6` makes the "wrong tool" variant): each
product has an internal codename (e.g. "Project Falcon" = billing-portal). Some training tickets then name
the product only by its codename (or state the codename next to the product), so the mapping is a fact
present in the training data; the knowledge eval items, marked "knowledge": true, name only the codename
and use sentence templates that never appear in train/val, so a model can only get the product right by
having learned the fact, not the format.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from harness.data import DupIndex, exact_key  # noqa: E402
from harness.example import Example  # noqa: E402

PRODUCTS = ["billing-portal", "mobile-app", "web-dashboard", "api-gateway"]
SEVERITIES = ["low", "high", "critical"]
CATEGORIES = ["bug", "billing", "account"]

# Sized to be learned in a couple of dozen LoRA steps on a 135M model (the demo must finish in minutes on a
# 2-core CPU) while a 3-shot prompt, which sees 3 examples, cannot know every alias and cue.
ALIASES = {
    "billing-portal": ["the billing portal", "the billing site"],
    "mobile-app": ["the mobile app", "the phone app"],
    "web-dashboard": ["the web dashboard", "the dashboard"],
    "api-gateway": ["the API gateway", "the public API"],
}
CODENAMES = {
    "billing-portal": "Project Falcon",
    "mobile-app": "Project Kestrel",
    "web-dashboard": "Project Nimbus",
    "api-gateway": "Project Orca",
}

CATEGORY_CUES = {
    "bug": ["crashes when I open it", "shows error 500 on save", "the submit button does nothing"],
    "billing": ["charged us twice this month", "the invoice total is wrong", "billed us after we cancelled"],
    "account": ["I cannot reset my password", "my account is locked", "the invite email never arrived"],
}
SEVERITY_CUES = {
    "low": ["No rush.", "Minor issue, whenever you can."],
    "high": ["Our whole team is blocked.", "Customers are complaining."],
    "critical": ["Everything is down for everyone!", "URGENT: production outage."],
}
SEVERITY_FOR_CATEGORY: dict[str, list[str]] = {}

GREETINGS = ["", "", "", "Hi,", "Hello,"]
SIGNOFFS = ["", "", "", "Thanks.", "Regards, Tom"]
NAMES = ["Acme", "Globex", "Initech", "Hooli", "Umbrella", "Stark"]

# {p} = product reference, {c} = category cue, {s} = severity cue, {x} = extra detail.
TEMPLATES = [
    "{p} {c}. {s}",
    "Since today {p} {c}. {s} {x}",
    "{s} {p} {c}.",
    "Issue with {p}: it {c}. {s}",
    "{x} {p} {c}. {s}",
]
FEATURE_TEMPLATES = TEMPLATES
ACCOUNT_BILLING_TEMPLATES = [
    "About {p}: {c}. {s}",
    "{s} In {p}, {c}.",
    "Using {p}: {c}. {x} {s}",
]
# Only ever used for eval knowledge items: held-out phrasing around the codename.
HELDOUT_TEMPLATES = [
    "Heads up from {n} regarding {p}: {c}. {s}",
    "Escalating for {n}. Inside {p}, {c}. {s}",
]
EXTRAS = ["Order #{num}.", "Account {num}.", "We are {n}.", "Case {num}."]


def _noise(text: str, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.08:
        text = text.lower()
    elif r < 0.14:
        words = text.split()
        i = rng.randrange(len(words))
        w = words[i]
        if len(w) > 4 and w.isalpha():
            j = rng.randrange(1, len(w) - 2)
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]  # swap two letters
        text = " ".join(words)
    elif r < 0.18:
        text = text.replace(".", "!", 1)
    return text


def _fill(tmpl: str, p: str, c: str, s: str, rng: random.Random) -> str:
    extra = rng.choice(EXTRAS).format(num=rng.randint(10000, 99999), n=rng.choice(NAMES), h=rng.randint(6, 22),
                                      m=rng.choice([0, 15, 30, 45]))
    body = tmpl.format(p=p, c=c, s=s, x=extra, n=rng.choice(NAMES))
    parts = [rng.choice(GREETINGS), body, rng.choice(SIGNOFFS)]
    if rng.random() < 0.25:
        parts.insert(0, f"[#{rng.randint(1000, 9999)}]")
    text = " ".join(x for x in parts if x)
    text = " ".join(text.split())
    return text[0].upper() + text[1:] if text[0].islower() and rng.random() < 0.9 else text


def _label(rng: random.Random) -> tuple[str, str, str]:
    product = rng.choice(PRODUCTS)
    category = rng.choice(CATEGORIES)
    severity = rng.choice(SEVERITY_FOR_CATEGORY.get(category, SEVERITIES))
    return product, severity, category


def _product_ref(product: str, mode: str, rng: random.Random) -> str:
    if mode == "alias":
        return rng.choice(ALIASES[product])
    if mode == "codename":
        return CODENAMES[product]
    if mode == "both":  # states the fact explicitly
        bare = rng.choice(ALIASES[product]).removeprefix("the ").removeprefix("your ")
        return rng.choice([f"{CODENAMES[product]} ({bare})",
                           f"{CODENAMES[product]}, i.e. {rng.choice(ALIASES[product])},"])
    raise ValueError(mode)


def make_ticket(rng: random.Random, *, mode: str = "alias", heldout: bool = False, product: str | None = None):
    p, s, c = _label(rng)
    p = product or p
    ref = _product_ref(p, mode, rng)
    if heldout:
        tmpl = rng.choice(HELDOUT_TEMPLATES)
    elif c in ("account", "billing"):
        tmpl = rng.choice(ACCOUNT_BILLING_TEMPLATES + TEMPLATES[:2])
    else:
        tmpl = rng.choice(TEMPLATES)
    text = _noise(_fill(tmpl, ref, rng.choice(CATEGORY_CUES[c]), rng.choice(SEVERITY_CUES[s]), rng), rng)
    target = json.dumps({"product": p, "severity": s, "category": c}, separators=(", ", ": "))
    return text, target


def record(rid: str, text: str, target: str, **meta) -> dict:
    return {"id": rid, "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": target}],
            **meta}


def generate(seed: int = 0, n_train: int = 256, n_val: int = 24, n_eval: int = 60, n_knowledge: int = 0,
             n_codename: int = 0):
    rng = random.Random(seed)
    index = DupIndex(threshold=0.6)
    accepted = 0

    def fresh(**kw):
        nonlocal accepted
        for _ in range(1000):
            text, target = make_ticket(rng, **kw)
            if not 6 <= len(text.split()) <= 30:
                continue
            ex = Example(({"role": "user", "content": text}, {"role": "assistant", "content": target}),
                         source="gen", line=accepted)
            key = exact_key(ex)
            if index.find(ex, key=key):
                continue
            index.add(ex, key=key)
            accepted += 1
            return text, target
        raise RuntimeError("could not generate a fresh ticket")

    splits: dict[str, list[dict]] = {"train": [], "val": [], "eval": []}
    # Train: every product appears by codename alone (n_codename times) and with the fact stated (2 times).
    modes = (["codename"] * n_codename + ["both"] * 2) if n_codename else []
    for product in PRODUCTS:
        for mode in modes:
            splits["train"].append(fresh(mode=mode, product=product))
    while len(splits["train"]) < n_train:
        splits["train"].append(fresh(mode="alias"))
    rng.shuffle(splits["train"])
    for _ in range(n_val):
        splits["val"].append(fresh(mode=rng.choice(["alias"] * 5 + (["codename"] if n_codename else []))))
    eval_items = []
    for i in range(n_knowledge):
        eval_items.append((*fresh(mode="codename", heldout=True, product=PRODUCTS[i % len(PRODUCTS)]), True))
    while len(eval_items) < n_eval:
        eval_items.append((*fresh(mode="alias"), False))
    rng.shuffle(eval_items)
    out = {
        "train": [record(f"demo-train-{i:04d}", t, y) for i, (t, y) in enumerate(splits["train"])],
        "val": [record(f"demo-val-{i:04d}", t, y) for i, (t, y) in enumerate(splits["val"])],
        "eval": [record(f"demo-eval-{i:04d}", t, y, knowledge=k) for i, (t, y, k) in enumerate(eval_items)],
    }
    return out


def schema() -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Support ticket triage",
        "type": "object",
        "properties": {
            "product": {"type": "string", "enum": PRODUCTS},
            "severity": {"type": "string", "enum": SEVERITIES},
            "category": {"type": "string", "enum": CATEGORIES},
        },
        "required": ["product", "severity", "category"],
        "additionalProperties": False,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--knowledge", type=int, default=0, help="eval items that need the codename fact")
    ap.add_argument("--codename", type=int, default=0, help="training tickets per product naming it by codename")
    args = ap.parse_args(argv)
    data = generate(args.seed, n_knowledge=args.knowledge, n_codename=args.codename)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in data.items():
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                           encoding="utf-8")
    (out / "schema.json").write_text(json.dumps(schema(), indent=2) + "\n", encoding="utf-8")
    print(", ".join(f"{k} {len(v)}" for k, v in data.items()), f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
