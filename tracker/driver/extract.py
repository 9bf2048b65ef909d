"""Values taken from a response for later session steps, and the assistant's reply text.

Used by `tracker.driver.session`: extraction by JSON path, header or regex; the reply
text of OpenAI chat / completion responses (streamed or not) for chat history.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from tracker.scenario import Extraction
from tracker.scenario.fields import lookup_json_path


def extract(x: Extraction, headers: Mapping[str, str], body: bytes) -> Any:
    """The extracted value, or None when the response does not hold it."""
    if x.kind == "header":
        return headers.get(x.source.lower())
    if x.kind == "regex":
        match = re.search(x.source, body.decode("utf-8", "replace"))
        if match is None:
            return None
        return match.group(1) if match.re.groups else match.group(0)
    try:
        parsed = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    found, value = lookup_json_path(parsed, x.path)
    return value if found else None


def reply_text(body: Any) -> str:
    """The generated text of a non-streamed OpenAI chat or completion response."""
    if not isinstance(body, dict):
        return ""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return str(body.get("text", "")) if isinstance(body.get("text"), str) else ""
    choice = choices[0]
    message = choice.get("message")
    if isinstance(message, dict) and isinstance(message.get("content"), str):
        return str(message["content"])
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def chunk_text(obj: Any) -> str:
    """The text a streamed chunk adds (`choices[0].delta.content` or `choices[0].text`)."""
    if not isinstance(obj, dict):
        return ""
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    delta = choices[0].get("delta")
    if isinstance(delta, dict) and isinstance(delta.get("content"), str):
        return str(delta["content"])
    text = choices[0].get("text")
    return text if isinstance(text, str) else ""
