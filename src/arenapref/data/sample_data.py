"""A seeded generator of Chatbot Arena-style data in the exact Kaggle schema.

The rows carry preference signals a small language model can learn from text alone:
identical answers tie, two refusals tie, a helpful answer beats a refusal, a correct fact or
sum beats a wrong one, and a detailed answer usually beats a curt one. A little label noise
keeps the task from being trivially separable. The file also carries the awkward parts of
the real data (multi-turn prompts, `null` turns, unicode, quotes, markdown, duplicate rows,
rows with an empty response) so every run exercises the parser and the data report.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from arenapref import LABEL_COLUMNS
from arenapref.io import atomic_path

TRAIN_HEADER = ["id", "model_a", "model_b", "prompt", "response_a", "response_b", *LABEL_COLUMNS]
TEST_HEADER = ["id", "prompt", "response_a", "response_b"]
SUBMISSION_HEADER = ["id", *LABEL_COLUMNS]

MODELS = [
    "gpt-4-1106-preview",
    "gpt-3.5-turbo-0613",
    "claude-2.1",
    "claude-instant-1",
    "llama-2-70b-chat",
    "mixtral-8x7b-instruct-v0.1",
    "vicuna-13b",
    "gemini-pro",
    "mistral-medium",
    "zephyr-7b-beta",
]

# Kinds of pair and how often each appears; the winner follows from the kind (see _label).
KIND_WEIGHTS = {
    "identical": 0.15,
    "both_refuse": 0.15,
    "refusal_vs_helpful": 0.25,
    "correct_vs_wrong": 0.20,
    "detailed_vs_short": 0.25,
}
DETAILED_WINS = 0.75
LABEL_NOISE = 0.05
MULTI_TURN = 0.12
NULL_TURN = 0.03
ASCII_ESCAPED = 0.2  # share of rows whose JSON escapes non-ASCII text, as parts of Kaggle's file do

TOPICS = [
    ("photosynthesis", "plants turn light, water and carbon dioxide into sugar and oxygen"),
    ("the water cycle", "water evaporates, condenses into clouds and falls again as rain or snow"),
    ("compound interest", "interest is earned on both the original sum and the interest already added"),
    ("a hash table", "keys are hashed to bucket positions so lookups take constant time on average"),
    ("the café culture of Paris", "cafés serve as meeting places where people read, talk and watch the street"),
    ("the Straße naming in German", "Straße means street and is written with the sharp s, ß"),
    ("vaccines", "they train the immune system to recognise a germ before a real infection"),
    ("black holes", "their gravity is so strong that not even light escapes past the event horizon"),
    ("the French Revolution", "it began in 1789 and ended the absolute monarchy in France"),
    ("recursion in programming", "a function solves a problem by calling itself on a smaller input"),
    ("東京 (Tokyo)", "it is the capital of Japan and one of the largest cities in the world"),
    ("plate tectonics", "the Earth's crust is split into plates that move a few centimetres a year"),
    ("the Python GIL", "the global interpreter lock lets only one thread run Python bytecode at a time"),
    ("inflation", "prices rise over time so the same money buys fewer goods"),
    ("emoji like 😀 and 🚀", "they are pictographs encoded as Unicode characters"),
    ("sourdough bread", "wild yeast and lactic acid bacteria leaven the dough and give it a sour taste"),
]

FACTS = [
    ("What is the capital of France?", "Paris", "Lyon"),
    ("What is the capital of Japan?", "Tokyo", "Kyoto"),
    ("How many legs does a spider have?", "eight", "six"),
    ("What is the chemical symbol for gold?", "Au", "Ag"),
    ("Which planet is closest to the Sun?", "Mercury", "Venus"),
    ("At what temperature does water boil at sea level, in Celsius?", "100 degrees", "90 degrees"),
    ("Who wrote 'Romeo and Juliet'?", "William Shakespeare", "Charles Dickens"),
    ("What is the largest ocean on Earth?", "the Pacific Ocean", "the Atlantic Ocean"),
    ("How many continents are there?", "seven", "five"),
    ("What gas do plants absorb from the air?", "carbon dioxide", "nitrogen"),
]

ASK_TEMPLATES = [
    "Explain {topic} in simple terms.",
    "Can you tell me about {topic}?",
    'What does "{topic}" mean? Keep it clear.',
    "I'm studying {topic} — give me an overview.",
    "Write a short explanation of {topic} for a beginner.",
]

REFUSALS = [
    "I'm sorry, but I can't help with that request.",
    "As an AI language model, I cannot assist with this.",
    "I apologize, but I am unable to provide that information.",
    "Sorry, I can't do that. Is there something else I can help with?",
    "I'm not able to help with this request.",
]

NAMES = ["Ana", "Björn", "Chloé", "Dmitri", "Emeka", "Fatima", "Hiroshi", "Inés", "Jonas", "Leila"]
PLACES = ["Lisbon", "Malmö", "Québec", "Kraków", "Lagos", "Cairo", "Ōsaka", "Bogotá", "Zürich", "Delhi"]


@dataclass(frozen=True)
class Pair:
    prompt: list[str | None]
    response_a: list[str | None]
    response_b: list[str | None]
    label: str  # one of LABEL_COLUMNS


def _detailed(rng: random.Random, topic: str, fact: str) -> str:
    styles = [
        f"**{topic.capitalize()}** in short: {fact}.\n\n"
        f"- The key idea: {fact}.\n- Why it matters: it explains much of what we see every day.\n"
        f'- A common phrase: "{topic}" is often taught early in school.\n\n'
        "Let me know if you want more detail on any part.",
        f"Sure! Here is an overview of {topic}.\n\n1. Definition: {fact}.\n"
        f"2. Example: think of a simple case from daily life.\n3. Summary: {fact}, "
        "which is why it is worth knowing.",
        f"Great question. {fact.capitalize()}. In more detail, people describe {topic} "
        f"step by step: first the basic idea, then an example, then the exceptions. "
        f"For instance, `{topic.split()[0]}` appears in many textbooks.",
    ]
    return rng.choice(styles)


def _short(rng: random.Random, topic: str, fact: str) -> str:
    return rng.choice([f"{fact.capitalize()}.", f"It's about {topic}.", f"Basically, {fact}."])


def _label_for_winner(winner_is_a: bool) -> str:
    return LABEL_COLUMNS[0] if winner_is_a else LABEL_COLUMNS[1]


def _pair(rng: random.Random, kind: str) -> Pair:
    """One single-turn pair of the given kind, with the better answer on a random side."""
    topic, fact = rng.choice(TOPICS)
    good_on_a = rng.random() < 0.5
    if kind == "correct_vs_wrong":
        if rng.random() < 0.5:
            question, right, wrong = rng.choice(FACTS)
        else:
            x, y = rng.randint(11, 99), rng.randint(11, 99)
            delta = rng.choice([-10, -2, -1, 1, 2, 10])
            question, right, wrong = f"What is {x} + {y}?", str(x + y), str(x + y + delta)
        prompt = question
        good = f"The answer is {right}."
        bad = f"The answer is {wrong}."
        return _sided(prompt, good, bad, good_on_a, _label_for_winner(good_on_a))
    prompt = rng.choice(ASK_TEMPLATES).format(topic=topic)
    if kind == "identical":
        answer = rng.choice([_detailed(rng, topic, fact), _short(rng, topic, fact)])
        return Pair([prompt], [answer], [answer], LABEL_COLUMNS[2])
    if kind == "both_refuse":
        first, second = rng.sample(REFUSALS, 2)
        return Pair([prompt], [first], [second], LABEL_COLUMNS[2])
    if kind == "refusal_vs_helpful":
        good = rng.choice([_detailed(rng, topic, fact), _short(rng, topic, fact)])
        return _sided(prompt, good, rng.choice(REFUSALS), good_on_a, _label_for_winner(good_on_a))
    if kind == "detailed_vs_short":
        detailed_on_a = good_on_a
        detailed_wins = rng.random() < DETAILED_WINS
        winner_is_a = detailed_on_a if detailed_wins else not detailed_on_a
        return _sided(
            prompt,
            _detailed(rng, topic, fact),
            _short(rng, topic, fact),
            detailed_on_a,
            _label_for_winner(winner_is_a),
        )
    raise ValueError(f"unknown pair kind {kind!r}")


def _sided(prompt: str, first: str, second: str, first_on_a: bool, label: str) -> Pair:
    a, b = (first, second) if first_on_a else (second, first)
    return Pair([prompt], [a], [b], label)


def _add_turn(rng: random.Random, pair: Pair) -> Pair:
    """Prepend a greeting exchange so the final turn carries the signal, as in real chats.

    The greeting is nearly unique per row: a shared first turn would tie unrelated prompts
    into one fold group.
    """
    name = rng.choice(NAMES)
    opener = f"Hi, I'm {name}, {rng.randint(16, 80)} years old, from {rng.choice(PLACES)}."
    answer_a = f"Nice to meet you, {name}! How can I help?"
    answer_b = answer_a if pair.response_a == pair.response_b else f"Hello {name}. What do you need?"
    if rng.random() < NULL_TURN / MULTI_TURN:
        answer_a = None  # the model errored on the first turn; Kaggle's file stores null
    return Pair(
        [opener, *pair.prompt],
        [answer_a, *pair.response_a],
        [answer_b, *pair.response_b],
        pair.label,
    )


def generate_pairs(n: int, rng: random.Random) -> list[Pair]:
    kinds = list(KIND_WEIGHTS)
    weights = list(KIND_WEIGHTS.values())
    pairs = []
    for _ in range(n):
        pair = _pair(rng, rng.choices(kinds, weights)[0])
        if rng.random() < MULTI_TURN:
            pair = _add_turn(rng, pair)
        if rng.random() < LABEL_NOISE:
            pair = Pair(pair.prompt, pair.response_a, pair.response_b, rng.choice(LABEL_COLUMNS))
        pairs.append(pair)
    return pairs


def _json_list(turns: list[str | None], rng: random.Random) -> str:
    return json.dumps(turns, ensure_ascii=rng.random() < ASCII_ESCAPED)


def _unique_ids(n: int, rng: random.Random) -> list[int]:
    return rng.sample(range(30_000, 4_300_000_000), n)


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)


def train_rows(n_train: int, rng: random.Random) -> list[list[object]]:
    """`n_train` rows: generated pairs plus, in their place, the defects the real file has."""
    n_duplicates, n_empty = min(3, n_train // 50), min(2, n_train // 50)
    n_pairs = n_train - n_duplicates - n_empty
    pairs = generate_pairs(n_pairs, rng)
    ids = _unique_ids(n_train, rng)
    rows = []
    for row_id, pair in zip(ids[:n_pairs], pairs, strict=True):
        model_a, model_b = rng.sample(MODELS, 2)
        one_hot = [int(pair.label == column) for column in LABEL_COLUMNS]
        rows.append(
            [
                row_id,
                model_a,
                model_b,
                _json_list(pair.prompt, rng),
                _json_list(pair.response_a, rng),
                _json_list(pair.response_b, rng),
                *one_hot,
            ]
        )
    # Exact repeats under a new id: preprocessing drops them and counts them.
    for row_id, source in zip(ids[n_pairs:], rng.sample(rows, n_duplicates), strict=False):
        rows.append([row_id, *source[1:]])
    # Rows whose response list is empty, as when a model returned nothing.
    for row_id in ids[n_pairs + n_duplicates :]:
        model_a, model_b = rng.sample(MODELS, 2)
        side = rng.choice([4, 5])
        row = [row_id, model_a, model_b, json.dumps(["Hello?"]), '["Hi!"]', '["Hi!"]', 0, 0, 1]
        row[side] = "[]"
        rows.append(row)
    rng.shuffle(rows)
    return rows


def test_rows(n_test: int, rng: random.Random) -> list[list[object]]:
    ids = _unique_ids(n_test, rng)
    return [
        [row_id, _json_list(p.prompt, rng), _json_list(p.response_a, rng), _json_list(p.response_b, rng)]
        for row_id, p in zip(ids, generate_pairs(n_test, rng), strict=True)
    ]


def write_sample(out_dir: str | Path, n_train: int, n_test: int, seed: int) -> dict[str, Path]:
    """Write train.csv, test.csv and sample_submission.csv into `out_dir`; return their paths."""
    if n_train < 1 or n_test < 1:
        raise ValueError("n_train and n_test must be at least 1")
    out = Path(out_dir)
    # Separate streams so the test file does not change when only n_train does.
    train = train_rows(n_train, random.Random(f"{seed}-train"))
    test = test_rows(n_test, random.Random(f"{seed}-test"))
    paths = {name: out / f"{name}.csv" for name in ("train", "test", "sample_submission")}
    _write_csv(paths["train"], TRAIN_HEADER, train)
    _write_csv(paths["test"], TEST_HEADER, test)
    third = 1 / 3
    _write_csv(paths["sample_submission"], SUBMISSION_HEADER, [[r[0], third, third, third] for r in test])
    return paths
