"""Extra training rows (data.extra_train): more labelled pairs for the training folds only.

Two formats are read. Kaggle's train.csv schema, and the `chatbot_arena_conversations` schema
(question_id, model_a, model_b, winner, conversation_a, conversation_b, turn, ...; each
conversation a list of {role, content} messages; winner one of model_a, model_b, tie,
tie (bothbad)) from JSON lines or parquet. A conversations row becomes a Kaggle row (the user turns
are the prompt, each side's assistant turns its response) and then goes through the same parser,
with the same rules and one-line errors, as the competition's rows.

Extra rows never validate anything: they are not in any fold's validation rows, the out-of-fold
file or the metrics. A row that repeats a main row's conversation (either order of the responses)
is dropped and counted. Rows are grouped with the main rows by prompt (the same rule as the folds):
an extra row that shares a prompt with fold k's rows is not trained on in fold k, so no fold
validates on a question its training saw.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl

from arenapref import LABEL_COLUMNS
from arenapref.data.folds import MAX_TURN_ROWS, MIN_TURN_CHARS, prompt_groups
from arenapref.data.parsing import NO_LABEL, TEST_COLUMNS, TEXT_COLUMNS, TRAIN_COLUMNS, DataError, read_csv_strict
from arenapref.data.preprocess import DataReport, clean_train_rows, with_lengths
from arenapref.data.soft_labels import TEACHER_COLUMNS, attach_soft_labels

CONVERSATION_COLUMNS = ("question_id", "model_a", "model_b", "winner", "conversation_a", "conversation_b")
WINNERS = {"model_a": 0, "model_b": 1, "tie": 2, "tie (bothbad)": 2}
# Columns of extra.parquet (besides the text lengths): the main table's, less the fold and group,
# plus where each row came from and the folds whose training leaves it out.
EXTRA_COLUMNS = ("id", *TEXT_COLUMNS, "label", "source", "excluded_folds")


def conversation_id(question_id: str) -> int:
    """A stable 63-bit integer id for a conversations row (the tables key rows by integer id)."""
    return int.from_bytes(hashlib.blake2b(question_id.encode("utf-8"), digest_size=8).digest(), "big") >> 1


def _messages(value, file: str, row: str, field: str, line: int | None) -> list[dict]:
    if isinstance(value, str):  # a JSON-encoded list, as some exports store it
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise DataError(file, f"not a JSON list of messages ({err.msg})", row, field, line) from None
    if not isinstance(value, list | tuple):
        raise DataError(
            file, f"expected a list of {{role, content}} messages, got {type(value).__name__}", row, field, line
        )
    for message in value:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise DataError(file, "every message must be an object with role and content", row, field, line)
        if message["role"] not in ("user", "assistant"):
            raise DataError(file, f"unknown role {message['role']!r} (expected user or assistant)", row, field, line)
        if message["content"] is not None and not isinstance(message["content"], str):
            raise DataError(file, "a message's content must be text or null", row, field, line)
    return list(value)


def _turns(messages: list[dict], role: str) -> list[str | None]:
    return [m["content"] for m in messages if m["role"] == role]


def conversation_to_kaggle_row(record: dict, file: str, line: int | None = None) -> dict[str, str]:
    """One conversations-schema record as a Kaggle-schema row of text cells (turn lists as JSON)."""
    question_id = record.get("question_id")
    if not isinstance(question_id, str) or not question_id.strip():
        raise DataError(file, "question_id is missing or not text", None, "question_id", line)
    for name in CONVERSATION_COLUMNS:
        if name not in record:
            raise DataError(file, "field missing", question_id, name, line)
    winner = record["winner"]
    if winner not in WINNERS:
        expected = ", ".join(WINNERS)
        raise DataError(file, f"winner must be one of {expected}; got {winner!r}", question_id, "winner", line)
    side_a = _messages(record["conversation_a"], file, question_id, "conversation_a", line)
    side_b = _messages(record["conversation_b"], file, question_id, "conversation_b", line)
    prompt = _turns(side_a, "user")
    if _turns(side_b, "user") != prompt:
        raise DataError(file, "its user turns differ from conversation_a's", question_id, "conversation_b", line)
    label = WINNERS[winner]
    return {
        "id": str(conversation_id(question_id)),
        "model_a": str(record["model_a"]),
        "model_b": str(record["model_b"]),
        "prompt": json.dumps(prompt),
        "response_a": json.dumps(_turns(side_a, "assistant")),
        "response_b": json.dumps(_turns(side_b, "assistant")),
        **{name: str(int(k == label)) for k, name in enumerate(LABEL_COLUMNS)},
    }


def _conversation_records(path: Path) -> list[tuple[dict, int | None]]:
    """Records with their line (JSON lines) or None (parquet)."""
    if path.suffix == ".parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as err:  # a damaged file shows as several exception types
            raise DataError(path, f"cannot be read as parquet ({type(err).__name__})") from None
        missing = [c for c in CONVERSATION_COLUMNS if c not in frame.columns]
        if missing:
            raise DataError(path, f"missing column(s) {missing}; expected {list(CONVERSATION_COLUMNS)}")
        return [(record, None) for record in frame.select(CONVERSATION_COLUMNS).iter_rows(named=True)]
    records = []
    with open(path, encoding="utf-8") as handle:
        try:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as err:
                    raise DataError(path, f"not a JSON object ({err.msg})", None, None, number) from None
                if not isinstance(record, dict):
                    raise DataError(path, "each line must be a JSON object", None, None, number)
                records.append((record, number))
        except UnicodeDecodeError:
            raise DataError(path, "not UTF-8 text") from None
    return records


def read_extra_file(path: str | Path) -> tuple[pl.DataFrame, DataReport]:
    """One extra file, parsed and cleaned like the main rows: id, turn lists, label."""
    path = Path(path)
    file = str(path)
    if not path.exists():
        raise DataError(path, "file not found (data.extra_train)")
    if path.suffix == ".csv":
        # Without winner columns (test.csv's schema) the rows are pairs that only a teacher labels.
        labelled = set(LABEL_COLUMNS) <= set(pl.read_csv(path, n_rows=0, infer_schema=False).columns)
        csv = read_csv_strict(path, TRAIN_COLUMNS if labelled else TEST_COLUMNS)
        report = DataReport.of_csv(file, csv)
        return clean_train_rows(csv.frame, file, report, csv.line, labelled), report
    if path.suffix not in (".jsonl", ".json", ".parquet"):
        raise DataError(path, "extra training data must be .csv (Kaggle's schema), .jsonl, .json or .parquet")
    records = _conversation_records(path)
    if not records:
        raise DataError(path, "has no rows")
    seen: dict[str, int | None] = {}
    rows, lines = [], []
    for record, line in records:
        row = conversation_to_kaggle_row(record, file, line)
        if record["question_id"] in seen:
            raise DataError(file, "duplicate question_id", record["question_id"], "question_id", line)
        seen[record["question_id"]] = line
        rows.append(row)
        lines.append(line)
    frame = pl.DataFrame(rows, schema=dict.fromkeys(TRAIN_COLUMNS, pl.String))
    report = DataReport(file=file, rows_in=frame.height)
    line_of = (lambda index: lines[index]) if lines[0] is not None else None
    return clean_train_rows(frame, file, report, line_of), report


def _conversation_keys(table: pl.DataFrame, swapped: bool = False) -> pl.Series:
    a, b = ("response_b", "response_a") if swapped else ("response_a", "response_b")
    return table.select(pl.struct(pl.col("prompt").hash(), pl.col(a).hash(), pl.col(b).hash()).hash()).to_series()


def join_extra(
    main: pl.DataFrame,
    extras: list[tuple[pl.DataFrame, DataReport]],
    max_turn_rows: int | None = MAX_TURN_ROWS,
    min_turn_chars: int = MIN_TURN_CHARS,
    soft: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, dict]:
    """The extra rows that may train: deduplicated against the main rows and each other, with the
    folds whose training leaves each out (those of the main rows it shares a prompt group with).
    `main` is preprocess_train's table (with folds); `soft` a teacher's probabilities
    (read_soft_labels), attached to the rows it covers; a row with neither a winner nor a teacher
    has nothing to learn from and is dropped, counted. The second value is the data report's part."""
    sources, tables = [], []
    for table, report in extras:
        sources.append(report.file)
        tables.append(table.with_columns(source=pl.lit(report.file)))
    n_folds = int(main["fold"].max()) + 1
    summary: dict = {"files": [report.as_dict() for _, report in extras]}
    if not tables:
        empty = pl.DataFrame(schema={**dict(main.select("id", *TEXT_COLUMNS, "label").schema), "source": pl.String})
        empty = empty.with_columns(excluded_folds=pl.lit([], dtype=pl.List(pl.Int64)))
        if soft is not None:
            empty = empty.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in TEACHER_COLUMNS)
        return _finish(empty, summary, n_folds)
    extra = pl.concat(tables, how="vertical_relaxed")
    # The same conversation as a main row, in either order of the responses, or as an earlier extra row.
    main_keys = pl.concat([_conversation_keys(main), _conversation_keys(main, swapped=True)])
    keys = _conversation_keys(extra)
    of_main = keys.is_in(main_keys.implode()) | _conversation_keys(extra, swapped=True).is_in(main_keys.implode())
    repeated = keys.is_duplicated() & ~keys.is_first_distinct()
    clashing = extra["id"].is_in(main["id"].implode()) & ~of_main
    if clashing.any():
        row = extra.filter(clashing).row(0, named=True)
        raise DataError(row["source"], "id is also a main row's id (with another conversation)", row["id"], "id")
    summary["duplicates_of_main"] = int(of_main.sum())
    summary["duplicates_within_extra"] = int((repeated & ~of_main).sum())
    extra = extra.filter(~of_main & ~repeated)
    unlabelled = extra["label"] == NO_LABEL
    if soft is not None:
        extra = attach_soft_labels(extra, soft)
        unlabelled = unlabelled & extra[TEACHER_COLUMNS[0]].is_null()
    summary["no_winner_nor_teacher"] = int(unlabelled.sum())
    extra = extra.filter(~unlabelled)
    duplicate_ids = extra["id"].is_duplicated()
    if duplicate_ids.any():
        row = extra.filter(duplicate_ids).row(0, named=True)
        raise DataError(row["source"], "duplicate id across the extra files", row["id"], "id")
    # Group main and extra rows together; an extra row is left out of every fold its group meets.
    prompts = pl.concat([main["prompt"], extra["prompt"]])
    groups = np.asarray(prompt_groups(prompts, max_turn_rows, min_turn_chars))
    main_folds = pl.DataFrame({"group": groups[: main.height], "fold": main["fold"].to_numpy()})
    folds_of_group = main_folds.group_by("group").agg(pl.col("fold").unique().sort().alias("excluded_folds"))
    extra = (
        extra.with_columns(group=pl.Series(groups[main.height :]))
        .join(folds_of_group, on="group", how="left", maintain_order="left")
        .with_columns(pl.col("excluded_folds").fill_null(pl.lit([], dtype=pl.List(pl.Int64))))
        .drop("group")
    )
    return _finish(extra, summary, n_folds)


def _finish(extra: pl.DataFrame, summary: dict, n_folds: int) -> tuple[pl.DataFrame, dict]:
    lengths = [f"{c}_chars" for c in TEXT_COLUMNS] + ["n_turns"]
    teacher = [c for c in TEACHER_COLUMNS if c in extra.columns]
    columns = [*EXTRA_COLUMNS, *teacher]
    extra = with_lengths(extra.select(columns)).select("id", *TEXT_COLUMNS, *lengths, *columns[len(TEXT_COLUMNS) + 1 :])
    trained = {str(k): int((~extra["excluded_folds"].list.contains(k)).sum()) for k in range(n_folds)}
    summary |= {
        "rows": extra.height,
        "rows_per_fold": trained,  # extra rows each fold's adapter trains on
        "left_out_per_fold": {str(k): extra.height - n for k, n in trained.items()},
    }
    for count in ("duplicates_of_main", "duplicates_within_extra", "no_winner_nor_teacher"):
        summary.setdefault(count, 0)
    return extra, summary


def extra_training_rows(extra: pl.DataFrame, fold: int | None) -> pl.DataFrame:
    """The extra rows fold `fold`'s adapter trains on (every one for the full fit, fold None)."""
    if fold is None or extra.height == 0:
        return extra
    return extra.filter(~pl.col("excluded_folds").list.contains(fold))
