"""Generate the voice task: a customer's message -> a support reply in the team's house style.

Deterministic (seeded), no external data:  python evalsets/voice/generate.py [--seed 0] [--check]

The house style is checkable by rule, so the truth about any reply is known (`violations`):
  1. it opens by greeting the customer by first name: "Hi <name>,"
  2. no exclamation marks
  3. at most three sentences between the greeting and the sign-off
  4. it ends with the fixed sign-off "Best regards, the Support Team"
The task's rule metrics (task.yaml) check the same four rules by regex; the `voice` rubric asks a judge for the
same style, so a judge's agreement with the rules (and with people labelling review.html) can be measured.
`off_style` writes a reply that breaks some rules (what an untrained model or a plain prompt tends to write):
tests and the example's labels use it.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIGN_OFF = "Best regards, the Support Team"
RULES = ("greets_by_name", "no_exclamation", "at_most_three_sentences", "signs_off")

FIRST = ["Maria", "Tom", "Aisha", "Jonas", "Priya", "Lena", "Omar", "Sofia", "Kenji", "Ana", "David", "Noor",
         "Elena", "Samuel", "Mei", "Lucas", "Fatima", "Oscar", "Ingrid", "Ravi"]
LAST = ["Lopez", "Becker", "Khan", "Novak", "Sato", "Silva", "Meyer", "Rossi", "Haddad", "Berg"]
TOPICS = {
    "double charge": (["I was charged twice for my subscription this month.", "My card shows two payments for the "
                       "same invoice."],
                      ["I am sorry about the double charge.", "I have refunded the second payment today.",
                       "The refund reaches your card within five working days."]),
    "password": (["I cannot reset my password, the email never arrives.", "The password reset link does not work."],
                 ["Thank you for telling us about the reset email.", "I have sent a new link to your address.",
                  "Please check your spam folder if it does not arrive within ten minutes."]),
    "export": (["How do I export my data as CSV?", "Is there a way to download all my reports at once?"],
               ["You can export everything from Settings, then Data.", "Choose CSV and press Export.",
                "The file arrives by email when it is ready."]),
    "cancel": (["I want to cancel my plan at the end of the month.", "Please close my account after this billing "
                "period."],
               ["I have scheduled the cancellation for the end of your billing period.",
                "You keep full access until then.", "We will send a confirmation by email."]),
    "slow app": (["The mobile app has become very slow since the update.", "Pages take ages to load on my phone."],
                 ["Thank you for reporting the slowdown.", "Our team fixed it in the update released today.",
                  "Please update the app and let us know if it persists."]),
    "invoice address": (["I need the company address changed on my invoices.", "Our invoices show our old address."],
                        ["I have updated the address on your account.", "Your next invoices will show it.",
                         "I can also reissue last month's invoice if you need it."]),
}


def reply(first: str, topic: str, rng: random.Random) -> str:
    """A reply in the house style: greeting, one to three sentences, sign-off."""
    sentences = TOPICS[topic][1]
    k = rng.choice([2, 3, 3])
    return f"Hi {first},\n{' '.join(sentences[:k])}\n{SIGN_OFF}"


def off_style(good: str, first: str, rng: random.Random, breaks: int | None = None) -> str:
    """The same answer breaking `breaks` (default 1-4, at random) of the four house rules."""
    body = good.split("\n")[1]
    which = rng.sample(RULES, breaks if breaks is not None else rng.randint(1, 4))
    greet = f"Hi {first}," if "greets_by_name" not in which else rng.choice(["Hello!", "Dear customer,", "Hey there,"])
    if "no_exclamation" in which:
        body = body.replace(".", "!", 1)
    if "at_most_three_sentences" in which:
        body += " We really value your business. Thanks again for reaching out to us."
    end = SIGN_OFF if "signs_off" not in which else rng.choice(["Cheers", "Thanks, Support", "Have a great day"])
    if "no_exclamation" in which and greet.endswith("!") is False:
        end += "!"
    return f"{greet}\n{body}\n{end}"


def violations(text: str, first: str | None = None) -> list[str]:
    """The house rules a reply breaks (the task's truth; `first`: the customer's first name, else any name)."""
    text = (text or "").strip()
    lines = text.split("\n")
    name = re.escape(first) if first else r"[A-Z][A-Za-z'-]+"
    out = []
    if not re.match(rf"Hi {name},", text):
        out.append("greets_by_name")
    if "!" in text:
        out.append("no_exclamation")
    body = " ".join(lines[1:-1]) if len(lines) >= 3 else text
    if len(re.findall(r"[.?!]+", body)) > 3:
        out.append("at_most_three_sentences")
    if not text.endswith(SIGN_OFF):
        out.append("signs_off")
    return out


def customer_of(message: str) -> str | None:
    """The customer's first name from a task message ("Customer: <first> <last>")."""
    m = re.search(r"Customer: ([A-Z][A-Za-z'-]+)", message or "")
    return m.group(1) if m else None


def item(i: int, split: str, rng: random.Random) -> dict:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    topic = rng.choice(sorted(TOPICS))
    msg = rng.choice(TOPICS[topic][0])
    return {"id": f"voice-{split}-{i:04d}",
            "messages": [{"role": "user", "content": f"Customer: {first} {last}\nMessage: {msg}"},
                         {"role": "assistant", "content": reply(first, topic, rng)}]}


def generate(seed: int = 0, sizes: dict[str, int] | None = None) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    sizes = sizes or {"train": 120, "val": 24, "eval": 40}
    return {split: [item(i, split, rng) for i in range(n)] for split, n in sizes.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="exit 1 if the files differ from what the seed generates")
    args = ap.parse_args()
    data = generate(args.seed)
    stale = []
    for split, rows in data.items():
        text = "".join(json.dumps(r) + "\n" for r in rows)
        path = HERE / f"{split}.jsonl"
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale: {', '.join(stale)} (run python evalsets/voice/generate.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
