import numpy as np

from arenapref.data.folds import MAX_TURN_ROWS, MIN_TURN_CHARS, assign_folds, left_out_turns, prompt_groups
from arenapref.data.preprocess import preprocess_train


def assert_no_prompt_on_both_sides(prompts, folds, generic=frozenset()):
    """No prompt turn on both sides of a fold, except the `generic` ones the grouping leaves out."""
    for fold in set(folds):
        inside = {t.strip() for p, f in zip(prompts, folds, strict=True) if f == fold for t in p if t.strip()}
        outside = {t.strip() for p, f in zip(prompts, folds, strict=True) if f != fold for t in p if t.strip()}
        assert not (inside & outside) - generic, f"fold {fold} shares prompt turns with its training side"


def test_rows_sharing_any_prompt_turn_are_grouped():
    prompts = [["hello", "what is 2+2?"], ["what is 2+2?"], ["unrelated"], ["hello"], ["other"]]
    groups = prompt_groups(prompts)
    assert groups[0] == groups[1] == groups[3]
    assert len({groups[0], groups[2], groups[4]}) == 3


def test_empty_turns_do_not_link_rows():
    groups = prompt_groups([["", "a"], ["", "b"]])
    assert groups[0] != groups[1]


def test_short_or_common_turns_do_not_link_rows_but_whole_prompts_always_do():
    question = "How do I sort a list in Python?"
    prompts = [
        ["hello", "What is a monad?"],  # 0: linked to 1 only through the short "hello"
        ["hello", "Explain CRDTs."],  # 1
        ["tell me a joke", "Why is the sky blue?"],  # 2-4: "tell me a joke" is in 3 rows
        ["tell me a joke", "What is entropy?"],
        ["tell me a joke"],
        [question],  # 5: a distinctive question, asked again inside a conversation (6)
        [question, "and in Rust?"],
        ["hi"],  # 7, 8: a short whole prompt asked twice
        ["hi"],
        ["tell me a joke"],  # 9: the same whole prompt as row 4
    ]
    groups = prompt_groups(prompts, max_turn_rows=2, min_turn_chars=10)
    assert groups[0] != groups[1]
    assert len({groups[2], groups[3], groups[4]}) == 3
    assert groups[5] == groups[6] and groups[7] == groups[8] and groups[4] == groups[9]
    # A group is named by its first row.
    assert all(groups[i] == min(j for j, g in enumerate(groups) if g == groups[i]) for i in range(len(groups)))
    # Without the limits every shared turn links, as before the rule.
    loose = prompt_groups(prompts)
    assert loose[0] == loose[1] and loose[2] == loose[3] == loose[4] == loose[9]
    left_out = left_out_turns(prompts, max_turn_rows=2, min_turn_chars=10).rows(named=True)
    assert left_out == [
        {"turn": "tell me a joke", "prompts": 3, "rows": 4, "reason": "common"},
        {"turn": "hello", "prompts": 2, "rows": 2, "reason": "short"},
    ]


def test_default_turn_limits_are_the_schemas():
    import yaml

    from arenapref.config import SCHEMA_PATH

    folds = yaml.safe_load(SCHEMA_PATH.read_text())["properties"]["folds"]["properties"]
    assert (MAX_TURN_ROWS, MIN_TURN_CHARS) == (folds["max_turn_rows"]["default"], folds["min_turn_chars"]["default"])


def test_folds_keep_groups_together_and_balance_labels():
    rng = np.random.default_rng(0)
    prompts = [[f"question {rng.integers(0, 150)}"] for _ in range(600)]
    labels = rng.integers(0, 3, size=600).tolist()
    folds = assign_folds(labels, prompt_groups(prompts), n_folds=5, seed=1)
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]
    assert_no_prompt_on_both_sides(prompts, folds.tolist())
    for fold in range(5):
        share = np.bincount(np.asarray(labels)[folds == fold], minlength=3) / (folds == fold).sum()
        assert np.all(np.abs(share - np.bincount(labels) / 600) < 0.1)


def test_real_rows_fold_without_prompt_leaks(real_data):
    table, report = preprocess_train(real_data / "train.csv", n_folds=5, seed=42)
    assert report.rows_in == 1000
    assert report.rows_kept + sum(report.dropped.values()) == 1000
    generic = set(left_out_turns(table["prompt"], MAX_TURN_ROWS, MIN_TURN_CHARS)["turn"])
    assert generic <= {"hello", "continue", "hey"}  # the real rows' short repeated turns
    assert_no_prompt_on_both_sides(table["prompt"].to_list(), table["fold"].to_list(), generic)
    assert table["fold"].value_counts()["count"].min() > 150
