"""`perfsleuth show --json` and `run --json`: the run JSON document itself (docs/json.md)."""

from __future__ import annotations

import json
from typing import Any


def render(doc: dict[str, Any]) -> str:
    # Timestamps are datetimes in a stored run's record: ISO text, not an error.
    return json.dumps(doc, indent=2, default=str)
