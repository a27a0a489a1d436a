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
sys.path.insert(0, str(HERE.parents[1]))
SIGN_OFF = "Best regards, the Support Team"
RULES = ("greets_by_name", "no_exclamation", "at_most_three_sentences", "signs_off")

FIRST = ["Maria", "Tom", "Aisha", "Jonas", "Priya", "Lena", "Omar", "Sofia", "Kenji", "Ana", "David", "Noor",
         "Elena", "Samuel", "Mei", "Lucas", "Fatima", "Oscar", "Ingrid", "Ravi", "Chloe", "Mateo", "Yuki", "Hannah"]
LAST = ["Lopez", "Becker", "Khan", "Novak", "Sato", "Silva", "Meyer", "Rossi", "Haddad", "Berg", "Okafor", "Dubois"]
PLANS = ["Starter", "Team", "Business", "Enterprise"]
DEVICES = ["iPhone", "Android phone", "iPad", "Pixel", "Galaxy tablet"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
# topic -> (customer messages, reply sentences in three slots); {order} {amount} {plan} {device} {day} {n} are filled
# per item, so no two items read the same (the generator also rejects near-duplicates with the data doctor's index)
TOPICS = {
    "double charge": (
        ["I was charged twice for order {order} this month.", "My card shows two payments of {amount} for invoice {order}.",
         "Why did you bill me {amount} twice on {day}?", "There are two identical charges for my {plan} plan."],
        [["I am sorry about the double charge on order {order}.", "Thank you for spotting the duplicate payment of {amount}.",
          "I can confirm that {order} was billed twice by mistake."],
         ["I have refunded the second payment of {amount} today.", "The extra charge is now reversed on our side.",
          "Our billing team cancelled the duplicate on {day}."],
         ["The refund reaches your card within {n} working days.", "Your bank may take up to {n} days to show it.",
          "You will get a receipt for the refund by email."]]),
    "password": (
        ["I cannot reset my password, the email never arrives.", "The reset link I got on {day} says it has expired.",
         "I am locked out of my {plan} account after three tries.", "The password page on my {device} shows an error."],
        [["Thank you for telling us about the reset problem.", "I am sorry you are locked out of your {plan} account.",
          "I am sorry the sign-in is giving you trouble."],
         ["I have sent a new reset link to your address.", "I have unlocked your account so you can try again now.",
          "The new link stays valid for {n} hours."],
         ["Please check your spam folder if it does not arrive soon.", "Let us know if the page still fails on your {device}.",
          "After the reset you can sign in on every device."]]),
    "export": (
        ["How do I export my data as CSV?", "Is there a way to download all my reports at once?",
         "Can I export the last {n} months of invoices?", "I need a spreadsheet of everything in my {plan} workspace."],
        [["You can export everything from Settings, then Data.", "Exports are part of every {plan} plan.",
          "The export page lists each report you can download."],
         ["Choose CSV and the date range, then press Export.", "Select the last {n} months and the CSV format.",
          "Pick the reports you need and press Download."],
         ["The file arrives by email when it is ready.", "Large exports take up to {n} minutes to prepare.",
          "You will find the file in Downloads on your {device} as well."]]),
    "cancel": (
        ["I want to cancel my {plan} plan at the end of the month.", "Please close my account after this billing period.",
         "How do I stop the renewal of order {order}?", "We no longer need the {plan} plan from {day} on."],
        [["I have scheduled the cancellation for the end of your billing period.", "Your {plan} plan will not renew.",
          "I have stopped the renewal of order {order}."],
         ["You keep full access until then.", "Nothing more will be charged after {day}.",
          "Your data stays available for {n} days after the plan ends."],
         ["We will send a confirmation by email.", "You can restart the plan at any time from Settings.",
          "Your last invoice of {amount} is the final one."]]),
    "slow app": (
        ["The mobile app has become very slow since the update.", "Pages take ages to load on my {device}.",
         "The app freezes for {n} seconds when I open a report.", "Since {day} the dashboard is very slow for our team."],
        [["Thank you for reporting the slowdown.", "I am sorry the app is slow on your {device}.",
          "We saw the same delay in our own tests on {day}."],
         ["Our team fixed it in the update released today.", "A fix for the loading delay is now live.",
          "Clearing the app cache removes most of the delay."],
         ["Please update the app and let us know if it persists.", "Reports should now open within {n} seconds.",
          "Send us a screenshot if it is still slow."]]),
    "invoice address": (
        ["I need the company address changed on my invoices.", "Our invoices still show our old address.",
         "Invoice {order} has the wrong billing address.", "Can you add our VAT number to the {plan} invoices?"],
        [["I have updated the address on your account.", "Thank you for sending the new billing details.",
          "I have corrected the billing address on invoice {order}."],
         ["Your next invoices will show it.", "The change applies from {day} on.", "The VAT number is now on every invoice."],
         ["I can also reissue last month's invoice if you need it.", "A corrected copy of {order} is in your inbox.",
          "You can edit these details yourself under Billing."]]),
    "upgrade": (
        ["What does it cost to move from {plan} to the next plan?", "I want more seats, we are now {n} people.",
         "Can I upgrade in the middle of the month?", "Is the upgrade charged right away or on {day}?"],
        [["Thank you for your interest in more seats.", "You can upgrade at any time from Billing.",
          "The next plan adds seats for teams of {n} or more."],
         ["The price difference is {amount} per month.", "You only pay the difference for the rest of the month.",
          "The upgrade takes effect immediately."],
         ["Your new invoice will show the change.", "I can apply the upgrade for you if you confirm.",
          "Your seats are ready as soon as you confirm on {day}."]]),
    "missing feature": (
        ["Is there a dark mode for the app on my {device}?", "Can I schedule reports to run every {day}?",
         "Do you support single sign-on on the {plan} plan?", "I cannot find the calendar view anymore."],
        [["Thank you for the suggestion.", "That is a question we hear often.", "I understand why you need it."],
         ["It is available under Settings, then Display.", "It is on our plan for the next quarter.",
          "It is part of the {plan} plan from this month."],
         ["I have added your vote to the request.", "We will write to you when it ships.",
          "Our help centre has a short guide on it."]]),
}


def details(rng: random.Random) -> dict:
    return {"order": f"#{rng.randint(10000, 99999)}", "amount": f"${rng.randint(9, 480)}",
            "plan": rng.choice(PLANS), "device": rng.choice(DEVICES), "day": rng.choice(DAYS),
            "n": str(rng.randint(2, 14))}


def reply(first: str, topic: str, rng: random.Random, d: dict | None = None) -> str:
    """A reply in the house style: greeting, two or three sentences, sign-off."""
    d = d or details(rng)
    slots = TOPICS[topic][1]
    k = rng.choice([2, 3, 3])
    body = " ".join(rng.choice(slots[i]).format(**d) for i in range(k))
    return f"Hi {first},\n{body}\n{SIGN_OFF}"


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


def item(i: int, split: str, rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    topic = rng.choice(sorted(TOPICS))
    d = details(rng)
    msg = rng.choice(TOPICS[topic][0]).format(**d)
    return f"Customer: {first} {last}\nMessage: {msg}", reply(first, topic, rng, d)


def generate(seed: int = 0, sizes: dict[str, int] | None = None) -> dict[str, list[dict]]:
    """The splits; every item is checked against all items accepted so far (every split) with the data doctor's own
    exact/MinHash index at Jaccard 0.7, stricter than the doctor's 0.8: no duplicates or leakage by construction."""
    from harness.data import DupIndex, exact_key
    from harness.example import Example

    rng = random.Random(seed)
    sizes = sizes or {"train": 120, "val": 24, "eval": 40}
    index = DupIndex(threshold=0.7)
    out: dict[str, list[dict]] = {}
    for split, n in sizes.items():
        rows: list[dict] = []
        while len(rows) < n:
            for _ in range(2000):
                msg, answer = item(len(rows), split, rng)
                ex = Example(({"role": "user", "content": msg}, {"role": "assistant", "content": answer}), source="gen",
                             line=len(rows))
                key = exact_key(ex)
                if not index.find(ex, key=key):
                    index.add(ex, key=key)
                    break
            else:
                raise RuntimeError("could not generate a fresh item: add variety to TOPICS")
            rows.append({"id": f"voice-{split}-{len(rows):04d}", "messages": [{"role": "user", "content": msg},
                                                                              {"role": "assistant", "content": answer}]})
        out[split] = rows
    return out


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
