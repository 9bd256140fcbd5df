"""Rules for rows the model cannot judge (identical or empty responses) and the `auto` choice of
post-processing, on constructed cases."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from arenapref.data.row_kinds import EMPTY_A, EMPTY_B, IDENTICAL, rule_kinds, rule_rows
from arenapref.evaluate.ensemble import Postprocessing, option_settings, ranked_options, score_options
from arenapref.evaluate.metrics import log_loss
from arenapref.evaluate.row_rules import apply_rules, cross_fitted_rules, rule_distributions


def test_kinds():
    table = pl.DataFrame(
        {
            "response_a": [["same answer"], ["same answer "], [""], [], ["a"], None, ["a", "b"], ["x"]],
            "response_b": [["same answer"], ["same answer"], [" "], ["b"], [""], ["b"], ["a", "c"], None],
        }
    )
    kinds = rule_kinds(table).to_list()
    assert kinds == [IDENTICAL, IDENTICAL, IDENTICAL, EMPTY_A, EMPTY_B, EMPTY_A, None, EMPTY_B]


def test_distributions_are_smoothed_counts_and_empty_sides_pool():
    kinds = np.array([IDENTICAL] * 4 + [EMPTY_A] * 2 + [EMPTY_B] + [None], dtype=object)
    labels = np.array([2, 2, 2, 0, 1, 1, 0, 0])
    got = rule_distributions(kinds, labels)
    assert got[IDENTICAL] == pytest.approx([2 / 7, 1 / 7, 4 / 7])
    # Two "B wins" with A empty, and one "A wins" with B empty, which is "B wins" seen from the other side.
    assert got[EMPTY_A] == pytest.approx([1 / 6, 4 / 6, 1 / 6])
    assert got[EMPTY_B] == pytest.approx([4 / 6, 1 / 6, 1 / 6])


def test_cross_fitting_leaves_the_held_out_fold_out_and_counts_dropped_rows_always():
    counted = pl.DataFrame(
        {
            "rule": [IDENTICAL, IDENTICAL, IDENTICAL, EMPTY_A],
            "label": [2, 0, 2, 1],
            "fold": [0, 1, -1, -1],  # -1: dropped from the model's training, in no fold
        }
    )
    probs = np.full((3, 3), 1 / 3)
    kinds = np.array([IDENTICAL, IDENTICAL, None], dtype=object)
    folds = np.array([0, 1, 1])
    out = cross_fitted_rules(probs, kinds, folds, counted)
    # Fold 0's row: counted on fold 1 and the dropped rows -> labels 0, 2 -> (2, 1, 2) / 5.
    assert out[0] == pytest.approx([2 / 5, 1 / 5, 2 / 5])
    # Fold 1's row: fold 0 and the dropped rows -> labels 2, 2 -> (1, 1, 3) / 5.
    assert out[1] == pytest.approx([1 / 5, 1 / 5, 3 / 5])
    assert out[2] == pytest.approx([1 / 3] * 3)  # no rule: the model's


def test_rule_rows_take_kept_rows_with_folds_and_dropped_rows_with_none():
    kept = pl.DataFrame(
        {"id": [1, 2], "response_a": [["x"], ["y"]], "response_b": [["x"], ["z"]], "label": [2, 0], "fold": [1, 0]}
    )
    dropped = pl.DataFrame({"id": [3], "response_a": [[""]], "response_b": [["z"]], "label": [1]})
    rows = rule_rows(kept, dropped)
    assert rows.to_dicts() == [
        {"id": 1, "rule": IDENTICAL, "label": 2, "fold": 1},
        {"id": 3, "rule": EMPTY_A, "label": 1, "fold": -1},
    ]


def test_postprocessing_applies_rules_after_temperature_and_needs_the_kinds():
    post = Postprocessing(temperature=2.0, rules={IDENTICAL: [0.1, 0.1, 0.8]})
    probs = np.array([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1]])
    out = post.apply(probs, rule_kinds=np.array([IDENTICAL, None], dtype=object))
    assert out[0] == pytest.approx([0.1, 0.1, 0.8])
    assert out[1] == pytest.approx(Postprocessing(temperature=2.0).apply(probs)[1])
    with pytest.raises(ValueError, match="the rows' kinds were not given"):
        post.apply(probs)
    assert apply_rules(probs, np.array([None, None], dtype=object), post.rules) == pytest.approx(probs)


def constructed_case(seed: int = 0):
    """Rows whose model hedges on identical pairs (0.38 tie) although they are nearly all ties; the
    features model is informative elsewhere, not there."""
    rng = np.random.default_rng(seed)
    n = 300
    labels = rng.integers(0, 3, n)
    kinds = np.array([None] * n, dtype=object)
    kinds[:30] = IDENTICAL
    labels[:30] = 2
    labels[0] = 0  # one identical pair that is not a tie
    # The model's favourite is right half the time: no temperature can make it sure.
    favourite = np.where(rng.random(n) < 0.5, labels, rng.integers(0, 3, n))
    model = np.full((n, 3), 0.31)
    model[np.arange(n), favourite] = 0.38
    model[:30] = [0.31, 0.31, 0.38]
    model /= model.sum(axis=1, keepdims=True)
    features = np.full((n, 3), 0.3)
    features[np.arange(n), favourite] = 0.4
    features[:30] = [0.4, 0.4, 0.2]  # it cannot tell identical pairs either
    folds = np.arange(n) % 3
    counted = pl.DataFrame({"rule": kinds[:30].tolist(), "label": labels[:30], "fold": folds[:30]})
    return model, features, labels, folds, kinds, counted


def test_auto_picks_the_lowest_cross_fitted_option_and_fixed_settings_constrain_it():
    model, features, labels, folds, kinds, counted = constructed_case()
    scores = score_options(model, features, labels, folds, kinds, counted)
    assert set(scores) == {
        f"{name}{suffix}"
        for name in ("none", "temperature", "features_blend", "features_blend+temperature")
        for suffix in ("", "+rules")
    }
    best = min(scores, key=scores.get)
    assert ranked_options(scores, "auto", "auto", "auto")[0][1] == best
    assert best.endswith("+rules") and scores[best] < scores[best.removesuffix("+rules")]
    assert scores["none+rules"] < scores["none"]
    assert ranked_options(scores, False, False, False)[0][1] == "none"
    assert option_settings(ranked_options(scores, "auto", True, False)[0][1])[1:] == (True, False)
    # What the rule did out of fold, against the model alone on the rows it touched.
    ruled = cross_fitted_rules(model, kinds, folds, counted)
    assert log_loss(labels[:30], ruled[:30]) < log_loss(labels[:30], model[:30])
