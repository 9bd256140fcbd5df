"""The modelling switches: swap augmentation and TTA, label smoothing, the SFT head, post-processing."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from arenapref import LABEL_COLUMNS
from arenapref.config import RunConfig
from arenapref.data.augment import flip_probabilities, swap_responses
from arenapref.evaluate.ensemble import Postprocessing, cross_fitted, fit_blend_weight, score_options
from arenapref.evaluate.metrics import log_loss
from arenapref.model.heads import IGNORE_INDEX, ClassifierHead, SftHead, smoothed_nll
from arenapref.train.job import training_rows


def _table(n: int = 12) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(n)),
            "prompt": [[f"question {i}"] for i in range(n)],
            "response_a": [[f"answer a{i}"] for i in range(n)],
            "response_b": [[f"answer b{i} is longer"] for i in range(n)],
            "response_a_chars": [9] * n,
            "response_b_chars": [19] * n,
            "label": [i % 3 for i in range(n)],
            "fold": [i % 3 for i in range(n)],
        }
    )


def test_swap_exchanges_the_responses_and_flips_the_label():
    table = _table()
    swapped = swap_responses(table)
    assert swapped.columns == table.columns
    assert swapped["response_a"].to_list() == table["response_b"].to_list()
    assert swapped["response_b_chars"].to_list() == table["response_a_chars"].to_list()
    assert swapped["label"].to_list() == [{0: 1, 1: 0, 2: 2}[x] for x in table["label"].to_list()]
    assert swapped["id"].to_list() == table["id"].to_list() and swapped["fold"].to_list() == table["fold"].to_list()
    assert swap_responses(swapped).equals(table)


def test_flipped_probabilities_put_a_and_b_back():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    assert np.allclose(flip_probabilities(probs), [[0.2, 0.7, 0.1], [0.3, 0.1, 0.6]])
    assert np.allclose(flip_probabilities(flip_probabilities(probs)), probs)


def test_swap_augmentation_stays_inside_the_training_folds():
    table = _table(30)
    for fold in range(3):
        rows = training_rows(table, fold, swap_augmentation=True)
        plain = training_rows(table, fold, swap_augmentation=False)
        assert rows.height == 2 * plain.height
        assert fold not in rows["fold"].to_list()  # no copy of a validation row
        validation_texts = set(map(tuple, table.filter(pl.col("fold") == fold)["response_a"].to_list()))
        trained_texts = set(map(tuple, rows["response_a"].to_list() + rows["response_b"].to_list()))
        assert not validation_texts & trained_texts
        # Every training row appears once as it is and once swapped, with the label flipped.
        pairs = rows.group_by("id").agg(pl.col("label"))
        assert all(sorted(labels) in ([0, 1], [2, 2]) for labels in pairs["label"].to_list())
        assert pairs.height == plain.height


def test_label_smoothing_matches_torch_cross_entropy():
    logits = torch.randn(6, 3)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    log_probs = torch.log_softmax(logits, dim=-1)
    true = log_probs.gather(1, labels[:, None]).squeeze(1)
    for smoothing in (0.0, 0.1, 0.3):
        expected = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=smoothing)
        assert torch.allclose(smoothed_nll(true, log_probs, smoothing), expected, atol=1e-6)


def test_classifier_batch_pads_and_carries_labels():
    batch = ClassifierHead().collate([[5, 6, 7], [8]], [2, 0], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [2, 0]


@pytest.fixture(scope="module")
def sft_model(tiny_checkpoint):
    from arenapref.model.modeling import attach_new_adapter
    from arenapref.model.runtime import Runtime

    run = RunConfig.from_config({"model": {"head": "sft", "max_length": 256}})
    rt = Runtime.create(run, tiny_checkpoint)
    torch.manual_seed(0)
    return rt, attach_new_adapter(rt.base_model(run, tiny_checkpoint), run.model)


def test_sft_examples_learn_only_the_label_token(sft_model):
    rt, _ = sft_model
    head = rt.head
    assert isinstance(head, SftHead) and len(set(head.label_ids)) == 3
    batch = head.collate([[1, 20, 21, 22], [1, 30]], [1, 2], rt.tokenizer.pad_token_id)
    assert batch["input_ids"][0].tolist() == [1, 20, 21, 22, head.label_ids[1]]
    assert batch["labels"].tolist() == [
        [IGNORE_INDEX] * 4 + [head.label_ids[1]],
        [IGNORE_INDEX, IGNORE_INDEX, head.label_ids[2], IGNORE_INDEX, IGNORE_INDEX],
    ]


def test_sft_loss_and_scores_agree_with_the_language_model(sft_model):
    """The loss is the causal-LM loss on the completion; the class logits are the label tokens'
    logits at the last prompt token, whatever the padding."""
    rt, model = sft_model
    head = rt.head
    model.eval()
    prompts = [[1, 20, 21, 22, 23], [1, 30, 31]]
    batch = head.collate(prompts, [0, 2], rt.tokenizer.pad_token_id)
    with torch.no_grad():
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        assert torch.allclose(head.loss(model, batch, 0.0), full.loss, atol=1e-5)
        ids = torch.tensor([[1, 20, 21, 22, 23], [1, 30, 31, 0, 0]])
        mask = (torch.arange(5) < torch.tensor([[5], [3]])).long()
        scores = head.class_logits(model, ids, mask)
        for row, last in ((0, 4), (1, 2)):
            alone = model(input_ids=ids[row : row + 1, : last + 1]).logits[0, last, list(head.label_ids)]
            assert torch.allclose(scores[row], alone, atol=1e-4)


def test_sft_builder_leaves_room_for_the_label_token(sft_model):
    rt, _ = sft_model
    builder = rt.builder
    long_turn = ["one two three four five six seven eight nine ten " * 60]
    ids = rt.encode(pl.DataFrame({"prompt": [long_turn], "response_a": [long_turn], "response_b": [long_turn]}))[0]
    assert len(ids) + 1 <= builder.max_length
    assert tuple(ids[-len(builder.suffix) :]) == builder.suffix and builder.suffix  # ends with the question


def test_sft_needs_single_token_label_words():
    from arenapref.errors import CheckpointError
    from arenapref.model.heads import label_token_ids

    class Splitting:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) for c in text]}

    with pytest.raises(CheckpointError, match="one token"):
        label_token_ids(Splitting())


def _probs(rng, n, sharpness):
    logits = rng.normal(size=(n, 3)) * sharpness
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_blend_weight_follows_the_better_source():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    informative = np.full((600, 3), 0.15)
    informative[np.arange(600), labels] = 0.7
    noise = _probs(rng, 600, 1.0)
    assert fit_blend_weight(informative, noise, labels) > 0.9
    assert fit_blend_weight(noise, informative, labels) < 0.1


def test_postprocessing_applies_blend_then_temperature():
    rng = np.random.default_rng(1)
    model, features = _probs(rng, 10, 2.0), _probs(rng, 10, 1.0)
    plain = Postprocessing()
    assert np.allclose(plain.apply(model), model)
    blended = Postprocessing(features_blend_weight=0.25).apply(model, features)
    assert np.allclose(blended, 0.25 * model + 0.75 * features)
    scaled = Postprocessing(temperature=2.0).apply(model)
    expected = np.sqrt(model) / np.sqrt(model).sum(axis=1, keepdims=True)
    assert np.allclose(scaled, expected)
    with pytest.raises(ValueError, match="features"):
        Postprocessing(features_blend_weight=0.5).apply(model)


def test_options_are_scored_cross_fitted():
    rng = np.random.default_rng(2)
    n = 900
    labels = rng.integers(0, 3, n)
    folds = np.arange(n) % 3
    # An overconfident model: temperature scaling must help, measured on rows it was not fitted on.
    overconfident = np.full((n, 3), 0.005)
    overconfident[np.arange(n), np.where(rng.random(n) < 0.6, labels, (labels + 1) % 3)] = 0.99
    overconfident /= overconfident.sum(axis=1, keepdims=True)
    features = np.tile([1 / 3, 1 / 3, 1 / 3], (n, 1))
    scores = score_options(overconfident, features, labels, folds)
    assert set(scores) == {"none", "temperature", "features_blend", "features_blend+temperature"}
    assert scores["temperature"] < scores["none"] - 0.5
    manual = cross_fitted(overconfident, features, labels, folds, False, True)
    assert scores["temperature"] == pytest.approx(log_loss(labels, manual))
    held_out = folds == 0
    refit = Postprocessing.fit(overconfident[~held_out], features[~held_out], labels[~held_out], False, True)
    assert np.allclose(manual[held_out], refit.apply(overconfident[held_out]))


def test_features_model_as_numbers_predicts_like_sklearn():
    from arenapref.evaluate.features import _fit, _predict, fit_features_model, predict_features_model, text_features

    table = _table(60).with_columns(response_a=pl.Series([[("line\n" * (i % 7)) + "x" * (i * 3)] for i in range(60)]))
    params = fit_features_model(table, seed=0)
    fitted = _fit(text_features(table), table["label"].to_numpy(), 0)
    assert np.allclose(predict_features_model(params, table), _predict(fitted, text_features(table)), atol=1e-8)
    import json

    assert json.loads(json.dumps(params)) == params  # plain numbers: an export carries it as JSON


def test_label_columns_order_matches_label_words():
    from arenapref.model.heads import LABEL_WORDS

    assert LABEL_COLUMNS == ("winner_model_a", "winner_model_b", "winner_tie")
    assert LABEL_WORDS == (" A", " B", " tie")
