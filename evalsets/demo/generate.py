"""Generate the demo task: support ticket -> compact JSON {"product", "severity", "category"}.

Deterministic (seeded), no external data:  python evalsets/demo/generate.py [--seed 0] [--check]

Variety: several aliases per product, cue phrases per severity and category, many sentence templates,
greetings/sign-offs, ticket ids, order numbers, casing and typo noise. Every ticket is compared with all
tickets already accepted (in every split) by the data doctor's own exact/MinHash index at a stricter
Jaccard threshold (0.6) than the doctor's default (0.8), so the splits hold no duplicates or leakage by
construction.

Knowledge items: each product has an internal codename (e.g. "Project Falcon" = billing-portal). Some
training tickets name the product only by its codename (or state the codename next to the product), so
the mapping is a fact present in the training data. 15 eval items, marked "knowledge": true, name only
the codename and use sentence templates that never appear in train/val, so a model can only get the
product right by having learned the fact, not the format.
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

PRODUCTS = ["billing-portal", "mobile-app", "web-dashboard", "api-gateway", "data-export", "auth-service"]
SEVERITIES = ["low", "medium", "high", "critical"]
CATEGORIES = ["bug", "billing", "account", "performance", "feature_request"]

ALIASES = {
    "billing-portal": ["the billing portal", "the invoices page", "the payment portal", "the billing site"],
    "mobile-app": ["the iOS app", "the Android app", "your mobile app", "the phone app"],
    "web-dashboard": ["the web dashboard", "the analytics dashboard", "the dashboard", "the reports dashboard"],
    "api-gateway": ["the REST API", "your API gateway", "the public API", "the API endpoints"],
    "data-export": ["the CSV export", "the data export tool", "the export feature", "scheduled exports"],
    "auth-service": ["the login page", "single sign-on", "the SSO login", "two-factor sign-in"],
}
CODENAMES = {
    "billing-portal": "Project Falcon",
    "mobile-app": "Project Kestrel",
    "web-dashboard": "Project Nimbus",
    "api-gateway": "Project Orca",
    "data-export": "Project Juniper",
    "auth-service": "Project Bastion",
}

CATEGORY_CUES = {
    "bug": ["crashes as soon as I open it", "shows an error 500 after saving", "the submit button does nothing",
            "displays the wrong dates on every record", "freezes when I click filter", "loses my changes on reload"],
    "billing": ["charged us twice this month", "the invoice amount does not match our plan",
                "we need a refund for the duplicate charge", "our card was billed after we cancelled",
                "the tax on the invoice is wrong", "shows an unpaid balance we already paid"],
    "account": ["I cannot reset my password", "my account got locked after one attempt",
                "I need to change the owner email on our account", "a new teammate never got the invite",
                "I want to delete an old user", "my username changed by itself"],
    "performance": ["takes over 30 seconds to load", "is extremely slow since the update",
                    "keeps timing out under normal load", "responses lag by several seconds",
                    "uses so much memory that the browser stalls", "gets slower every hour"],
    "feature_request": ["it would be great to have a dark mode", "please add an option to export to Excel",
                        "could you support bulk editing", "we would love webhooks for new events",
                        "please let us schedule reports weekly", "can you add a French translation"],
}
SEVERITY_CUES = {
    "low": ["Minor thing, no rush.", "Just cosmetic, whenever you get a chance.", "Low priority for us.",
            "Not urgent at all."],
    "medium": ["It is annoying but there is a workaround.", "Some of our users are affected.",
               "We can live with it for a few days.", "Please look at it this week."],
    "high": ["Most of our team is blocked.", "There is no workaround and customers are complaining.",
             "This is blocking our month-end work.", "Many customers are affected right now."],
    "critical": ["Production is completely down for everyone!", "URGENT: all users are affected, we are losing money.",
                 "Everything is down, this is an emergency.", "Critical outage, nobody can work at all."],
}
# Feature requests are never critical; outages are rarely "low".
SEVERITY_FOR_CATEGORY = {"feature_request": ["low", "medium"]}

GREETINGS = ["", "", "", "", "Hi,", "Hello team,", "Hey support,", "Good morning,", "Dear support,"]
SIGNOFFS = ["", "", "", "", "Thanks.", "Thanks, Maria", "Regards, Tom", "Cheers, Priya", "Best, Ken", "Please help."]
NAMES = ["Acme Corp", "Globex", "Initech", "Umbrella Ltd", "Stark Retail", "Wayne Foods", "Hooli", "Vandelay Imports"]

# {p} = product reference, {c} = category cue, {s} = severity cue, {x} = extra detail.
TEMPLATES = [
    "{p} {c}. {s}",
    "Since this morning {p} {c}. {s} {x}",
    "{s} {p} {c}.",
    "Reporting an issue with {p}: it {c}. {s}",
    "We use {p} daily and it {c}. {x} {s}",
    "Problem with {p} - {c}. {s}",
    "{x} Today {p} {c}. {s}",
    "Ticket about {p}. Basically it {c}. {s}",
]
FEATURE_TEMPLATES = [
    "About {p}: {c}. {s}",
    "Suggestion for {p}: {c}. {s} {x}",
    "{s} Regarding {p}, {c}.",
    "We like {p} a lot, but {c}. {s}",
]
ACCOUNT_BILLING_TEMPLATES = [
    "About {p}: {c}. {s}",
    "Question on {p}: {c}. {x} {s}",
    "{s} In {p}, {c}.",
    "Using {p} today, {c}. {s}",
]
# Only ever used for eval knowledge items: held-out phrasing around the codename.
HELDOUT_TEMPLATES = [
    "Heads up from the {n} account team regarding {p}: {c}. {s}",
    "Our admins asked me to flag that in {p} {c}. {s}",
    "Escalating on behalf of {n}. Inside {p}, {c}. {s}",
    "Quick report, the {p} workspace: {c}. {s}",
]
EXTRAS = ["Order #{num}.", "Account id {num}.", "We are {n}.", "This started around {h}:{m:02d}.",
          "Tried in Chrome and Firefox.", "Our plan is Business.", "Screenshot attached.", "Case ref {num}."]


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
    elif c == "feature_request":
        tmpl = rng.choice(FEATURE_TEMPLATES)
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


def generate(seed: int = 0, n_train: int = 320, n_val: int = 40, n_eval: int = 60, n_knowledge: int = 15):
    rng = random.Random(seed)
    index = DupIndex(threshold=0.6)
    accepted = 0

    def fresh(**kw):
        nonlocal accepted
        for _ in range(1000):
            text, target = make_ticket(rng, **kw)
            if not 15 <= len(text.split()) <= 50:
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
    # Train: every product appears by codename alone (>= 6 times) and with the fact stated (>= 2 times).
    modes = (["codename"] * 6 + ["both"] * 2)
    for product in PRODUCTS:
        for mode in modes:
            splits["train"].append(fresh(mode=mode, product=product))
    while len(splits["train"]) < n_train:
        splits["train"].append(fresh(mode="alias"))
    rng.shuffle(splits["train"])
    for _ in range(n_val):
        splits["val"].append(fresh(mode=rng.choice(["alias"] * 5 + ["codename"])))
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
    args = ap.parse_args(argv)
    data = generate(args.seed)
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
