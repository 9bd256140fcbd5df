"""What a fold trains on: its rows, the extra rows that may train it, swapped copies (in pairs
under full swap), and a teacher's probabilities only when the loss uses them."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from conftest import write_csv

from arenapref.config import RunConfig
from arenapref.data.extra import join_extra, read_extra_file
from arenapref.data.parsing import NO_LABEL, SUBMISSION_COLUMNS, TEST_COLUMNS, TRAIN_COLUMNS
from arenapref.data.preprocess import preprocess_train
from arenapref.data.soft_labels import attach_soft_labels, read_soft_labels
from arenapref.io import dir_sha256
from arenapref.model.batching import paired_chunks
from arenapref.train.job import teacher_probabilities, train_fold, training_rows
from arenapref.train.training import fold_steps, training_chunks


def main_and_extra(tmp_path, soft_rows=None):
    rows = [
        [i, "m1", "m2", json.dumps([f"main question number {i}"]), '["a"]', '["bb"]', *((1, 0, 0), (0, 1, 0))[i % 2]]
        for i in range(1, 25)
    ]
    main, _ = preprocess_train(write_csv(tmp_path / "train.csv", list(TRAIN_COLUMNS), rows), n_folds=3, seed=0)
    extra_rows = [[101, "m1", "m2", '["main question number 1"]', '["x"]', '["y"]', 0, 0, 1]]
    extra_rows += [[102 + i, "m1", "m2", json.dumps([f"extra only {i}"]), '["x"]', '["yy"]', 1, 0, 0] for i in range(3)]
    labelled = read_extra_file(write_csv(tmp_path / "extra.csv", list(TRAIN_COLUMNS), extra_rows))
    pairs = read_extra_file(write_csv(tmp_path / "pairs.csv", list(TEST_COLUMNS), [[900, '["p"]', '["q"]', '["r"]']]))
    soft = None
    if soft_rows is not None:
        soft = read_soft_labels(write_csv(tmp_path / "soft.csv", list(SUBMISSION_COLUMNS), soft_rows))
        main = attach_soft_labels(main, soft)
    extra, _ = join_extra(main, [labelled, pairs], soft=soft)
    return main, extra


def test_a_fold_takes_the_extra_rows_its_validation_does_not_share_a_prompt_with(tmp_path):
    main, extra = main_and_extra(tmp_path, soft_rows=[[900, 0.2, 0.3, 0.5]])
    fold_of_1 = main.filter(pl.col("id") == 1)["fold"].item()
    for fold in range(3):
        rows = training_rows(main, fold, False, extra)
        ids = set(rows["id"].to_list())
        assert ids & set(main["id"].to_list()) == set(main.filter(pl.col("fold") != fold)["id"].to_list())
        assert (101 in ids) is (fold != fold_of_1) and {102, 103, 104, 900} <= ids
    assert training_rows(main, None, False, extra).height == main.height + extra.height


def test_swapped_copies_follow_the_rows_in_order_and_pairs_share_batches(tmp_path):
    main, extra = main_and_extra(tmp_path, soft_rows=[[900, 0.2, 0.3, 0.5]])
    rows = training_rows(main, 0, "pair", extra)
    n = rows.height // 2
    assert rows["id"][:n].to_list() == rows["id"][n:].to_list()
    assert rows["response_a"][:n].to_list() == rows["response_b"][n:].to_list()
    settings = RunConfig.from_config({"train": {"swap_augmentation": "pair", "batch_size": 4, "epochs": 2}}).train
    lengths = [len(a[0]) + i for i, a in enumerate(rows["response_a"].to_list())]
    chunks = training_chunks(lengths, settings)
    seen = []
    for chunk in chunks:
        for batch in chunk:
            sources = sorted(i for i in batch.tolist() if i < n)
            assert sorted(i - n for i in batch.tolist() if i >= n) == sources  # every row with its own copy
            seen += sources
    assert sorted(seen) == sorted(list(range(n)) * 2)  # each row once an epoch
    assert fold_steps(rows.height, settings) == sum(math.ceil(len(c) / settings.grad_accum) for c in chunks)
    with pytest.raises(ValueError, match="even batch size"):
        paired_chunks([1] * 8, 3, 8, 1, 0)


def test_teacher_probabilities_only_when_the_loss_uses_them(tmp_path):
    main, extra = main_and_extra(tmp_path, soft_rows=[[900, 0.2, 0.3, 0.5], [2, 0.6, 0.3, 0.1]])
    fold = (main.filter(pl.col("id") == 2)["fold"].item() + 1) % 3  # a fold that trains on row 2
    winners_only = RunConfig.from_config({})
    labelled = training_rows(main, fold, False)
    assert teacher_probabilities(labelled, winners_only) is None  # w = 0, every row has a winner
    distilled = RunConfig.from_config({"train": {"distill_weight": 0.5}})
    probs = np.asarray(teacher_probabilities(labelled, distilled))
    ids = labelled["id"].to_list()
    assert probs[ids.index(2)] == pytest.approx([0.6, 0.3, 0.1])
    others = [k for k, i in enumerate(ids) if i != 2]
    assert np.isnan(probs[others]).all()  # rows the teacher does not cover train on their winner alone
    # A pair without a winner needs its teacher whatever w is.
    with_pairs = training_rows(main, fold, False, extra)
    assert NO_LABEL in with_pairs["label"].to_list()
    probs = teacher_probabilities(with_pairs, winners_only)
    assert probs is not None and probs[with_pairs["id"].to_list().index(900)] == pytest.approx([0.2, 0.3, 0.5])
    sft = RunConfig.from_config({"model": {"head": "sft"}})
    with pytest.raises(Exception, match="train the classifier head"):
        teacher_probabilities(with_pairs, sft)


def test_no_extra_rows_and_no_teacher_train_the_same_adapter_bit_for_bit(tmp_path, tiny_checkpoint):
    main, _ = main_and_extra(tmp_path)
    data = tmp_path / "train.parquet"
    main.write_parquet(data)
    empty_extra = tmp_path / "extra.parquet"
    join_extra(main, [])[0].write_parquet(empty_extra)
    run = RunConfig.from_config(
        {"model": {"max_length": 64}, "train": {"epochs": 1, "batch_size": 4, "grad_accum": 1, "chunk_size": 8}}
    )
    sha = {}
    for name, extra in (("without", None), ("empty", empty_extra)):
        out = tmp_path / name
        train_fold(data, 0, tiny_checkpoint, run, out / "adapter", out / "log.json", out / "resume", extra)
        sha[name] = dir_sha256(out / "adapter")
    assert sha["without"] == sha["empty"]
