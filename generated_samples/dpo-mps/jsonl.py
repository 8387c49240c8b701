"""JSON-lines data files, read with errors that name the file, the line and the schema.

Every check runs before the rows become a `datasets.Dataset`, so a bad line is reported by
its number in the file rather than as a parse error from deep inside the library
(R-DATA-VALIDATION).
"""

import json
from pathlib import Path

from datasets import Dataset

Rows = list[tuple[int, dict]]  # (line number in the file, row)


def read_jsonl(path: str, columns: tuple[str, ...], schema: str) -> Rows:
    """The non-blank lines of `path` as (line number, row with just `columns`).

    Exits with a message naming the file and line when the file is missing or empty, a
    line is not a JSON object, or a row lacks one of `columns`.
    """
    if not Path(path).is_file():
        raise SystemExit(f"data file not found: {path}\nExpected {schema}")
    rows = []
    with open(path, encoding="utf-8") as f:
        try:
            lines = list(f)
        except UnicodeDecodeError as err:
            raise SystemExit(f"{path}: not UTF-8 text ({err.reason})\nExpected {schema}") from None
    for line, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as err:
            raise SystemExit(
                f"{path}, line {line}: not valid JSON ({err.msg})\nExpected {schema}"
            ) from None
        if not isinstance(row, dict):
            raise SystemExit(f"{path}, line {line}: not a JSON object\nExpected {schema}")
        missing = [column for column in columns if column not in row]
        if missing:
            raise SystemExit(f"{path}, line {line}: missing {missing}\nExpected {schema}")
        rows.append((line, {column: row[column] for column in columns}))
    if not rows:
        raise SystemExit(f"{path}: no examples, the file is empty\nExpected {schema}")
    return rows


def same_form(rows: Rows, form, what: str, path: str, schema: str) -> None:
    """Every row's `form(row)` (e.g. its label's type) matches the first row's."""
    first_line, first = rows[0]
    for line, row in rows:
        if form(row) != form(first):
            raise SystemExit(
                f"{path}, line {line}: {what} differs from line {first_line}'s "
                f"({form(row)} vs {form(first)}); use one form in every line\nExpected {schema}"
            )


def as_dataset(rows: Rows) -> Dataset:
    return Dataset.from_list([row for _, row in rows])
