"""Whether a run stored as `running` is still going on, or was abandoned.

SIGKILL, a power loss or an OOM kill end perfsleuth without a word: its run stays
`running`. Each run records the host, pid and start time of the process that made it
(`environment.process`); a `running` run of this host whose process is gone (or whose
pid now belongs to another process) reads as `abandoned`. A run from another host, or
from before runs recorded their process, cannot be judged here and stays `running`.
"""

from __future__ import annotations

import socket
from typing import Any

import psutil

ABANDONED = "abandoned"


def this_process() -> dict[str, Any]:
    """What a run records about the process making it."""
    me = psutil.Process()
    return {"pid": me.pid, "started": me.create_time()}


def live_status(status: str, environment: dict[str, Any]) -> str:
    """`status`, or `abandoned` for a `running` run whose process is gone."""
    if status != "running":
        return status
    process = environment.get("process")
    if not isinstance(process, dict) or environment.get("host") != socket.gethostname():
        return status
    try:
        alive = abs(psutil.Process(int(process["pid"])).create_time() - process["started"]) < 1
    except (psutil.Error, KeyError, TypeError, ValueError):
        alive = False
    return status if alive else ABANDONED
