"""A session step's `poll` table: repeat the step until an asynchronous task is done.

Used by `tracker.scenario.toml_file` for `[[session.steps]]`:

    poll = { until = { status = "done" }, fail = { status = ["failed", "cancelled"] },
             interval = "200ms", backoff = 1.5, max_interval = "2s", max_wait = "60s",
             queue_wait = { json = "queue_ms" } }

`until` and `fail` name variables the step itself extracts, each with a value or a list of
values (all variables must match; any value of a list does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tracker.scenario.fields import Table
from tracker.scenario.model import Condition, Extraction, PollSpec

_KEYS = ("until", "fail", "interval", "backoff", "max_interval", "max_wait", "queue_wait")


def parse_poll(
    step: Table,
    extracted: tuple[Extraction, ...],
    extraction: Callable[[Any, str], Extraction],
) -> PollSpec | None:
    """The step's `poll`, checked against what the step extracts; None without one.

    `extraction(raw, where)` parses one extraction table (`queue_wait`), as `extract` does.
    """
    table = step.sub("poll", _KEYS)
    if table is None:
        return None
    names = {x.name for x in extracted}
    until = _condition(table, "until", names, required=True)
    assert until is not None
    fail = _condition(table, "fail", names, required=False)
    interval = table.duration("interval", "200ms") or 0.0
    if not interval > 0:
        table.fail("must be longer than 0s, e.g. 200ms", key="interval")
    backoff = table.number("backoff", 1.0, minimum=1.0, maximum=10.0) or 1.0
    max_interval = table.duration("max_interval")
    if max_interval is not None and max_interval < interval:
        table.fail(f"must be at least the interval ({interval:g}s)", key="max_interval")
    max_wait = table.duration("max_wait", "60s") or 0.0
    if not max_wait >= interval:
        table.fail(f"must be at least the interval ({interval:g}s), e.g. 60s", key="max_wait")
    raw = table.raw("queue_wait")
    queue_wait = None if raw is None else extraction(raw, f"{table.where}.queue_wait")
    return PollSpec(until, fail, interval, backoff, max_interval, max_wait, queue_wait)


def _condition(table: Table, key: str, names: set[str], *, required: bool) -> Condition | None:
    raw = table.raw(key)
    if raw is None:
        if required:
            table.fail('is required, e.g. until = { status = "done" }', key=key)
        return None
    if not isinstance(raw, dict) or not raw:
        table.fail('expected a table of variable = value(s), e.g. { status = "done" }', key=key)
    values: list[tuple[str, tuple[Any, ...]]] = []
    for name, accepted in raw.items():
        if name not in names:
            known = ", ".join(sorted(names)) or "none"
            table.fail(
                f"{name!r} is not extracted by this step (it extracts: {known}); add e.g. "
                f'extract = {{ {name} = {{ json = "{name}" }} }}',
                key=key,
            )
        options = tuple(accepted) if isinstance(accepted, list) else (accepted,)
        if not options or not all(isinstance(v, str | int | float | bool) for v in options):
            table.fail(f"{name}: expected a string, number or boolean, or a list of them", key=key)
        values.append((name, options))
    return Condition(tuple(values))
