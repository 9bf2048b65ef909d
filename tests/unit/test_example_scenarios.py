"""The scenario files shipped in examples/ stay valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracker.scenario.toml_file import load_scenario

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "scenarios").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_scenario_loads(path):
    scenario = load_scenario(path, environ={"OPENAI_API_KEY": "sk-example"})
    assert scenario.name
    assert "sk-example" not in str(scenario.to_json())


def test_there_are_examples():
    assert len(EXAMPLES) >= 2
