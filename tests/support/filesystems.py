"""Which filesystem a path is on, for tests whose writes must reach a real disk."""

from __future__ import annotations

import os
from pathlib import Path


def on_tmpfs(path: str) -> bool:
    """Whether ``path`` lives on a RAM filesystem, where fsync costs nothing."""
    mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    path = os.path.realpath(path) + "/"
    containing = [m for m in mounts if path.startswith(m[0].rstrip("/") + "/")]
    return max(containing, key=lambda m: len(m[0]))[1] in ("tmpfs", "ramfs")
