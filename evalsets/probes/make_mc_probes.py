"""Generate the multiple-choice (log-likelihood) probe set mc.jsonl (written for this repo), deterministically.

    python evalsets/probes/make_mc_probes.py            # write mc.jsonl and mc_fast.jsonl
    python evalsets/probes/make_mc_probes.py --check    # exit 1 if a committed file differs from a fresh build

Scored by harness.likelihood (one teacher-forced forward per model per item, no generation), beside the
generated probes of make_probes.py, whose fact pools it reads (read-only: a pool edited there changes the items
here; run this again then). Item: {"id": "mc-<family>-NNN", "family", "kind", "messages": [the shared system
message, one user turn],
"choices": [4 strings, 2 for yes/no], "answer": index of the right one}. No choice is a prefix of another
(harness.likelihood.prefix_pair: choices are scored without an end-of-turn token, so "8" would always beat "85"):
a distractor that would make such a pair is skipped for the next of the seeded draw; a reading passage whose two
facts make one is drawn again. Every item is checked with harness.likelihood.validate_mc. Families:
  arithmetic  sums, differences, products, exact quotients, one-step word problems; the right result and three
              plausible wrong numbers (off by one, two or ten, digits swapped, the other operation's result).
  general     capitals (both directions), continents, languages, counts, opposites, next day / month, yes/no;
              the distractors are answers to other questions of the same kind (same pool, same type).
  reading     a two-fact passage; the asked fact, the other fact of the passage (the distractor) and two more
              from the same pool.
Size: mc.jsonl has PER_FAMILY items per family, so that a 10-point drop of one family is shown at 80% power:
non-inferiority MARGIN 0.10, two-sided alpha 0.05, an assumed DISCORDANCE of 0.15 between base and adapter
(harness.stats.n_needed_paired: (1.96 + 0.84)^2 * 0.15 / 0.10^2 = 118). mc_fast.jsonl is its first FAST_PER_FAMILY
items of each family (kinds are interleaved, so the prefix is stratified), for a tight wall-time budget: at the
same discordance it shows a drop of (1.96 + 0.84) * sqrt(0.15 / 60) = 0.14 (0.10 where the observed discordance
is 0.076 or less). Cost: see harness/likelihood.py. Choice order is shuffled with the seeded RNG.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from harness.likelihood import prefix_pair, validate_mc  # noqa: E402

SEED = 20261203
PER_FAMILY = 120
FAST_PER_FAMILY = 60
MARGIN, DISCORDANCE = 0.10, 0.15  # what PER_FAMILY is sized for (tests/test_likelihood.py recomputes it)
FAMILY_ORDER = ("arithmetic", "general", "reading")


def _pools():
    """make_probes.py's module (its pools and constants), loaded by path, never modified."""
    spec = importlib.util.spec_from_file_location("make_probes", HERE / "make_probes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


P = _pools()


def _pick(rng: random.Random, fixed: list[str], pool, k: int) -> list[str]:
    """k of `pool` (sorted first: same seed, same draw) in seeded order, skipping any that is a prefix of, or has as
    a prefix, a choice already taken (`fixed` included)."""
    out: list[str] = []
    cands = sorted(set(pool))
    for w in rng.sample(cands, len(cands)):
        if len(out) == k:
            break
        if not prefix_pair([*fixed, *out, w]):
            out.append(w)
    if len(out) < k:
        raise RuntimeError(f"only {len(out)} distractors for {fixed[0]!r}: widen the pool")
    return out


def _options(rng: random.Random, right: str, wrong: list[str], k: int = 3) -> tuple[list[str], int]:
    """`right` plus k wrong choices from `wrong` (none a prefix of another), shuffled."""
    choices = [right] + _pick(rng, [right], wrong, k)
    rng.shuffle(choices)
    return choices, choices.index(right)


SYSTEM = "Reply with the answer only: a number, a name or a word."


def _item(family: str, kind: str, prompt: str, choices: list[str], answer: int) -> dict:
    """The instruction is the system message every item shares: the scorer computes that prefix once per model."""
    return {"family": family, "kind": kind, "messages": [{"role": "system", "content": SYSTEM},
                                                         {"role": "user", "content": prompt}],
            "choices": choices, "answer": answer}


def _fresh(make, seen: set, tries: int = 1000):
    """make() until its prompt is new (running out of distinct prompts is a bug, not a hang)."""
    for _ in range(tries):
        out = make()
        if out[0] not in seen:
            seen.add(out[0])
            return out
    raise RuntimeError(f"no new prompt after {tries} tries: widen the pools")


# --------------------------------------------------------------------------- arithmetic

ARITH_KINDS = ["add", "sub", "mul", "div", "word_add", "word_sub", "word_mul"]


def _wrong_numbers(r: int, other: int) -> list[str]:
    """Plausible slips: off by one, two or ten, the digits swapped, the other operation's result."""
    cands = {r - 1, r + 1, r - 2, r + 2, r - 10, r + 10, other}
    if r >= 10:
        cands.add(int(str(r)[::-1]))
    return [str(c) for c in cands if c > 0 and c != r]


def _arith(kind: str, rng: random.Random) -> tuple[str, int, int]:
    """(question, result, the result of the operation a careless reader might do instead)."""
    a_name, b_name = rng.sample(P.NAMES, 2)
    thing = rng.choice(P.THINGS)
    if kind == "add":
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        return f"What is {a} + {b}?", a + b, abs(a - b)
    if kind == "sub":
        a = rng.randint(20, 99)
        b = rng.randint(1, a - 1)
        return f"What is {a} - {b}?", a - b, a + b
    if kind == "mul":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        return f"What is {a} times {b}?", a * b, a + b
    if kind == "div":
        b, q = rng.randint(2, 10), rng.randint(2, 12)
        return f"What is {b * q} divided by {b}?", q, b * q - b
    if kind == "word_add":
        a, b = rng.randint(2, 30), rng.randint(2, 20)
        return f"{a_name} has {a} {thing} and gets {b} more. How many {thing} does {a_name} have now?", a + b, abs(a - b)
    if kind == "word_sub":
        a = rng.randint(8, 40)
        b = rng.randint(1, a - 2)
        return f"{a_name} has {a} {thing} and gives {b} to {b_name}. How many are left?", a - b, a + b
    if kind == "word_mul":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return f"{a_name} has {a} boxes with {b} {thing} in each. How many {thing} in total?", a * b, a + b
    raise ValueError(kind)


def arithmetic_items(n: int, rng: random.Random) -> list[dict]:
    out, seen = [], set()
    while len(out) < n:
        kind = ARITH_KINDS[len(out) % len(ARITH_KINDS)]
        q, r, other = _fresh(lambda: _arith(kind, rng), seen)
        choices, ans = _options(rng, str(r), _wrong_numbers(r, other))
        out.append(_item("arithmetic", kind, q, choices, ans))
    return out


# --------------------------------------------------------------------------- general knowledge

def _first(answer: str) -> str:
    return answer.split("|")[0]


def _country(name: str) -> str:
    return name[4:] if name.startswith("the ") else name


def _general_pool() -> dict[str, list[tuple[str, str, list[str]]]]:
    """kind -> [(question, right answer, same-kind answers to draw distractors from)]."""
    capitals = [_first(a) for _, a in P.CAPITALS]
    countries = [_country(c) for c, _ in P.CAPITALS]
    continents = sorted({a for _, a in P.CONTINENTS})
    languages = sorted({a for _, a in P.LANGUAGES})
    counts = sorted({str(n) for _, n in P.COUNTS}, key=int)
    opposites = [_first(a) for _, a in P.OPPOSITES]
    pool: dict[str, list[tuple[str, str, list[str]]]] = {
        "capital": [(f"What is the capital of {c}?", _first(a), capitals) for c, a in P.CAPITALS],
        "country": [(f"Which country has {_first(a)} as its capital?", _country(c), countries) for c, a in P.CAPITALS],
        "continent": [(f"On which continent is {c}?", a, continents) for c, a in P.CONTINENTS],
        "language": [(f"What is the main language spoken in {c}?", a, languages) for c, a in P.LANGUAGES],
        "count": [(q, str(n), counts) for q, n in P.COUNTS],
        "opposite": [(f"What is the opposite of '{w}'?", _first(a), [o for o in opposites if o != w] + [w])
                     for w, a in P.OPPOSITES],
        "next_day": [(f"Which day of the week comes after {d}?", P.DAYS[(i + 1) % 7], [x for x in P.DAYS if x != d])
                     for i, d in enumerate(P.DAYS)],
        "next_month": [(f"Which month comes after {m}?", P.MONTHS[(i + 1) % 12], [x for x in P.MONTHS if x != m])
                       for i, m in enumerate(P.MONTHS)],
        "yes_no": [(q, a, ["yes", "no"]) for q, a in P.YES_NO],
    }
    return pool


def general_items(n: int, rng: random.Random) -> list[dict]:
    by_kind = _general_pool()
    for v in by_kind.values():
        rng.shuffle(v)
    out = []
    total = sum(len(v) for v in by_kind.values())
    if n > total:
        raise RuntimeError(f"{n} general items asked, the pools hold {total}: widen them")
    while len(out) < n:  # round-robin over kinds: every prefix is stratified
        for kind, items in by_kind.items():
            if items and len(out) < n:
                q, right, same = items.pop()
                choices, ans = _options(rng, right, same, k=1 if kind == "yes_no" else 3)
                out.append(_item("general", kind, q, choices, ans))
    return out


# --------------------------------------------------------------------------- reading (facts given in the prompt)

READING_KINDS = ["color", "city", "count", "order", "pet_owner", "job", "food", "day"]


def _reading(kind: str, rng: random.Random) -> tuple[str, str, str, list[str]]:
    """(passage + question, right answer, the passage's other fact, the pool for two more distractors)."""
    a, b, c = rng.sample(P.NAMES, 3)
    first = rng.random() < 0.5

    def pick(x, y):
        return (x, y) if first else (y, x)

    if kind == "color":
        (c1, c2), (o1, o2) = rng.sample(P.COLORS, 2), rng.sample(P.OBJECTS, 2)
        q = f"What color is {a}'s {o1}?" if first else f"What color is {b}'s {o2}?"
        return f"{a} has a {c1} {o1} and {b} has a {c2} {o2}. {q}", *pick(c1, c2), P.COLORS
    if kind == "city":
        x, y = rng.sample(P.CITIES, 2)
        return f"{a} lives in {x} and {b} lives in {y}. In which city does {a if first else b} live?", *pick(x, y), P.CITIES
    if kind == "count":
        n1, n2 = rng.sample(range(2, 13), 2)
        thing = rng.choice(P.THINGS)
        return (f"{a} has {n1} {thing} and {b} has {n2} {thing}. How many {thing} does {a if first else b} have?",
                *pick(str(n1), str(n2)), [str(k) for k in range(2, 13)])
    if kind == "order":
        names = [a, b, c]
        k = rng.randrange(3)
        other = names[(k + rng.choice((1, 2))) % 3]
        return (f"In the race, {a} finished first, {b} finished second and {c} finished third. "
                f"Who finished {P.ORDINALS[k]}?", names[k], other, P.NAMES)
    if kind == "pet_owner":
        p1, p2 = rng.sample(P.PETS, 2)
        return f"{a} owns a {p1} and {b} owns a {p2}. Who owns the {p1 if first else p2}?", *pick(a, b), P.NAMES
    if kind == "job":
        j1, j2 = rng.sample(P.JOBS, 2)
        return f"{a} works as a {j1} and {b} works as a {j2}. What is {a if first else b}'s job?", *pick(j1, j2), P.JOBS
    if kind == "food":
        f1, f2 = rng.sample(P.FOODS, 2)
        return f"For lunch, {a} ate {f1} and {b} ate {f2}. What did {a if first else b} eat for lunch?", *pick(f1, f2), P.FOODS
    if kind == "day":
        d1, d2 = rng.sample(P.DAYS, 2)
        return (f"{a} visits the museum on {d1} and {b} visits it on {d2}. On which day does {a if first else b} "
                f"visit the museum?", *pick(d1, d2), P.DAYS)
    raise ValueError(kind)


def reading_items(n: int, rng: random.Random) -> list[dict]:
    out, seen = [], set()
    while len(out) < n:
        kind = READING_KINDS[len(out) % len(READING_KINDS)]
        text, right, distractor, pool = _fresh(lambda: _reading(kind, rng), seen)
        if prefix_pair([right, distractor]):
            continue  # e.g. "2" and "12" in one passage: draw another
        others = set(pool) - {right, distractor} - set(text.replace("'", " ").replace(".", " ").split())
        choices = [right, distractor] + _pick(rng, [right, distractor], others, 2)
        rng.shuffle(choices)
        out.append(_item("reading", kind, text, choices, choices.index(right)))
    return out


# --------------------------------------------------------------------------- assembly


def build(per_family: int = PER_FAMILY, seed: int = SEED) -> list[dict]:
    """Every MC item, in family order, ids "mc-<family>-NNN"; same seed, same items (one RNG per family)."""
    makers = {"arithmetic": arithmetic_items, "general": general_items, "reading": reading_items}
    items = []
    for fam in FAMILY_ORDER:
        rng = random.Random(f"{seed}-mc-{fam}")
        for i, it in enumerate(makers[fam](per_family, rng), 1):
            item = {"id": f"mc-{fam}-{i:03d}", **it}
            problem = validate_mc(item)
            if problem:
                raise RuntimeError(f"{item['id']}: {problem}")
            items.append(item)
    return items


def outputs() -> dict[Path, str]:
    items = build()
    return {HERE / "mc.jsonl": P.render(items), HERE / "mc_fast.jsonl": P.render(P.fast_subset(items, FAST_PER_FAMILY))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if a committed set differs from a fresh build")
    args = ap.parse_args()
    stale = [p for p, text in outputs().items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    if args.check:
        for p in stale:
            print(f"{p}: differs from make_mc_probes.py's output; run python "
                  f"{Path(__file__).relative_to(HERE.parents[1])}")
        return 1 if stale else 0
    for p, text in outputs().items():
        p.write_text(text, encoding="utf-8")
        print(f"wrote {p} ({text.count(chr(10))} items)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
