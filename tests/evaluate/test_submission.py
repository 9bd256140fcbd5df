import numpy as np
import polars as pl
import pytest

from arenapref.errors import SubmissionError
from arenapref.evaluate.submission import build_submission, validate_submission, write_submission


def frame(ids, probs):
    probs = np.asarray(probs, dtype=float)
    return pl.DataFrame(
        {"id": ids, "winner_model_a": probs[:, 0], "winner_model_b": probs[:, 1], "winner_tie": probs[:, 2]}
    )


GOOD = [[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]


def test_valid_submission_passes():
    validate_submission(frame([3, 1], GOOD), [3, 1])


@pytest.mark.parametrize(
    "ids, probs, expected, message",
    [
        ([1, 3], GOOD, [3, 1], "not in sample_submission order"),
        ([3, 2], GOOD, [3, 1], "missing \\[1\\], unexpected \\[2\\]"),
        ([3], GOOD[:1], [3, 1], "1 rows, sample_submission has 2"),
        ([3, 1], [[0.5, 0.3, np.nan], [0.1, 0.1, 0.8]], [3, 1], "NaN"),
        ([3, 1], [[1.2, -0.3, 0.1], [0.1, 0.1, 0.8]], [3, 1], "outside \\[0, 1\\]"),
        ([3, 1], [[0.5, 0.3, 0.3], [0.1, 0.1, 0.8]], [3, 1], "sum to 1.1"),
    ],
)
def test_invalid_submissions_are_refused(ids, probs, expected, message):
    with pytest.raises(SubmissionError, match=message):
        validate_submission(frame(ids, probs), expected)


def test_build_averages_folds_in_sample_order(tmp_path):
    paths = []
    for fold, probs in enumerate(([[0.6, 0.2, 0.2], [0.2, 0.2, 0.6]], [[0.4, 0.4, 0.2], [0.2, 0.4, 0.4]])):
        path = tmp_path / f"fold{fold}.parquet"
        frame([10, 20], probs).write_parquet(path)
        paths.append(path)
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("id,winner_model_a,winner_model_b,winner_tie\n20,0.33,0.33,0.33\n10,0.33,0.33,0.33\n")
    submission = build_submission(paths, sample)
    assert submission["id"].to_list() == [20, 10]
    np.testing.assert_allclose(submission.row(0)[1:], [0.2, 0.3, 0.5])
    np.testing.assert_allclose(submission.row(1)[1:], [0.5, 0.3, 0.2])
    out = tmp_path / "submission.csv"
    write_submission(submission, out)
    assert pl.read_csv(out)["id"].to_list() == [20, 10]


def test_invalid_submission_leaves_existing_file_untouched(tmp_path):
    out = tmp_path / "submission.csv"
    out.write_text("previous")
    with pytest.raises(SubmissionError):
        write_submission(frame([1], [[0.5, 0.5, 0.5]]), out)
    assert out.read_text() == "previous"
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind
