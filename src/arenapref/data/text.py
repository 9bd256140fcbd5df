"""Turning a conversation into model input ids under a token budget.

The original approach joined prompt, response A and response B into one string and cut it on
the right, so a long prompt or response A pushed response B out of the input entirely. Here each
segment is tokenized on its own and the budget is shared: every segment is guaranteed a share
(or its full length, if shorter) and unused share flows to the segments that need more. Inside
a segment the last turns are kept, because the final turn is what was judged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SEGMENTS = ("prompt", "response_a", "response_b")
HEADERS = {"prompt": "<prompt>: ", "response_a": "\n\n<response_a>: ", "response_b": "\n\n<response_b>: "}
TURN_SEPARATOR = "\n"


def allocate_budget(lengths: Sequence[int], shares: Sequence[float], budget: int) -> list[int]:
    """Split `budget` tokens between segments of the given lengths.

    Each segment gets at least min(length, floor(budget * share / sum(shares))); segments that
    need less than their share give the rest to the others (water filling).
    """
    if budget < 0:
        raise ValueError("budget must be non-negative")
    alloc = [0] * len(lengths)
    active = [i for i, n in enumerate(lengths) if n > 0]
    remaining = budget
    while active and remaining > 0:
        total_share = sum(shares[i] for i in active)
        fair = {i: remaining * shares[i] / total_share for i in active}
        satisfied = [i for i in active if lengths[i] - alloc[i] <= fair[i]]
        if not satisfied:
            for i in active:
                alloc[i] += int(fair[i] + 1e-9)  # shares like 0.2 are not exact in binary
            break
        for i in satisfied:
            remaining -= lengths[i] - alloc[i]
            alloc[i] = lengths[i]
            active.remove(i)
    return alloc


def fit_turns(turns: Sequence[Sequence[int]], separator: Sequence[int], budget: int) -> list[int]:
    """Keep the last turns that fit in `budget` tokens; the earliest kept turn may lose its tail."""
    kept: list[list[int]] = []
    remaining = budget
    for turn in reversed(turns):
        cost = len(turn) + (len(separator) if kept else 0)
        if cost <= remaining:
            kept.append(list(turn))
            remaining -= cost
            continue
        room = remaining - (len(separator) if kept else 0)
        if room > 0:
            kept.append(list(turn[:room]))
        break
    ids: list[int] = []
    for position, turn in enumerate(reversed(kept)):
        if position:
            ids.extend(separator)
        ids.extend(turn)
    return ids


def segment_length(turns: Sequence[Sequence[int]], separator: Sequence[int]) -> int:
    return sum(len(t) for t in turns) + len(separator) * max(len(turns) - 1, 0)


@dataclass(frozen=True)
class InputBuilder:
    """Token ids of the fixed pieces, computed once per tokenizer."""

    prefix: tuple[int, ...]
    headers: dict[str, tuple[int, ...]]
    separator: tuple[int, ...]
    max_length: int
    shares: tuple[float, float, float]
    suffix: tuple[int, ...] = ()
    reserved: int = 0  # tokens a head appends after the input (the sft head's label token)

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer,
        max_length: int,
        shares=(0.2, 0.4, 0.4),
        instruction: str = "",
        question: str = "",
        reserved: int = 0,
    ) -> InputBuilder:
        """`instruction` goes before the conversation and `question` after it (the sft head's prompt)."""

        def encode(text: str) -> tuple[int, ...]:
            return tuple(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else ()

        prefix = (tokenizer.bos_token_id,) if tokenizer.bos_token_id is not None else ()
        headers = {name: encode(text) for name, text in HEADERS.items()}
        builder = cls(
            prefix + encode(instruction),
            headers,
            encode(TURN_SEPARATOR),
            max_length,
            tuple(shares),
            encode(question),
            reserved,
        )
        if builder.text_budget < 3 * 8:
            raise ValueError(
                f"max_length={max_length} leaves {builder.text_budget} tokens for the conversation after "
                f"the markers and instructions ({max_length - builder.text_budget} tokens); raise it"
            )
        return builder

    @property
    def text_budget(self) -> int:
        fixed = len(self.prefix) + sum(len(h) for h in self.headers.values()) + len(self.suffix) + self.reserved
        return self.max_length - fixed

    def untruncated_length(self, segments: dict[str, Sequence[Sequence[int]]]) -> int:
        """The input's length had max_length not cut it."""
        text = sum(segment_length(segments[name], self.separator) for name in SEGMENTS)
        return self.max_length - self.text_budget + text

    def build(self, segments: dict[str, Sequence[Sequence[int]]]) -> list[int]:
        """Input ids for one conversation: segments maps prompt/response_a/response_b to token ids per turn."""
        lengths = [segment_length(segments[name], self.separator) for name in SEGMENTS]
        budgets = allocate_budget(lengths, self.shares, self.text_budget)
        ids = list(self.prefix)
        for name, budget in zip(SEGMENTS, budgets, strict=True):
            ids.extend(self.headers[name])
            ids.extend(fit_turns(segments[name], self.separator, budget))
        ids.extend(self.suffix)
        return ids


def encode_conversations(tokenizer, rows: dict[str, Sequence[Sequence[str]]], builder: InputBuilder) -> list[list[int]]:
    """Each row's input ids (see encode_with_lengths)."""
    return encode_with_lengths(tokenizer, rows, builder)[0]


def encode_with_lengths(
    tokenizer, rows: dict[str, Sequence[Sequence[str]]], builder: InputBuilder
) -> tuple[list[list[int]], list[int]]:
    """Tokenize every turn of every row in one batched call, then assemble each row's input ids;
    also each row's length before truncation (for the token-length report).

    `split_special_tokens` keeps text such as "<|im_end|>" inside a response from becoming a
    control token.
    """
    flat: list[str] = []
    for name in SEGMENTS:
        for turns in rows[name]:
            flat.extend(turns)
    encoded = tokenizer(flat, add_special_tokens=False, split_special_tokens=True)["input_ids"] if flat else []
    cursor = 0
    per_segment: dict[str, list[list[list[int]]]] = {}
    for name in SEGMENTS:
        rows_ids = []
        for turns in rows[name]:
            rows_ids.append(encoded[cursor : cursor + len(turns)])
            cursor += len(turns)
        per_segment[name] = rows_ids
    n_rows = len(rows[SEGMENTS[0]])
    conversations = [{name: per_segment[name][i] for name in SEGMENTS} for i in range(n_rows)]
    return [builder.build(c) for c in conversations], [builder.untruncated_length(c) for c in conversations]
