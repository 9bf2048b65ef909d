"""`perfsleuth export --format speedscope`: collapsed-stack profiles written as a speedscope
file of "sampled" profiles (https://www.speedscope.app opens it).

Also usable with any ``StackProbe.profile()``. The format is speedscope's
published schema, https://www.speedscope.app/file-format-schema.json: frames shared by
all profiles, and per profile the stacks as frame indices from the root to the leaf with
one weight each.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from probes.stacks.profile import parse_frame, split_stack

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"


def speedscope_document(
    profiles: Mapping[str, Mapping[str, int]],
    *,
    name: str = "perfsleuth",
    sample_interval_s: float | None = None,
    exporter: str = "perfsleuth",
) -> dict[str, Any]:
    """Build a speedscope document, one sampled profile per entry of ``profiles``.

    Args:
        profiles: Profile name (e.g. "pid 123" or a window's time) -> collapsed stacks.
        name: Name of the whole file, shown by speedscope.
        sample_interval_s: Seconds one sample stands for (1 / rate). Given, weights
            are seconds; otherwise they are sample counts (unit "none").
        exporter: Recorded in the file's ``exporter`` field.

    Returns:
        The document, ready for ``json.dump``. Heaviest stacks come first in each profile.
    """
    frames: list[dict[str, Any]] = []
    index: dict[str, int] = {}

    def frame_index(label: str) -> int:
        found = index.get(label)
        if found is None:
            frame = parse_frame(label)
            entry: dict[str, Any] = {"name": frame.name}
            if frame.file:
                entry["file"] = frame.file
            if frame.line:
                entry["line"] = frame.line
            found = index[label] = len(frames)
            frames.append(entry)
        return found

    scale = sample_interval_s if sample_interval_s is not None else 1
    out: list[dict[str, Any]] = []
    for profile_name, stacks in profiles.items():
        samples: list[list[int]] = []
        weights: list[float] = []
        for stack, count in sorted(stacks.items(), key=lambda kv: (-kv[1], kv[0])):
            labels = split_stack(stack)
            if not labels or count <= 0:
                continue
            samples.append([frame_index(label) for label in labels])
            weights.append(count * scale)
        out.append(
            {
                "type": "sampled",
                "name": profile_name,
                "unit": "seconds" if sample_interval_s is not None else "none",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": samples,
                "weights": weights,
            }
        )
    return {
        "$schema": SCHEMA_URL,
        "shared": {"frames": frames},
        "profiles": out,
        "name": name,
        "activeProfileIndex": 0,
        "exporter": exporter,
    }


def write_speedscope(
    path: str | os.PathLike[str],
    profiles: Mapping[str, Mapping[str, int]],
    *,
    name: str = "perfsleuth",
    sample_interval_s: float | None = None,
) -> None:
    """Write :func:`speedscope_document` to ``path`` (open it at https://www.speedscope.app).

    Raises:
        OSError: The file cannot be written.
    """
    document = speedscope_document(profiles, name=name, sample_interval_s=sample_interval_s)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f, separators=(",", ":"))


def render(stacks: Mapping[str, int], *, run_id: int) -> str:
    document = speedscope_document({f"run {run_id}": stacks}, name=f"perfsleuth run {run_id}")
    return json.dumps(document, separators=(",", ":"))
