import numpy as np

from arenapref.folds import assign_folds, prompt_groups
from arenapref.preprocess import preprocess_train


def assert_no_prompt_on_both_sides(prompts, folds):
    for fold in set(folds):
        inside = {t.strip() for p, f in zip(prompts, folds, strict=True) if f == fold for t in p if t.strip()}
        outside = {t.strip() for p, f in zip(prompts, folds, strict=True) if f != fold for t in p if t.strip()}
        assert not inside & outside, f"fold {fold} shares prompt turns with its training side"


def test_rows_sharing_any_prompt_turn_are_grouped():
    prompts = [["hello", "what is 2+2?"], ["what is 2+2?"], ["unrelated"], ["hello"], ["other"]]
    groups = prompt_groups(prompts)
    assert groups[0] == groups[1] == groups[3]
    assert len({groups[0], groups[2], groups[4]}) == 3


def test_empty_turns_do_not_link_rows():
    groups = prompt_groups([["", "a"], ["", "b"]])
    assert groups[0] != groups[1]


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
    assert_no_prompt_on_both_sides(table["prompt"].to_list(), table["fold"].to_list())
    assert table["fold"].value_counts()["count"].min() > 150
