"""Generate the general prompts for replay (`train.replay`), written for this repo (no outside data), deterministically.

    python evalsets/replay/make_replay.py            # write prompts.jsonl
    python evalsets/replay/make_replay.py --check    # exit 1 if the committed file differs from a fresh build

Replay trains the adapter on these prompts answered by the base model itself, so only the prompts ship here
(harness/replay.py generates the answers). They are short everyday requests of many kinds (explanations,
definitions, how-to steps, lists, short writing, rewriting, arithmetic in words, facts, yes/no with a reason,
summaries) whose wording and content differ from the forgetting probes (evalsets/probes/): replay must never
train on the test. tests/test_replay.py checks that no prompt shares a 6-word shingle with any probe.
Kinds are interleaved (round-robin over shuffled kinds), so any prefix of the file is varied.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "prompts.jsonl"
SEED = 20260315

WHY = ["leaves change color in autumn", "bread dough rises", "the Earth has seasons", "metal feels cold to the touch",
       "ice floats on water", "people yawn", "the sea tastes salty", "cutting onions makes people cry",
       "a rainbow can appear after a shower", "heavy ships do not sink", "lightning is seen before thunder is heard",
       "cats purr", "a balloon pops when it is squeezed too hard", "soap helps clean greasy hands",
       "cyclists wear helmets", "bees visit flowers", "the Moon seems to change shape during a month",
       "a spoon in a glass of water looks bent", "dogs pant on hot days", "old photographs fade",
       "a metal pan heats up faster than a wooden spoon", "people shiver when they are cold",
       "the ground feels hotter than the air at noon in summer", "some birds fly south for the winter",
       "a kettle whistles", "milk goes sour", "ears pop on an airplane", "mirrors reflect light",
       "puddles dry up after a sunny day", "fresh bread smells so good"]
TOOLS = ["a thermometer", "a compass", "a stapler", "a ladder", "a whisk", "a magnifying glass", "a telescope",
         "a microscope", "a sieve", "a funnel", "a wrench", "a spirit level", "a tape measure", "an hourglass",
         "an anchor", "a rolling pin", "a shovel", "a calculator", "a metronome", "a stethoscope"]
WORDS = ["generous", "fragile", "ancient", "curious", "humble", "rapid", "vast", "transparent", "punctual",
         "reluctant", "vivid", "obsolete", "fluent", "brittle", "candid", "frugal", "nocturnal", "portable", "drowsy",
         "meticulous"]
PAIRS = [("weather", "climate"), ("a pond", "a sea"), ("a virus", "a bacterium"), ("a crocodile", "an alligator"),
         ("a hill", "a cliff"), ("baking", "frying"), ("a city", "a village"), ("a hurricane", "a tornado"),
         ("a frog", "a toad"), ("a violin", "a cello"), ("a poem", "a story"), ("renting a flat", "buying one"),
         ("a map", "a globe"), ("a moth", "a beetle"), ("walking", "jogging")]
HOWTO = ["boil an egg", "plant a sunflower seed", "tie a shoelace", "brew a pot of coffee", "clean a bicycle chain",
         "fold a paper airplane", "wash a window without streaks", "pack a suitcase for a weekend trip",
         "water a houseplant properly", "sharpen a pencil with a knife", "wrap a present neatly",
         "change a light bulb safely", "make a simple sandwich", "start a small vegetable patch",
         "write a shopping list that works", "prepare for a job interview", "learn to juggle three balls",
         "remove a coffee stain from a shirt", "set up a fish tank", "make a paper hat"]
TIPS = ["sleeping better", "studying for an exam", "saving money each month", "staying cool during a heatwave",
        "keeping a desk tidy", "learning a new language", "running your first five kilometers",
        "writing a clear email", "cooking fluffy rice", "looking after a puppy", "giving a short speech",
        "staying focused while working from home", "making new friends in a new town", "keeping plants alive",
        "travelling with little luggage"]
PLACES = ["a toolbox", "a classroom", "a hospital waiting room", "a bakery", "a post office", "a camping backpack",
          "a first-aid kit", "a playground", "a fridge", "an office drawer", "a garage", "a bathroom cabinet"]
NAMED = ["a pet goldfish", "a small cafe", "a bakery", "a friendly robot", "a sailboat", "a hiking club",
         "a board game", "a lemonade stand"]
RHYMES = ["a sleepy owl", "a red balloon", "a rainy Tuesday", "a lost sock", "a paper boat", "a lighthouse",
          "fresh pancakes", "a busy ant", "an old bicycle", "a snowy rooftop", "a shy turtle", "a windy hill"]
THANKS_WHO = ["a neighbor", "a coworker", "a coach", "an aunt", "a classmate"]
THANKS_WHY = ["helping me move house", "the birthday card", "lending me a ladder", "the kind advice",
              "watering my plants while I was away"]
PRODUCTS = ["a reusable water bottle", "a folding umbrella", "a desk lamp", "running shoes", "a wool blanket",
            "noise-cancelling headphones", "a sturdy backpack", "a ceramic plant pot"]
SENTENCES = ["the dog chases the ball across the yard", "she walks to work every morning",
             "we visit our grandparents on Sundays", "the children build a sandcastle near the water",
             "he forgets his keys almost every day", "they cook dinner together after work",
             "i read a long book about sailing ships", "the shop opens at nine and closes at six",
             "our team wins most of its home games", "the wind knocks over the small wooden fence"]
REWRITES = [("Put this sentence into the past tense:", "{s}."), ("Turn this statement into a question:", "{s}."),
            ("Add correct capital letters and punctuation to this text:", "{s}"),
            ("Say the same thing in fewer words:", "{s}."), ("Rewrite this so it sounds more cheerful:", "{s}.")]
INTERESTING = ["octopuses", "volcanoes", "honeybees", "the Sahara", "glaciers", "owls", "the human skeleton",
               "comets", "penguins", "bamboo", "dolphins", "coral reefs", "sloths", "hot air balloons", "tigers"]
PEOPLE = ["Marie Curie", "Isaac Newton", "Cleopatra", "Mozart", "Galileo Galilei", "Ada Lovelace", "Nelson Mandela",
          "Frida Kahlo", "Louis Pasteur", "Amelia Earhart"]
MATERIALS = ["glass", "paper", "cheese", "chocolate", "concrete", "silk", "rubber", "candle wax", "a pencil's core",
             "yogurt"]
CAN = ["an ostrich fly", "a cactus survive without rain for months", "sound travel through water",
       "a person sneeze with their eyes open", "metal rust in damp air", "glass be recycled", "a goldfish live in a pond",
       "a snail sleep for a long time", "a kangaroo walk backwards", "hail fall in summer", "a plant grow in the dark",
       "a camel drink a lot of water at once", "lightning strike the same place twice", "bread go stale in a fridge",
       "an apple float in water"]
FOODS = ["a cucumber", "a pumpkin", "a carrot", "a strawberry", "a potato", "an avocado", "broccoli", "a pear",
         "an onion", "an olive"]
PEOPLE2 = ["Tariq", "Bea", "Malik", "Ingrid", "Rosa", "Kenji", "Elif", "Sven", "Daria", "Bruno", "Maya", "Otto"]
GOALS = [("learn the piano", "played a whole song at the school concert"), ("grow tomatoes",
         "picked a basket of ripe ones in August"), ("run a marathon", "crossed the finish line in under five hours"),
         ("bake bread", "shared a warm loaf with the neighbors"), ("speak Italian", "ordered lunch in Rome without help"),
         ("build a bookshelf", "filled it with old comics"), ("paint a portrait", "hung it in the hallway")]
MISC = ["Describe your ideal weekend in two sentences.", "What would you pack for a picnic in the park?",
        "Suggest a fun activity for a rainy afternoon.", "What is a good way to start a morning?",
        "Give me a short riddle and its answer.", "Recommend a hobby for someone who likes being outdoors.",
        "How would you cheer up a friend who had a bad day?", "What makes a good neighbor?",
        "Describe the smell of a forest after rain.", "Invent a new flavor of ice cream and describe it briefly.",
        "What are some polite ways to say no to an invitation?", "Explain how to play tic-tac-toe.",
        "What should someone check before a long car trip?", "Why is it useful to drink water during exercise?",
        "Tell a very short story about a cat who finds a hat.", "What do people usually do at a birthday party?",
        "How can a family use less electricity at home?", "What is the point of a fire drill?",
        "Describe a busy train platform in the morning.", "What is your advice for someone starting a new job?"]


def _arith(rng: random.Random) -> list[tuple[str, str]]:
    """Arithmetic asked in words unlike the probes' "What is a plus b? Reply with only the final number" items."""
    out = []
    for _ in range(6):
        a, b = rng.randint(11, 99), rng.randint(2, 49)
        out.append(("arithmetic", f"Add {a} and {b}, and explain how you got the result."))
        out.append(("arithmetic", f"Take {b} away from {a}. Show the working in one line."))
        n, p = rng.randint(2, 9), rng.randint(2, 15)
        out.append(("arithmetic", f"One notebook costs {p} euros. What do {n} notebooks cost altogether?"))
        v, h = rng.choice([40, 50, 60, 80, 90, 120]), rng.randint(2, 5)
        out.append(("arithmetic", f"A bus drives at {v} km per hour for {h} hours. How far does it travel?"))
        x = rng.randint(3, 20)
        out.append(("arithmetic", f"Calculate the square of {x}."))
        y = rng.randint(101, 999)
        out.append(("arithmetic", f"Round {y} to the nearest hundred and say why."))
        z = rng.randint(10, 500)
        out.append(("arithmetic", f"Tell me whether {z} is odd or even."))
        w = 2 * rng.randint(6, 80)
        out.append(("arithmetic", f"Split {w} into two equal parts. How big is each part?"))
        m = rng.randint(2, 6)
        out.append(("arithmetic", f"How many minutes are there in {m} and a half hours?"))
        c = rng.randint(3, 12)
        out.append(("arithmetic", f"Work out ten percent of {c * 10}."))
    return out


def pools(rng: random.Random) -> dict[str, list[str]]:
    """kind -> prompts (each list its own template family)."""
    k: dict[str, list[str]] = {}
    k["why"] = [f"Explain in one or two sentences why {x}." for x in WHY]
    k["tool"] = [f"What is {t} used for? Keep it to one sentence." for t in TOOLS]
    k["define"] = [f"What does the word '{w}' mean? Give a short definition and an example." for w in WORDS]
    k["compare"] = [f"How is {a} different from {b}? Keep the answer short." for a, b in PAIRS]
    k["howto"] = [f"How do I {t}? Give two or three short steps." for t in HOWTO]
    k["tips"] = [f"Give me three tips for {t}." for t in TIPS]
    k["contents"] = [f"What might I find inside {p}? Mention a few things." for p in PLACES]
    k["names"] = [f"Suggest three possible names for {x}." for x in NAMED]
    k["rhyme"] = [f"Write a two-line rhyme about {x}." for x in RHYMES]
    k["thanks"] = [f"Write a short thank-you note to {w} for {y}." for w in THANKS_WHO for y in THANKS_WHY]
    k["product"] = [f"Write a one-sentence advertisement for {p}." for p in PRODUCTS]
    k["rewrite"] = [f"{op}\n{form.format(s=s if op.startswith('Add') else s[0].upper() + s[1:])}"
                    for op, form in REWRITES for s in SENTENCES]
    k["interesting"] = [f"Tell me one surprising thing about {x}." for x in INTERESTING]
    k["person"] = [f"In a sentence or two, who was {p} and why are they remembered?" for p in PEOPLE]
    k["material"] = [f"What is {m} made from?" for m in MATERIALS]
    k["can"] = [f"Can {c}? Say yes or no and give a reason." for c in CAN]
    k["food"] = [f"Do cooks treat {f} as a fruit or a vegetable, and what is it botanically?" for f in FOODS]
    k["summary"] = [f"Summarize this in one sentence: {n} wanted to {g}. Every evening for months, {n} practiced a "
                    f"little. It was hard at first, but in the end {n} {r}."
                    for n, (g, r) in zip(rng.sample(PEOPLE2, len(GOALS)), GOALS)]
    k["misc"] = list(MISC)
    for kind, prompt in _arith(rng):
        k.setdefault(kind, []).append(prompt)
    return k


def build() -> list[dict]:
    rng = random.Random(SEED)
    by_kind = pools(rng)
    kinds = sorted(by_kind)
    for kind in kinds:
        seen: set[str] = set()
        by_kind[kind] = [p for p in by_kind[kind] if not (p in seen or seen.add(p))]
        rng.shuffle(by_kind[kind])
    rng.shuffle(kinds)
    out = []
    while any(by_kind[k] for k in kinds):  # round-robin: every prefix mixes every kind
        for kind in kinds:
            if by_kind[kind]:
                out.append({"id": f"replay-{len(out) + 1:03d}", "kind": kind, "prompt": by_kind[kind].pop()})
    return out


def render(items: list[dict]) -> str:
    return "".join(json.dumps(it, ensure_ascii=False, sort_keys=True) + "\n" for it in items)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if prompts.jsonl differs from a fresh build")
    args = ap.parse_args()
    text = render(build())
    if args.check:
        if not OUT.is_file() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT}: differs from make_replay.py's output; run python evalsets/replay/make_replay.py")
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({text.count(chr(10))} prompts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
