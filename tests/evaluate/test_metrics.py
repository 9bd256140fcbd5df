import numpy as np
from sklearn.metrics import log_loss as sklearn_log_loss

from arenapref.evaluate.metrics import accuracy, class_prior, log_loss, prior_log_loss


def test_log_loss_matches_sklearn():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=50)
    labels = rng.integers(0, 3, size=50)
    assert np.isclose(log_loss(labels, probs), sklearn_log_loss(labels, probs, labels=[0, 1, 2]))


def test_log_loss_clips_certain_mistakes():
    assert np.isfinite(log_loss([0], np.array([[0.0, 1.0, 0.0]])))


def test_prior_and_accuracy():
    labels = [0, 0, 1, 2]
    assert np.allclose(class_prior(labels), [0.5, 0.25, 0.25])
    expected = -(2 * np.log(0.5) + 2 * np.log(0.25)) / 4
    assert np.isclose(prior_log_loss(labels, labels), expected)
    assert accuracy([0, 1], np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1]])) == 0.5
