import itertools

import pytest

from arenapref.data.text import InputBuilder, allocate_budget, encode_conversations, fit_turns


@pytest.mark.parametrize("lengths", list(itertools.product([0, 5, 40, 300], repeat=3)))
def test_budget_is_respected_and_each_segment_keeps_its_share(lengths):
    budget, shares = 100, (0.2, 0.4, 0.4)
    alloc = allocate_budget(lengths, shares, budget)
    assert sum(alloc) <= budget
    for length, share, given in zip(lengths, shares, alloc, strict=True):
        assert given <= length
        assert given >= min(length, int(budget * share))
    # Nothing is wasted when some segment still wants more (up to rounding).
    if any(g < n for g, n in zip(alloc, lengths, strict=True)):
        assert sum(alloc) >= budget - len(lengths)


def test_fit_turns_keeps_the_last_turns():
    turns = [[1] * 10, [2] * 10, [3] * 10]
    assert fit_turns(turns, [0], 100) == [1] * 10 + [0] + [2] * 10 + [0] + [3] * 10
    assert fit_turns(turns, [0], 21) == [2] * 10 + [0] + [3] * 10
    assert fit_turns(turns, [0], 20) == [2] * 9 + [0] + [3] * 10
    assert fit_turns(turns, [0], 5) == [3] * 5
    assert fit_turns([], [0], 5) == []


def test_response_b_survives_long_prompt_and_response_a(tiny_tokenizer):
    builder = InputBuilder.from_tokenizer(tiny_tokenizer, max_length=96)
    long_text = "explain why the sky is blue " * 200
    rows = {"prompt": [[long_text]], "response_a": [[long_text]], "response_b": [["paris is the answer"]]}
    ids = encode_conversations(tiny_tokenizer, rows, builder)[0]
    assert len(ids) <= 96
    text = tiny_tokenizer.decode(ids)
    assert text.rstrip().endswith("<response_b>: paris is the answer")
    assert "<response_a>:" in text and "<prompt>:" in text


def test_markers_in_text_do_not_become_special_tokens(tiny_tokenizer):
    builder = InputBuilder.from_tokenizer(tiny_tokenizer, max_length=128)
    rows = {"prompt": [["hi </s><pad>"]], "response_a": [["a"]], "response_b": [["b"]]}
    ids = encode_conversations(tiny_tokenizer, rows, builder)[0]
    assert tiny_tokenizer.pad_token_id not in ids
    assert tiny_tokenizer.eos_token_id not in ids


def test_multi_turn_keeps_last_turn_when_cut(tiny_tokenizer):
    builder = InputBuilder.from_tokenizer(tiny_tokenizer, max_length=64)
    first = "one two three four five " * 40
    rows = {
        "prompt": [[first, "what is the capital of france"]],
        "response_a": [["x", "paris"]],
        "response_b": [["y", "berlin"]],
    }
    text = tiny_tokenizer.decode(encode_conversations(tiny_tokenizer, rows, builder)[0])
    assert "what is the capital of france" in text
    assert "paris" in text and "berlin" in text


def test_untruncated_length_counts_what_max_length_cut(tiny_tokenizer):
    from arenapref.data.text import encode_with_lengths

    builder = InputBuilder.from_tokenizer(tiny_tokenizer, max_length=96)
    long_text = "explain why the sky is blue " * 50
    rows = {"prompt": [["hi"], [long_text]], "response_a": [["a"], [long_text]], "response_b": [["b"], ["c"]]}
    (short, cut), (short_full, cut_full) = encode_with_lengths(tiny_tokenizer, rows, builder)
    assert short_full == len(short)  # nothing cut: the same length
    assert len(cut) <= 96 < cut_full
    long_alone = len(tiny_tokenizer(long_text, add_special_tokens=False)["input_ids"])
    assert cut_full >= 2 * long_alone
