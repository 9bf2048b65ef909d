"""Datasets: JSONL or CSV files whose rows feed requests' `{{ name }}` placeholders.

Read once, when the scenario is loaded, so a bad file is a UsageError that costs no stored
run. `tracker.driver.feeders` hands the rows out during the run.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tracker.errors import UsageError

MODES = ("sequential", "random", "unique")


_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


Row = Mapping[str, object]


@dataclass(frozen=True)
class Dataset:
    """The rows of one dataset file, in file order, for read-only use.

    Attributes:
        name: The dataset's name in the scenario.
        path: The file it was read from.
        rows: One mapping per row (JSON values for JSONL, strings for CSV).
        lines: The file line on which each row starts, for error messages.
        columns: Every key seen in any row.
        required_columns: The keys present in every row.
    """

    name: str
    path: Path
    rows: tuple[Row, ...]
    lines: tuple[int, ...]
    columns: frozenset[str]
    required_columns: frozenset[str]

    def __len__(self) -> int:
        return len(self.rows)

    def first_line_without(self, column: str) -> int | None:
        """The line of the first row lacking `column`, or None if every row has it."""
        if column in self.required_columns:
            return None
        return next(
            (ln for row, ln in zip(self.rows, self.lines, strict=True) if column not in row), None
        )


def load_dataset(path: str | Path, *, name: str, fmt: str | None = None) -> Dataset:
    """Read a JSONL (one object per line) or CSV (header row first) dataset file.

    Args:
        path: The file; its extension (.jsonl, .ndjson, .csv) picks the format.
        name: The dataset's name in the scenario, used in error messages.
        fmt: "jsonl" or "csv" to override the extension.

    Raises:
        UsageError: Unknown format, missing or unreadable file, a line that is not a JSON
            object, a CSV row whose field count differs from the header, or no rows.
    """
    file = Path(path)
    where = f"dataset {name!r}: {file}"
    kind = _format_of(file, fmt, where)
    try:
        with file.open(encoding="utf-8-sig", newline="") as stream:
            rows, lines = (
                _read_jsonl(stream, where) if kind == "jsonl" else _read_csv(stream, where)
            )
    except FileNotFoundError:
        raise UsageError(f"{where}: file not found; check the dataset path") from None
    except IsADirectoryError:
        raise UsageError(
            f"{where}: is a directory; point the dataset at a .jsonl or .csv file"
        ) from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{where}: not UTF-8 text ({exc.reason}); re-save it as UTF-8") from None
    except OSError as exc:
        raise UsageError(
            f"{where}: cannot read it ({exc.strerror}); check its permissions"
        ) from None
    if not rows:
        hint = "add one JSON object per line" if kind == "jsonl" else "add rows below the header"
        raise UsageError(f"{where}: has no rows; {hint}")
    columns = frozenset().union(*rows)
    required = frozenset(rows[0]).intersection(*rows[1:])
    return Dataset(name, file, tuple(rows), tuple(lines), columns, required)


def _format_of(file: Path, fmt: str | None, where: str) -> str:
    if fmt is not None:
        if fmt not in ("jsonl", "csv"):
            raise UsageError(f"{where}: unknown dataset format {fmt!r}; use 'jsonl' or 'csv'")
        return fmt
    kind = _FORMATS.get(file.suffix.lower())
    if kind is None:
        raise UsageError(
            f"{where}: cannot tell the format from the extension; name it .jsonl, .ndjson "
            "or .csv, or set the format to 'jsonl' or 'csv'"
        )
    return kind


def _read_jsonl(stream: Iterator[str], where: str) -> tuple[list[Row], list[int]]:
    rows: list[Row] = []
    lines: list[int] = []
    for number, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"{where}:{number}: not valid JSON ({exc.msg} at column {exc.colno}); "
                "each line must be one JSON object"
            ) from None
        if not isinstance(row, dict):
            raise UsageError(
                f"{where}:{number}: expected a JSON object, got {type(row).__name__}; "
                'write each row as {"column": value, ...}'
            )
        rows.append(row)
        lines.append(number)
    return rows, lines


def _read_csv(stream: Iterator[str], where: str) -> tuple[list[Row], list[int]]:
    reader = csv.reader(stream)
    rows: list[Row] = []
    lines: list[int] = []
    header: list[str] | None = None
    last = 0  # reader.line_num after the previous record: a record starts on the next line
    try:
        for record in reader:
            start, last = last + 1, reader.line_num
            if not record:  # blank line
                continue
            if header is None:
                header = _check_header(record, where, start)
                continue
            if len(record) != len(header):
                raise UsageError(
                    f"{where}:{start}: {len(record)} fields but the header has {len(header)} "
                    "columns; give every row one value per column (quote values with commas)"
                )
            rows.append(dict(zip(header, record, strict=True)))
            lines.append(start)
    except csv.Error as exc:
        raise UsageError(f"{where}:{reader.line_num}: bad CSV ({exc}); fix the quoting") from None
    return rows, lines


def _check_header(record: list[str], where: str, line: int) -> list[str]:
    header = [cell.strip() for cell in record]
    if any(not cell for cell in header):
        raise UsageError(
            f"{where}:{line}: the header row has an empty column name; name every column"
        )
    duplicates = sorted({cell for cell in header if header.count(cell) > 1})
    if duplicates:
        raise UsageError(
            f"{where}:{line}: duplicate column {', '.join(duplicates)} in the header; rename it"
        )
    return header
