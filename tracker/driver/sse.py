"""Server-sent events and the LLM chunk shapes inside them.

Used by `tracker.driver.request` while a streamed response arrives: each `data:` line
is classified as it comes, so chunk timestamps are taken on arrival.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class ProtocolError(Exception):
    """The server sent something that is not the SSE/JSON it promised."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """What one SSE event means for LLM metrics."""

    content: bool  # carries generated text (counts for TTFT / ITL)
    done: bool = False  # the `[DONE]` sentinel
    completion_tokens: int | None = None  # from a `usage` object, when the server sends one
    error: str | None = None  # an in-band error event (vLLM / OpenAI `{"error": ...}`)


_DONE = Chunk(content=False, done=True)
_EMPTY = Chunk(content=False)
_GENERIC = Chunk(content=True)


def parse_data_line(line: str) -> Chunk | None:
    """Classify one line of an event stream; None for lines that are not `data:` events."""
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return _DONE
    if not payload:
        return _EMPTY
    if payload[0] != "{":
        return _GENERIC
    try:
        obj = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"malformed JSON in SSE data: {exc.msg}") from None
    if not isinstance(obj, dict):
        return _GENERIC
    return _classify_openai(obj)


def _classify_openai(obj: dict[str, Any]) -> Chunk:
    if "error" in obj or obj.get("object") == "error":
        detail = obj.get("error", obj.get("message"))
        if isinstance(detail, dict):
            detail = detail.get("message", detail)
        return Chunk(content=False, error=str(detail)[:200])
    usage = obj.get("usage")
    tokens: int | None = None
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        tokens = usage["completion_tokens"]
    choices = obj.get("choices")
    if not isinstance(choices, list):
        # Not an OpenAI chunk: any JSON event counts as generated content.
        return Chunk(content=tokens is None, completion_tokens=tokens)
    content = False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        text = choice.get("text")
        delta = choice.get("delta")
        if isinstance(delta, dict):
            text = delta.get("content") or delta.get("reasoning_content") or text
        if text:
            content = True
            break
    return Chunk(content=content, completion_tokens=tokens)


def completion_tokens_of(body: Any) -> int | None:
    """Output tokens of a non-streamed response, from OpenAI `usage` or `output_tokens`."""
    if not isinstance(body, dict):
        return None
    usage = body.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        return int(usage["completion_tokens"])
    value = body.get("output_tokens")
    return value if isinstance(value, int) else None
