"""Strict reading of one TOML table: unknown keys get the closest known key suggested,
wrong types and out-of-range values get a message that names the key and the fix.

Used by `tracker.scenario.toml_file`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from typing import Any, NoReturn

from tracker.errors import UsageError
from tracker.units import parse_duration

_PATH_TOKEN = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


class Table:
    """A TOML table being validated; `where` is its dotted location for messages."""

    def __init__(self, data: Any, where: str, allowed: Iterable[str], *, source: str) -> None:
        self.source = source
        self.where = where
        if not isinstance(data, dict):
            self.fail(f"expected a table, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        known = sorted(allowed)
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else "known keys: " + ", ".join(known)
                self.fail(f"unknown key '{key}'; {hint}", key=None)

    def error(self, message: str, *, key: str | None = None) -> UsageError:
        """The error for `message` at this table (or at `key` in it)."""
        location = f"{self.where}.{key}" if key and self.where else (key or self.where)
        prefix = f"{self.source}: {location}: " if location else f"{self.source}: "
        return UsageError(prefix + message)

    def fail(self, message: str, *, key: str | None = None) -> NoReturn:
        raise self.error(message, key=key)

    def has(self, key: str) -> bool:
        return key in self.data

    def sub(self, key: str, allowed: Iterable[str]) -> Table | None:
        if key not in self.data:
            return None
        where = f"{self.where}.{key}" if self.where else key
        return Table(self.data[key], where, allowed, source=self.source)

    def raw(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.data.get(key, default)
        if value is None:
            if required:
                self.fail("is required", key=key)
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            self.fail(f"expected a non-empty string, got {value!r}", key=key)
        return value

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        value = self.data.get(key, default)
        if value not in options:
            self.fail(f"{value!r} is not one of {', '.join(options)}", key=key)
        return str(value)

    def number(
        self,
        key: str,
        default: float | None = None,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        positive: bool = False,
        required: bool = False,
    ) -> float | None:
        value = self.data.get(key, default)
        if value is None:
            if required:
                self.fail("is required", key=key)
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"expected a number, got {value!r}", key=key)
        if not math.isfinite(value):
            self.fail(f"must be a finite number, got {value}", key=key)
        if maximum is not None and value > maximum:
            self.fail(f"must be at most {maximum:g}, got {value}", key=key)
        if positive and not value > 0:
            self.fail(f"must be greater than 0, got {value}", key=key)
        if minimum is not None and value < minimum:
            self.fail(f"must be at least {minimum:g}, got {value}", key=key)
        return float(value)

    def integer(self, key: str, default: int | None = None, *, minimum: int = 0) -> int | None:
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"expected a whole number, got {value!r}", key=key)
        if value < minimum:
            self.fail(f"must be at least {minimum}, got {value}", key=key)
        return int(value)

    def duration(self, key: str, default: str | float | None = None) -> float | None:
        value = self.data.get(key, default)
        if value is None:
            return None
        return self.to_duration(value, key)

    def to_duration(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(f"expected a duration such as '500ms' or '30s', got {value!r}", key=key)
        try:
            return parse_duration(value, what=key)
        except UsageError as exc:
            raise self.error(str(exc).split(": ", 1)[-1], key=key) from None

    def table_list(self, key: str) -> list[Any]:
        value = self.data.get(key, [])
        if not isinstance(value, list):
            self.fail("expected an array of tables ([[...]] or [ {...}, ... ])", key=key)
        return list(value)


def parse_json_path(text: str) -> tuple[str | int, ...]:
    """`choices[0].text` or `choices.0.text` -> ("choices", 0, "text")."""
    if not text or text.startswith(".") or text.endswith("."):
        raise ValueError(f"bad JSON path {text!r}; use e.g. choices[0].text")
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        match = _PATH_TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"bad JSON path {text!r}; use e.g. choices[0].text")
        index, name = match.groups()
        if index is not None:
            parts.append(int(index))
        elif name.isdigit():
            parts.append(int(name))
        else:
            parts.append(name)
        pos = match.end()
    return tuple(parts)


def lookup_json_path(value: Any, path: tuple[str | int, ...]) -> tuple[bool, Any]:
    """(found, value) at `path` inside parsed JSON."""
    current = value
    for part in path:
        if isinstance(part, int) and isinstance(current, list):
            if part >= len(current):
                return False, None
            current = current[part]
        elif isinstance(part, str) and isinstance(current, dict):
            if part not in current:
                return False, None
            current = current[part]
        else:
            return False, None
    return True, current
