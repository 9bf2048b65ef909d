"""The records of a stored run: the run, its probe samples, stack profiles and findings.

The store hands these out (callers never touch SQLAlchemy objects) and takes them in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class RunRecord:
    """One stored run, as `show`, `history` and reports see it."""

    id: int
    status: str
    scenario: str
    scenario_key: str
    scenario_json: dict[str, Any]
    tag: str | None
    started_at: datetime
    ended_at: datetime | None
    duration_s: float | None
    target_url: str | None
    load_model: str | None
    environment: dict[str, Any]
    summary: dict[str, Any] | None
    probes_unavailable: dict[str, str]
    error: str | None
    group_name: str | None = None  # `run --group NAME`: one of several hosts' runs


#: The source of the load driver's own host's samples when an agent watches the server.
DRIVER_SOURCE = "driver"


@dataclass(frozen=True)
class SampleRecord:
    """One probe sample, `t_s` seconds after the run's start (the end of the interval
    its rates cover).

    `source` is None for the samples of the server's host as the run observed it (its
    `probes`): the local probes, or the first `--agent`'s. Other hosts' samples carry a
    label: an agent's `hostname@host:port`, or `driver` for the load driver's own host
    when an agent watches the server (the run document's `probes_hosts`).
    """

    t_s: float
    metrics: dict[str, float]
    target_alive: bool = True
    note: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class ProfileRecord:
    """Stack samples taken from `t_s` for `duration_s` seconds after the run's start.

    `stacks` maps a collapsed stack ("root;caller;callee", root first) to the number
    of samples that saw it.
    """

    t_s: float
    duration_s: float
    samples: int
    stacks: dict[str, int]


@dataclass(frozen=True)
class FindingRecord:
    """A degradation found in a run, with its ranked causes and evidence."""

    start_s: float
    end_s: float
    metric: str
    change_pct: float
    cause: str
    causes: list[dict[str, Any]]
    confidence: float
    evidence: list[str]
    advice: str | None = None
    flagged_at_s: float | None = None  # when the live detector raised it

    def to_json(self) -> dict[str, Any]:
        return {
            "start_s": self.start_s,
            "end_s": self.end_s,
            "metric": self.metric,
            "change_pct": self.change_pct,
            "cause": self.cause,
            "causes": self.causes,
            "confidence": self.confidence,
            "evidence": self.evidence,
            "advice": self.advice,
            "flagged_at_s": self.flagged_at_s,
        }
