"""Datasets (JSONL or CSV files) and the feeders that hand their rows to requests.

`tracker.scenario` loads each dataset once, before the run, so a bad file is a
UsageError that costs no stored run; `tracker.driver.engine` asks a `Feeder` for one
row per request and renders the request's template with it. Feeders are not locked:
the driver is single-threaded asyncio, and multi-process drivers give each worker
its own feeder built with `shard=(index, count)`.
"""

from __future__ import annotations

import csv
import json
import random
from abc import ABC, abstractmethod
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


class FeederExhausted(Exception):
    """A `unique` feeder has handed out all of its rows; the request stops being issued."""

    def __init__(self, dataset: str, served: int) -> None:
        super().__init__(f"dataset {dataset!r}: no unique rows left ({served} used)")
        self.dataset = dataset
        self.served = served


class Feeder(ABC):
    """Hands out one dataset row per request; see `make_feeder` for the strategies."""

    mode: str = ""

    def __init__(self, dataset: Dataset, rows: tuple[Row, ...]) -> None:
        self.dataset = dataset
        self._rows = rows
        self.served = 0

    @abstractmethod
    def next_row(self) -> Row:
        """The row for the next request (read-only).

        Raises:
            FeederExhausted: A `unique` feeder has no rows left.
        """


class _Sequential(Feeder):
    mode = "sequential"

    def __init__(self, dataset: Dataset, start: int) -> None:
        super().__init__(dataset, dataset.rows)
        self._next = start

    def next_row(self) -> Row:
        row = self._rows[self._next]
        self._next = (self._next + 1) % len(self._rows)
        self.served += 1
        return row


class _Random(Feeder):
    mode = "random"

    def __init__(self, dataset: Dataset, rng: random.Random) -> None:
        super().__init__(dataset, dataset.rows)
        self._rng = rng

    def next_row(self) -> Row:
        self.served += 1
        return self._rng.choice(self._rows)


class _Unique(Feeder):
    mode = "unique"

    def __init__(self, dataset: Dataset, rows: tuple[Row, ...]) -> None:
        super().__init__(dataset, rows)
        self._it = iter(rows)

    def next_row(self) -> Row:
        row = next(self._it, None)
        if row is None:
            raise FeederExhausted(self.dataset.name, self.served)
        self.served += 1
        return row


def make_feeder(
    dataset: Dataset, mode: str, seed: int = 0, *, shard: tuple[int, int] = (0, 1)
) -> Feeder:
    """Build a feeder over `dataset`.

    Modes:
        sequential: rows in file order, wrapping around at the end.
        random: rows drawn with replacement from `random.Random(seed)`; reproducible.
        unique: each row at most once, in file order; then `next_row` raises
            `FeederExhausted`.

    Sharding, for drivers split over `count` worker processes (worker `index` passes
    `shard=(index, count)`): `unique` gives worker `index` exactly the rows `i` with
    `i % count == index`, so workers never repeat each other's rows and together cover
    the dataset (a worker can get none when there are fewer rows than workers);
    `sequential` cycles over all rows but starts at row `index * len // count`, so
    workers do not send the same row at the same time; `random` seeds each worker
    with a stream derived from (seed, index, count). `shard=(0, 1)` is the unsharded feeder.

    Raises:
        UsageError: An unknown mode.
        ValueError: A shard index outside `range(count)`.
    """
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {shard}: need 0 <= index < count")
    if mode == "sequential":
        return _Sequential(dataset, index * len(dataset) // count)
    if mode == "random":
        # A string seed hashes deterministically (unlike hash()), whatever PYTHONHASHSEED is.
        rng = random.Random(seed if count == 1 else f"{seed}/{index}/{count}")
        return _Random(dataset, rng)
    if mode == "unique":
        return _Unique(dataset, dataset.rows[index::count])
    raise UsageError(
        f"dataset {dataset.name!r}: unknown feeder mode {mode!r}; use one of {', '.join(MODES)}"
    )
