"""PressureProbe: real /proc/pressure under real CPU contention, and the missing-PSI path."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from support.processes import Spawn

from probes import PressureProbe

HOG = "while True:\n    pass\n"


def _psi_available() -> bool:
    return Path("/proc/pressure/cpu").exists()


@pytest.mark.skipif(not _psi_available(), reason="this kernel exposes no /proc/pressure")
def test_more_runnable_hogs_than_cores_show_as_cpu_pressure(spawn: Spawn) -> None:
    probe = PressureProbe()
    assert probe.sample(time.monotonic(), []) == {}  # the first reading is a baseline
    for _ in range(2 * (os.cpu_count() or 1) + 1):
        spawn(HOG)
    time.sleep(0.3)
    probe.sample(time.monotonic(), [])
    time.sleep(1.0)
    metrics = probe.sample(time.monotonic(), [])
    assert probe.unavailable is None
    # With more hogs than cores, some task is waiting for a CPU nearly all the time.
    assert metrics["cpu.psi_some_pct"] > 50, metrics
    assert set(metrics) == {
        "cpu.psi_some_pct",
        "mem.psi_some_pct",
        "mem.psi_full_pct",
        "disk.psi_some_pct",
        "disk.psi_full_pct",
    }
    assert all(0 <= v <= 100 for v in metrics.values())


def test_the_share_comes_from_the_cumulative_totals(tmp_path: Path) -> None:
    def write(cpu_us: int, io_us: int) -> None:
        (tmp_path / "cpu").write_text(
            f"some avg10=9.00 avg60=9.00 avg300=9.00 total={cpu_us}\n"
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
        )
        (tmp_path / "memory").write_text(
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
        )
        (tmp_path / "io").write_text(
            f"some avg10=0.00 avg60=0.00 avg300=0.00 total={io_us}\n"
            f"full avg10=0.00 avg60=0.00 avg300=0.00 total={io_us // 2}\n"
        )

    probe = PressureProbe(root=str(tmp_path))
    write(1_000_000, 0)
    probe.sample(10.0, [])
    write(1_250_000, 500_000)
    metrics = probe.sample(12.0, [])  # 2 s later: 250 ms and 500 ms of stall
    assert metrics["cpu.psi_some_pct"] == pytest.approx(12.5)
    assert metrics["disk.psi_some_pct"] == pytest.approx(25.0)
    assert metrics["disk.psi_full_pct"] == pytest.approx(12.5)
    assert metrics["mem.psi_some_pct"] == 0.0
    assert "cpu.psi_full_pct" not in metrics  # only meaningful inside cgroups


def test_without_psi_the_probe_says_why_once(tmp_path: Path) -> None:
    probe = PressureProbe(root=str(tmp_path / "absent"))
    assert probe.sample(time.monotonic(), []) == {}
    assert probe.unavailable is not None
    assert "PSI" in probe.unavailable and "\n" not in probe.unavailable
