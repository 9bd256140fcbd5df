"""The report's tables (the figures are checked in a browser by the pipeline test)."""

from __future__ import annotations

import numpy as np
import polars as pl

from arenapref.evaluate import report


def test_benchmark_markdown_becomes_an_html_table(tmp_path):
    md = tmp_path / "bench.md"
    md.write_text(
        "Benchmark (quick mode): a <b> note.\n\n| measure | ours | ratio |\n| --- | ---: | ---: |\n"
        "| inference | 10.5 | 2.66 |\n| padding | 0.95 | |\n"
    )
    report.benchmark_table(md, tmp_path / "bench.html")
    html = (tmp_path / "bench.html").read_text()
    assert "<th>measure</th>" in html and "<td>2.66</td>" in html and "<td>padding</td>" in html
    assert "---" not in html and "&lt;b&gt;" in html  # the separator row is gone, text is escaped
    report.benchmark_table(None, tmp_path / "none.html")
    assert "make benchmark" in (tmp_path / "none.html").read_text()


def test_token_length_plot_reports_the_share_cut(tmp_path):
    oof = pl.DataFrame({"tokens_untruncated": [100, 200, 300, 900], "label": [0, 1, 2, 0]})
    report.token_length_plot(oof, 256, tmp_path / "lengths.svg")
    svg = (tmp_path / "lengths.svg").read_text()
    assert "max_length 256: 50% of rows cut" in svg


def test_confusion_plot_counts_each_pair(tmp_path):
    probs = np.array([[0.8, 0.1, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    oof = pl.DataFrame(
        {"winner_model_a": probs[:, 0], "winner_model_b": probs[:, 1], "winner_tie": probs[:, 2], "label": [0, 1, 1, 2]}
    )
    report.confusion_plot(oof, tmp_path / "confusion.svg")
    svg = (tmp_path / "confusion.svg").read_text()
    # True B: one predicted A, one predicted B (50 % each); true A and tie: all right.
    assert svg.count("(50%)") == 2 and svg.count("(100%)") == 2


def test_data_table_shows_fold_label_shares_and_the_turns_left_out(tmp_path):
    from arenapref.data.preprocess import summarize

    train = pl.DataFrame(
        {
            "prompt": [["hello", "What is a monad?"], ["hello", "Explain CRDTs."], ["hi"], ["hi"]],
            "label": [0, 1, 2, 0],
            "group": [0, 1, 2, 2],
            "fold": [0, 1, 0, 1],
        }
    )
    side = {"file": "x.csv", "rows_in": 4, "rows_kept": 4, "dropped": {}, "dropped_total": 0}
    report.data_table({"train": side, "test": side, **summarize(train)}, tmp_path / "data.html")
    page = (tmp_path / "data.html").read_text()
    assert "<th>share tie</th>" in page and "<td>0.5000</td>" in page  # fold 0: one tie of two rows
    assert "largest has 2 rows (0.5000 of them)" in page
    assert "<td>hello</td><td>2</td><td>short</td>" in page and "Turns that group no rows (1;" in page
