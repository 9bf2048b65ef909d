"""Feeders: hand a dataset's rows to requests, one per request.

`tracker.driver.engine` asks a `Feeder` for one row per request and renders the request's
template with it. Feeders are not locked: the driver is single-threaded asyncio, and
multi-process drivers give each worker its own feeder built with `shard=(index, count)`.
The datasets themselves are read by `tracker.scenario.datasets`, before the run.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod

from tracker.errors import UsageError
from tracker.scenario.datasets import MODES, Dataset, Row


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
