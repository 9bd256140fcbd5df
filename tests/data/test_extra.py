"""Extra training rows (data.extra_train): the conversations schema read like Kaggle's, bad rows as
one-line errors, duplicates of the main rows dropped, and prompt-sharing rows kept out of the
folds whose rows share their prompt."""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import write_csv

from arenapref.data.extra import conversation_id, extra_training_rows, join_extra, read_extra_file
from arenapref.data.parsing import TRAIN_COLUMNS
from arenapref.data.preprocess import preprocess_train
from arenapref.errors import DataError


def conversation(question_id, prompt, answer_a, answer_b, winner="model_a", **changes):
    """A record with the documented fields of lmsys/chatbot_arena_conversations."""

    def side(answers):
        messages = []
        for question, answer in zip(prompt, answers, strict=True):
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        return messages

    record = {
        "question_id": question_id,
        "model_a": "model-x",
        "model_b": "model-y",
        "winner": winner,
        "judge": "arena_user_1",
        "conversation_a": side(answer_a),
        "conversation_b": side(answer_b),
        "turn": len(prompt),
        "anony": True,
        "language": "English",
        "tstamp": 1682351591.1322,
        "openai_moderation": {"flagged": False},
        "toxic_chat_tag": {"roberta-large": {"flagged": False}},
    }
    return record | changes


RECORDS = [
    conversation("q-one", ["what is two plus two?"], ["four"], ["five"], "model_a"),
    conversation("q-two", ["name a colour", "another one"], ["red", "blue"], ["green", None], "model_b"),
    conversation("q-three", ["why is the sky blue?"], ["scattering"], ["it just is"], "tie"),
    conversation("q-four", ["say hi"], ["hi"], ["hello"], "tie (bothbad)"),
]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def main_table(tmp_path, rows=None):
    rows = rows or [
        [i, "m1", "m2", json.dumps([f"main question number {i}"]), '["a"]', '["b"]', *((1, 0, 0), (0, 1, 0))[i % 2]]
        for i in range(1, 13)
    ]
    path = write_csv(tmp_path / "train.csv", list(TRAIN_COLUMNS), rows)
    return preprocess_train(path, n_folds=3, seed=0)[0]


def test_conversations_schema_round_trips_from_json_lines_and_parquet(tmp_path):
    from_lines, report = read_extra_file(write_jsonl(tmp_path / "arena.jsonl", RECORDS))
    assert report.rows_in == report.rows_kept == 4
    rows = {row["id"]: row for row in from_lines.iter_rows(named=True)}
    two = rows[conversation_id("q-two")]
    assert two["prompt"] == ["name a colour", "another one"]
    assert two["response_a"] == ["red", "blue"]
    assert two["response_b"] == ["green", ""]  # a null turn becomes empty text, as in Kaggle's rows
    assert [rows[conversation_id(q)]["label"] for q in ("q-one", "q-two", "q-three", "q-four")] == [0, 1, 2, 2]
    pl.DataFrame(RECORDS).write_parquet(tmp_path / "arena.parquet")
    from_parquet, _ = read_extra_file(tmp_path / "arena.parquet")
    assert from_parquet.equals(from_lines)


def test_ids_are_stable_63_bit_integers():
    assert conversation_id("q-one") == conversation_id("q-one") != conversation_id("q-two")
    assert 0 <= conversation_id("58210e39b3fd4441a2bd4a518bb44c2d") < 2**63


BAD = {
    "winner": (dict(winner="model_c"), "field 'winner': winner must be one of model_a, model_b, tie, tie (bothbad)"),
    "role": (
        dict(conversation_a=[{"role": "system", "content": "x"}]),
        "field 'conversation_a': unknown role 'system'",
    ),
    "user turns differ": (
        dict(conversation_b=[{"role": "user", "content": "other"}, {"role": "assistant", "content": "b"}]),
        "field 'conversation_b': its user turns differ from conversation_a's",
    ),
    "content": (
        dict(conversation_a=[{"role": "user", "content": 3}]),
        "field 'conversation_a': a message's content must be text or null",
    ),
    "not a list": (dict(conversation_a={"role": "user"}), "expected a list of {role, content} messages, got dict"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_conversation_is_one_line_naming_file_line_row_and_field(tmp_path, case):
    change, message = BAD[case]
    records = [RECORDS[0], conversation("q-bad", ["x"], ["y"], ["z"], **change)]
    path = write_jsonl(tmp_path / "arena.jsonl", records)
    with pytest.raises(DataError) as err:
        read_extra_file(path)
    text = str(err.value)
    assert text.startswith(f"{path}, line 2, row id=q-bad, ") and message in text and "\n" not in text


def test_file_level_faults(tmp_path):
    missing = {k: v for k, v in RECORDS[0].items() if k != "winner"}
    with pytest.raises(DataError, match=r"line 1, row id=q-one, field 'winner': field missing"):
        read_extra_file(write_jsonl(tmp_path / "a.jsonl", [missing]))
    (tmp_path / "b.jsonl").write_text(json.dumps(RECORDS[0]) + "\n{not json\n")
    with pytest.raises(DataError, match=r"b.jsonl, line 2: not a JSON object"):
        read_extra_file(tmp_path / "b.jsonl")
    with pytest.raises(DataError, match=r"line 2, row id=q-one, field 'question_id': duplicate question_id"):
        read_extra_file(write_jsonl(tmp_path / "c.jsonl", [RECORDS[0], RECORDS[0]]))
    with pytest.raises(DataError, match=r"must be .csv \(Kaggle's schema\), .jsonl, .json or .parquet"):
        read_extra_file(write_jsonl(tmp_path / "d.txt", RECORDS))
    pl.DataFrame([{k: v for k, v in r.items() if k != "conversation_b"} for r in RECORDS]).write_parquet(
        tmp_path / "e.parquet"
    )
    with pytest.raises(DataError, match=r"e.parquet: missing column\(s\) \['conversation_b'\]"):
        read_extra_file(tmp_path / "e.parquet")


def test_empty_answers_are_dropped_and_counted_as_in_the_main_rows(tmp_path):
    records = [*RECORDS, conversation("q-empty", ["hello there friend"], [""], ["hi"])]
    table, report = read_extra_file(write_jsonl(tmp_path / "arena.jsonl", records))
    assert table.height == 4 and report.dropped == {"empty_response_a": 1}
    assert report.rows_in == report.rows_kept + sum(report.dropped.values())


FRESH = (["a question nobody asked before"], ["yes"], ["no"], "model_a")


def test_join_drops_repeats_of_main_rows_and_keeps_shared_prompts_out_of_their_fold(tmp_path):
    main = main_table(tmp_path)
    fold_of = dict(zip(main["id"].to_list(), main["fold"].to_list(), strict=True))
    records = [
        # The conversation of main row 1, as is and with the responses swapped: both repeat it.
        conversation("repeat", ["main question number 1"], ["a"], ["b"], "model_b"),
        conversation("repeat-swapped", ["main question number 2"], ["b"], ["a"], "model_a"),
        # A new answer pair to main row 3's question: it may not train the fold that validates row 3.
        conversation("shares", ["main question number 3"], ["a new answer"], ["another"], "tie"),
        conversation("fresh", *FRESH),
        conversation("fresh-again", *FRESH),
    ]
    second = write_jsonl(tmp_path / "second.jsonl", [conversation("fresh-elsewhere", *FRESH)])
    files = [read_extra_file(write_jsonl(tmp_path / "arena.jsonl", records)), read_extra_file(second)]
    extra, summary = join_extra(main, files)
    # Within a file a repeat is the parser's `duplicate`; across files, join_extra's.
    assert summary["files"][0]["dropped"] == {"duplicate": 1}
    assert summary["duplicates_of_main"] == 2 and summary["duplicates_within_extra"] == 1
    rows = {row["id"]: row for row in extra.iter_rows(named=True)}
    assert sorted(rows) == sorted([conversation_id("shares"), conversation_id("fresh")])
    assert rows[conversation_id("shares")]["excluded_folds"] == [fold_of[3]]
    assert rows[conversation_id("fresh")]["excluded_folds"] == []
    for fold in range(3):
        trained = set(extra_training_rows(extra, fold)["id"].to_list())
        assert (conversation_id("shares") in trained) is (fold != fold_of[3])
        assert conversation_id("fresh") in trained
        assert summary["rows_per_fold"][str(fold)] == len(trained)
    assert extra_training_rows(extra, None).height == 2  # the full fit trains on every extra row
    assert rows[conversation_id("fresh")]["source"].endswith("arena.jsonl")


def test_kaggle_schema_extra_rows_and_id_clashes(tmp_path):
    main = main_table(tmp_path)
    rows = [[101, "m1", "m2", '["an extra question"]', '["a"]', '["b"]', 0, 0, 1]]
    extra_csv = write_csv(tmp_path / "more.csv", list(TRAIN_COLUMNS), rows)
    extra, summary = join_extra(main, [read_extra_file(extra_csv)])
    assert extra["id"].to_list() == [101] and extra["label"].to_list() == [2]
    clash = write_csv(
        tmp_path / "clash.csv", list(TRAIN_COLUMNS), [[1, "m1", "m2", '["other"]', '["c"]', '["d"]', 1, 0, 0]]
    )
    with pytest.raises(DataError, match=r"clash.csv, row id=1, field 'id': id is also a main row's id"):
        join_extra(main, [read_extra_file(clash)])


def test_no_extra_files_give_an_empty_table_of_the_same_columns(tmp_path):
    main = main_table(tmp_path)
    extra, summary = join_extra(main, [])
    assert extra.height == 0 and summary["rows"] == 0
    assert {"id", "prompt", "label", "excluded_folds", "source"} <= set(extra.columns)
