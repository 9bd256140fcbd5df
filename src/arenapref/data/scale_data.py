"""Training rows at the competition's scale (57,477 by default) with the real data's shape, to
check the prompt groups and folds where the sample's few hundred rows cannot.

The folds read only how prompts repeat and the labels, so that is what follows the real data:

- 13.1 % multi-turn rows, and turns per multi-turn conversation, as in the first 1,000 real
  rows (86.9 % single-turn in the full data);
- short generic turns ("hello", "test", "continue", "?") drawn with a Zipf skew over a long
  vocabulary, as often as in those 1,000 rows: about 2 % of single-turn prompts, 6 % of
  multi-turn openers and 5.5 % of later turns. At 57,477 rows the top ones recur hundreds of
  times, and conversations that open with a greeting and go on with "continue" link them all;
- whole conversations asked again in other rows (new answers, new label): 51,734 distinct
  prompts in the full 57,477 rows; the most repeated whole prompt is in about 101 rows;
- labels 34.9 / 34.2 / 30.9 % (model_a / model_b / tie), independent of the text.

Assumed, not measured: 2 % of multi-turn conversations build on a question that another row
asks on its own (a real link that grouping must keep). Texts are short and carry no signal:
the file is for the folds, not for training, and 57,477 rows take a few seconds.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

from arenapref import LABEL_COLUMNS
from arenapref.data.folds import MAX_TURN_ROWS, MIN_TURN_CHARS, prompt_groups
from arenapref.data.preprocess import preprocess_train, summarize
from arenapref.data.sample_data import MODELS, TRAIN_HEADER, _json_list, _unique_ids, _write_csv

COMPETITION_ROWS = 57_477
LABEL_SHARES = (0.349, 0.342, 0.309)  # model_a, model_b, tie
MULTI_TURN = 0.131
# Turns per multi-turn conversation: counts in the first 1,000 real rows.
MULTI_TURN_LENGTHS = {2: 82, 3: 25, 4: 11, 5: 5, 6: 3, 8: 2, 9: 1, 10: 1, 15: 1}
GENERIC_PROMPT = 0.02
GENERIC_OPENER = 0.06
GENERIC_FOLLOW_UP = 0.055
# Rows that repeat an earlier whole conversation: 51,734 distinct prompts in 57,477 rows, less
# the repeats that generic single-turn prompts ("hello" asked alone) make by themselves.
REPEATED_PROMPTS = 1 - 51_734 / 57_477 - (1 - MULTI_TURN) * GENERIC_PROMPT
# Zipf exponents, chosen so that at the competition's size the most repeated whole prompt is in
# about 100 rows and the top generic turns ("hello", "continue") are in a few hundred rows each.
REPEAT_SKEW = 0.65
GREETING_SKEW = 0.6
FOLLOW_UP_SKEW = 1.2
BUILDS_ON_SINGLE = 0.02

# Ordered from most to least common; case and punctuation variants extend the tail.
GREETINGS = [
    "hello", "hi", "test", "hey", "hi there", "who are you?", "how are you?", "tell me a joke",
    "what is your name?", "are you there?", "what can you do?", "good morning", "testing", "yo",
    "what model are you?", "hey there", "sup", "hello there", "greetings", "who made you?",
]  # fmt: skip
FOLLOW_UPS = [
    "continue", "?", "why?", "go on", "more", "keep going", "thanks", "ok", "are you sure?",
    "explain", "and?", "yes", "no", "shorter", "thank you", "try again", "more details",
    "examples?", "what do you mean?", "please continue", "in english please", "make it shorter",
    "give me an example", "wrong", "good", "again", "why", "what?", "elaborate", "next",
]  # fmt: skip

TOPICS = [
    "sorting algorithms", "the French Revolution", "black holes", "sourdough bread", "tax brackets",
    "Kubernetes pods", "the Krebs cycle", "impressionist painting", "supply and demand", "Rust lifetimes",
    "marathon training", "the Roman Senate", "quantum entanglement", "SQL joins", "climate feedback loops",
    "jazz harmony", "the stock market", "protein folding", "medieval castles", "neural networks",
    "coral reefs", "the Byzantine Empire", "regular expressions", "chess openings", "volcanoes",
]  # fmt: skip
ASKS = [
    "Explain {topic} to a {audience} in {k} sentences.",
    "Write a {k}-line poem about {topic} for a {audience}.",
    "What are {k} common misconceptions about {topic}, for a {audience}?",
    "Give a {audience} a {k}-step plan to learn {topic}.",
    "Compare {topic} and {other} in {k} bullet points for a {audience}.",
    "Write a short story ({k} words) where a {audience} discovers {topic}.",
]
FOLLOW_ON = [
    "Now explain {topic} to a {audience} in {k} words instead.",
    "Rewrite that for a {audience}, with {k} examples from {topic}.",
    "How does that relate to {topic}? Use {k} sentences a {audience} follows.",
]
AUDIENCES = ["child", "student", "engineer", "lawyer", "retiree", "chef", "nurse", "pilot", "farmer", "artist"]
# With k, two rows that repeat a conversation practically never repeat its answers too (which
# preprocessing would drop as a duplicate row).
ANSWERS = [
    "Sure, here is an answer about {topic} in {k} words.",
    "I'm sorry, I can't help with that ({k}).",
    "Here are {k} points on {topic}: first, second and third.",
    "Good question! {topic} is a broad subject; in short, it depends on {k} things.",
]


def _variants(phrases: list[str]) -> list[str]:
    """The phrases as typed, then capitalized, then with '!' or '?' added: the rarer forms of each
    phrase come after every phrase's common form, so the Zipf tail is made of them."""
    capitalized = [p.capitalize() for p in phrases]
    marked = [p.rstrip("?") + ("?" if p.endswith("?") else "!") for p in phrases]
    vocabulary: list[str] = []
    for form in (phrases, capitalized, marked):
        vocabulary += [p for p in form if p not in vocabulary]
    return vocabulary


GREETING_VOCABULARY = _variants(GREETINGS)
FOLLOW_UP_VOCABULARY = _variants(FOLLOW_UPS)


def _zipf_weights(n: int, skew: float) -> list[float]:
    return [1 / rank**skew for rank in range(1, n + 1)]


class _Conversations:
    """Prompts and answers drawn from one seeded stream."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.greeting_weights = _zipf_weights(len(GREETING_VOCABULARY), GREETING_SKEW)
        self.follow_up_weights = _zipf_weights(len(FOLLOW_UP_VOCABULARY), FOLLOW_UP_SKEW)
        self.lengths, self.length_weights = list(MULTI_TURN_LENGTHS), list(MULTI_TURN_LENGTHS.values())
        self.substantive: set[str] = set()

    def _unique(self, templates: list[str]) -> str:
        """A question or follow-up no other row has: the only repeats in the file are the planned
        ones (generic turns, repeated conversations, questions built on), as the folds must see."""
        rng = self.rng
        for _ in range(50):  # each template has 25 x 10 x 1,999 texts: a redraw is rare at 57,477 rows
            topic, other = rng.sample(TOPICS, 2)
            fields = {"topic": topic, "other": other, "audience": rng.choice(AUDIENCES), "k": rng.randint(2, 2000)}
            text = rng.choice(templates).format(**fields)
            if text not in self.substantive:
                break
        else:  # only at sizes far beyond the competition's: a serial number keeps the text new
            text = f"{text} (question {len(self.substantive)})"
        self.substantive.add(text)
        return text

    def question(self) -> str:
        return self._unique(ASKS)

    def greeting(self) -> str:
        return self.rng.choices(GREETING_VOCABULARY, self.greeting_weights)[0]

    def follow_up(self) -> str:
        if self.rng.random() < GENERIC_FOLLOW_UP:
            return self.rng.choices(FOLLOW_UP_VOCABULARY, self.follow_up_weights)[0]
        return self._unique(FOLLOW_ON)

    def prompt(self, earlier_single_questions: list[str]) -> list[str]:
        rng = self.rng
        if rng.random() >= MULTI_TURN:
            return [self.greeting() if rng.random() < GENERIC_PROMPT else self.question()]
        n_turns = rng.choices(self.lengths, self.length_weights)[0]
        if earlier_single_questions and rng.random() < BUILDS_ON_SINGLE:
            opener = rng.choice(earlier_single_questions)
        else:
            opener = self.greeting() if rng.random() < GENERIC_OPENER else self.question()
        return [opener, *(self.follow_up() for _ in range(n_turns - 1))]

    def answers(self, n_turns: int) -> list[str]:
        rng = self.rng
        return [rng.choice(ANSWERS).format(topic=rng.choice(TOPICS), k=rng.randint(2, 500)) for _ in range(n_turns)]


def _repeat_counts(n_repeats: int, n_sources: int, rng: random.Random) -> list[int]:
    """How many extra rows each of `n_sources` conversations gets, `n_repeats` in all, Zipf-skewed."""
    counts = [0] * n_sources
    for source in rng.choices(range(n_sources), _zipf_weights(n_sources, REPEAT_SKEW), k=n_repeats):
        counts[source] += 1
    return counts


def scale_rows(n_rows: int, rng: random.Random) -> list[list[object]]:
    """`n_rows` train rows in the Kaggle schema (see the module's docstring), shuffled."""
    n_repeats = round(n_rows * REPEATED_PROMPTS)
    n_originals = n_rows - n_repeats
    conversations = _Conversations(rng)
    prompts: list[list[str]] = []
    single_questions: list[str] = []
    for _ in range(n_originals):
        prompt = conversations.prompt(single_questions)
        if len(prompt) == 1 and prompt[0] not in GREETING_VOCABULARY:
            single_questions.append(prompt[0])
        prompts.append(prompt)
    # Which conversations are asked again is random; how often follows the rank they draw.
    sources = rng.sample(range(n_originals), min(n_originals, max(n_repeats, 1)))
    for source, count in zip(sources, _repeat_counts(n_repeats, len(sources), rng), strict=True):
        prompts += [prompts[source]] * count
    # Exact label counts (the remainder to ties), so the shares are the real ones at any seed.
    counts = [round(n_rows * share) for share in LABEL_SHARES[:-1]]
    counts.append(n_rows - sum(counts))
    labels = [column for column, count in zip(LABEL_COLUMNS, counts, strict=True) for _ in range(count)]
    rng.shuffle(labels)
    rows = []
    for row_id, prompt, label in zip(_unique_ids(n_rows, rng), prompts, labels, strict=True):
        model_a, model_b = rng.sample(MODELS, 2)
        rows.append(
            [
                row_id,
                model_a,
                model_b,
                _json_list(prompt, rng),
                _json_list(conversations.answers(len(prompt)), rng),
                _json_list(conversations.answers(len(prompt)), rng),
                *(int(label == column) for column in LABEL_COLUMNS),
            ]
        )
    rng.shuffle(rows)
    return rows


def write_scale_train(path: str | Path, n_rows: int = COMPETITION_ROWS, seed: int = 0) -> Path:
    """Write a competition-scale train.csv to `path`; the same seed and size give the same bytes."""
    if n_rows < 1:
        raise ValueError("n_rows must be at least 1")
    out = Path(path)
    _write_csv(out, TRAIN_HEADER, scale_rows(n_rows, random.Random(f"{seed}-scale")))
    return out


def fold_figures(
    train_csv: str | Path,
    n_folds: int = 5,
    seed: int = 42,
    max_turn_rows: int | None = MAX_TURN_ROWS,
    min_turn_chars: int = MIN_TURN_CHARS,
) -> dict:
    """Preprocess `train_csv` as the preprocess rule does (timed) and return the fold figures of
    docs/data-scale.md: the largest prompt group with the turn rule and without it (every shared
    turn groups), the spread of fold sizes and of label shares, and the turns left out."""
    start = time.perf_counter()
    table, _ = preprocess_train(train_csv, n_folds, seed, max_turn_rows, min_turn_chars)
    seconds = time.perf_counter() - start
    summary = summarize(table, max_turn_rows, min_turn_chars)
    largest_without_rule = max(Counter(prompt_groups(table["prompt"])).values())
    return {
        "rows": table.height,
        "preprocess_seconds": round(seconds, 2),
        "largest_group_without_rule": largest_without_rule,
        "largest_group_without_rule_share": round(largest_without_rule / table.height, 4),
        "largest_group": summary["largest_prompt_group"],
        "largest_group_share": summary["largest_prompt_group_share"],
        "fold_rows": summary["fold_rows"],
        "fold_rows_spread": summary["fold_rows_spread"],
        "fold_label_shares": summary["fold_label_shares"],
        "fold_label_share_spread": summary["fold_label_share_spread"],
        "grouping": summary["grouping"],
    }
