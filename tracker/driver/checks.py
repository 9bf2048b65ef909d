"""Response checks (status, JSON field, body contains) that turn a response into an error.

Used by `tracker.driver.request` after a response has been read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tracker.scenario import Check
from tracker.scenario.fields import lookup_json_path

_UNPARSED: Any = object()


def needs_body(checks: Sequence[Check]) -> bool:
    """True when some check reads the body (so a streamed body must be kept)."""
    return any(c.path or c.contains is not None for c in checks)


def failed_check(checks: Sequence[Check], status: int, body: bytes) -> Check | None:
    """The first check the response fails, or None when it passes them all."""
    parsed: Any = _UNPARSED
    for check in checks:
        if check.status:
            if status not in check.status:
                return check
        elif check.path:
            if parsed is _UNPARSED:
                try:
                    parsed = json.loads(body)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    return check
            found, value = lookup_json_path(parsed, check.path)
            if not found or (check.has_equals and value != check.equals):
                return check
        elif check.contains is not None and check.contains.encode() not in body:
            return check
    return None
