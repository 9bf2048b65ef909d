"""docs/probes.md documents every probe metric, with the unit the code gives it."""

from __future__ import annotations

from pathlib import Path

from probes import METRICS, UNITS

DOC = Path(__file__).resolve().parents[2] / "docs" / "probes.md"


def test_every_metric_is_in_the_table_with_its_unit() -> None:
    rows = {
        cells[1].strip("` "): cells[2].strip()
        for line in DOC.read_text().splitlines()
        if line.startswith("| `") and len(cells := line.split("|")) >= 4
    }
    missing = set(METRICS) - set(rows)
    assert not missing, f"add these to docs/probes.md: {sorted(missing)}"
    for name, unit in UNITS.items():
        assert rows[name] == unit, name
