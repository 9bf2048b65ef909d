"""Server settings and the names shared by the other ``llm_sim`` modules.

``llm_server.py`` builds a ``Config`` from its command line; the engine, faults and API
modules read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FAULTS = ("none", "cpu", "gc", "io")
STEP_COSTS = ("cpu", "wait")
Json = dict[str, Any]


@dataclass(frozen=True)
class Config:
    host: str
    port: int
    model: str
    max_batch: int
    max_queue: int
    step_ms: float
    per_seq_ms: float
    prefill_ms_per_token: float
    kv_capacity: int
    fault: str
    fault_at: float
    fault_strength: float
    step_cost: str = "cpu"  # "cpu": steps burn CPU; "wait": they sleep (a GPU's time)
