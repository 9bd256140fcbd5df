import numpy as np
import polars as pl

from arenapref.evaluate.calibration import apply_temperature, fit_temperature
from arenapref.evaluate.features import features_oof, text_features
from arenapref.evaluate.metrics import log_loss


def table(rows):
    return pl.DataFrame(
        {"response_a": [r[0] for r in rows], "response_b": [r[1] for r in rows]},
        schema={"response_a": pl.List(pl.String), "response_b": pl.List(pl.String)},
    )


def test_text_features_count_markdown_and_flag_identical_answers():
    features = text_features(table([(["# Title\n- one\n- two\n```py\nx\n```"], ["plain"]), (["same"], ["same"])]))
    assert features.shape == (2, 19)
    headers_a, list_items_a, fences_a = features[0, 2], features[0, 3], features[0, 4]
    assert np.allclose([headers_a, list_items_a, fences_a], np.log1p([1, 2, 2]))
    assert features[:, -1].tolist() == [0.0, 1.0]


def test_features_baseline_learns_a_length_signal_out_of_fold():
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for _ in range(300):
        long_a = rng.random() < 0.5
        short, long = ["ok"], ["a detailed answer " * int(rng.integers(5, 30))]
        rows.append((long, short) if long_a else (short, long))
        labels.append(0 if long_a else 1)
    train = table(rows).with_columns(label=pl.Series(labels), fold=pl.Series(np.arange(300) % 3))
    probs = features_oof(train)
    assert log_loss(labels, probs) < 0.3  # the longer answer always wins here
    np.testing.assert_allclose(probs.sum(axis=1), 1)


def test_temperature_scaling_softens_overconfident_predictions():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 2000)
    calibrated = np.full((2000, 3), 0.2)
    calibrated[np.arange(2000), labels] = 0.6  # right 60 % of the way
    noisy = np.where(rng.random(2000)[:, None] < 0.3, np.roll(calibrated, 1, axis=1), calibrated)
    overconfident = apply_temperature(noisy, 0.3)
    temperature = fit_temperature(overconfident, labels)
    assert temperature > 1.5  # softens: undoes most of the sharpening
    assert log_loss(labels, apply_temperature(overconfident, temperature)) < log_loss(labels, overconfident) - 0.1
    np.testing.assert_allclose(apply_temperature(noisy, 1.0), noisy / noisy.sum(axis=1, keepdims=True))
