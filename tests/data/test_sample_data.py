import json
from collections import Counter

import polars as pl
import pytest

from arenapref import LABEL_COLUMNS
from arenapref.data.preprocess import preprocess_test, preprocess_train
from arenapref.data.sample_data import TEST_HEADER, TRAIN_HEADER, write_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("sample"), n_train=500, n_test=60, seed=3)


def read(path):
    return pl.read_csv(path, infer_schema_length=0)


def test_files_follow_the_kaggle_schema(sample):
    train, test, submission = read(sample["train"]), read(sample["test"]), read(sample["sample_submission"])
    assert train.columns == TRAIN_HEADER
    assert test.columns == TEST_HEADER
    assert submission.columns == ["id", *LABEL_COLUMNS]
    assert train.height == 500 and test.height == 60
    assert submission["id"].to_list() == test["id"].to_list()
    assert train["id"].n_unique() == train.height
    labels = train.select(LABEL_COLUMNS).cast(pl.Int64)
    assert (labels.sum_horizontal() == 1).all()
    for column in ("prompt", "response_a", "response_b"):
        for value in train[column]:
            assert isinstance(json.loads(value), list)


def test_labels_are_balanced_with_about_thirty_percent_ties(sample):
    train = read(sample["train"]).select(LABEL_COLUMNS).cast(pl.Int64)
    shares = {c: train[c].mean() for c in LABEL_COLUMNS}
    assert 0.22 <= shares["winner_tie"] <= 0.38
    assert abs(shares["winner_model_a"] - shares["winner_model_b"]) < 0.1


def test_sample_has_the_awkward_parts_of_the_real_data(sample):
    text = sample["train"].read_text(encoding="utf-8")
    train = read(sample["train"])
    prompts = [json.loads(p) for p in train["prompt"]]
    responses = [json.loads(r) for r in train["response_a"]]
    assert sum(len(p) > 1 for p in prompts) > 20  # multi-turn
    assert any(None in r for r in responses)  # null turns
    assert "\\u" in text and "é" in text  # escaped and raw unicode
    assert '\\"' in text and "**" in text  # quotes inside JSON, markdown
    assert Counter(tuple(p) for p in prompts).most_common(1)[0][1] > 1  # repeated prompts


def test_preprocessing_counts_the_planted_defects(sample):
    table, report = preprocess_train(sample["train"], n_folds=5, seed=0)
    assert report.rows_in == 500
    train = read(sample["train"])
    keys = [  # same parsed texts and label; JSON escaping may differ between repeats
        (*(json.dumps(json.loads(text)) for text in row[:3]), *row[3:])
        for row in train.select(pl.exclude("id", "model_a", "model_b")).rows()
    ]
    repeats = len(keys) - len(set(keys))  # the three planted ones and any the generator made
    assert repeats >= 3
    assert report.dropped["duplicate"] == repeats
    assert report.dropped["empty_response_a"] + report.dropped["empty_response_b"] == 2
    assert report.rows_kept == 500 - repeats - 2 == table.height
    test, test_report = preprocess_test(sample["test"])
    assert test.height == 60 and not test_report.dropped


def test_identical_answers_are_ties_apart_from_noise(sample):
    train = read(sample["train"])
    same = train.filter(pl.col("response_a") == pl.col("response_b"))
    assert same.height > 40
    assert same["winner_tie"].cast(pl.Int64).mean() > 0.85


def test_folds_stay_balanced_despite_shared_prompts(sample):
    table, _ = preprocess_train(sample["train"], n_folds=5, seed=0)
    sizes = table["fold"].value_counts()["count"].to_list()
    assert min(sizes) > 0.1 * table.height


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    first = write_sample(tmp_path / "a", 50, 10, seed=1)
    second = write_sample(tmp_path / "b", 50, 10, seed=1)
    third = write_sample(tmp_path / "c", 50, 10, seed=2)
    for name in first:
        assert first[name].read_bytes() == second[name].read_bytes()
    assert first["train"].read_bytes() != third["train"].read_bytes()
