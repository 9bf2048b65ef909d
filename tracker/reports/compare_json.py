"""`perfsleuth compare --format json`: the compare JSON document itself (docs/json.md)."""

from __future__ import annotations

import json
from typing import Any


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2)
