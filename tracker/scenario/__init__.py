"""Scenarios: the frozen description of a run, from a TOML file or from `run --url` flags."""

from tracker.scenario.flags import build_scenario, validate_url
from tracker.scenario.model import (
    Check,
    Condition,
    DatasetSpec,
    Extraction,
    GoodputSpec,
    LoadSpec,
    PollSpec,
    RequestSpec,
    Scenario,
    SessionSpec,
    SessionStep,
    TargetSpec,
    Threshold,
)

__all__ = [
    "Check",
    "Condition",
    "DatasetSpec",
    "Extraction",
    "GoodputSpec",
    "LoadSpec",
    "PollSpec",
    "RequestSpec",
    "Scenario",
    "SessionSpec",
    "SessionStep",
    "TargetSpec",
    "Threshold",
    "build_scenario",
    "validate_url",
]
